"""Fetch model code by content hash from Redis and keep it unpacked in a per-worker cache."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from app.codepack import ArchiveError, sha256, unpack
from app.keys import code_key
from app.messages import CodeRef


class CodeUnavailable(RuntimeError):
    pass


def fetch_code(redis: Any, ref: CodeRef, cache_dir: Path) -> Path:
    """The unpacked code for `ref` (contents of `_submitted_code`), fetched once per worker."""
    target = cache_dir / ref.sha256
    if (target / ".complete").exists():
        return target / "code"
    data = redis.hget(code_key(ref.sha256), "data")
    if data is None:
        raise CodeUnavailable(f"code archive {ref.sha256[:12]} ({ref.filename}) is not in the broker")
    if sha256(data) != ref.sha256:
        raise CodeUnavailable(f"code archive {ref.sha256[:12]} is corrupt (hash mismatch)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f".{ref.sha256}.{uuid.uuid4().hex}"
    try:
        unpack(data, ref.filename, tmp / "code")
    except ArchiveError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CodeUnavailable(str(exc)) from exc
    (tmp / ".complete").touch()
    try:
        os.rename(tmp, target)
    except OSError:  # another slot unpacked it first
        shutil.rmtree(tmp, ignore_errors=True)
    return target / "code"
