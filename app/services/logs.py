"""A trial's logs and result archive, wherever they are: artifact store, live Redis tail, SQL tail."""

from __future__ import annotations

import io
import zipfile
from typing import Any

from app.keys import log_key
from app.services.errors import NotFound
from app.store.artifacts import ArtifactStore
from app.store.models import Trial

STREAMS = {"outlog": "stdout", "errlog": "stderr", "stdout": "stdout", "stderr": "stderr"}


def trial_log(trial: Trial, stream: str, artifacts: ArtifactStore, redis: Any | None) -> str:
    """The whole log of a finished trial, else the live tail of a running one."""
    name = STREAMS[stream]
    if trial.result_path:
        data = artifacts.get_result(trial.result_path)
        if data is not None:
            try:
                with zipfile.ZipFile(io.BytesIO(data)) as zf:
                    return zf.read(f"log/{name}").decode("utf-8", errors="replace")
            except (KeyError, zipfile.BadZipFile):
                pass
    if redis is not None:
        live = redis.get(log_key(trial.exec_id, name))
        if live is not None:
            return live.decode("utf-8", errors="replace") if isinstance(live, bytes) else str(live)
    return (trial.stdout_tail if name == "stdout" else trial.stderr_tail) or ""


def trial_result(trial: Trial, artifacts: ArtifactStore) -> bytes:
    data = artifacts.get_result(trial.result_path) if trial.result_path else None
    if data is None:
        raise NotFound(f"execution {trial.exec_id} has no result yet")
    return data
