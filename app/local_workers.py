"""Start `hpo worker` processes on this machine and stop them with every trial they started."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from workers.process import GroupRegistry


class LocalWorker:
    """One Celery worker (N slots) in its own process group, its log in a file."""

    def __init__(
        self,
        *,
        slots: int,
        queues: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        worker_dir: Path,
        name: str,
        gpus: Sequence[str] = (),
        gpu_type: str | None = None,
    ) -> None:
        self.slots = slots
        self.queues = list(queues)
        self.env = dict(env)
        self.log_path = log_path
        self.worker_dir = worker_dir
        self.name = name
        self.gpus = list(gpus)
        self.gpu_type = gpu_type
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> LocalWorker:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "app.cli", "worker", "--slots", str(self.slots), "--name", self.name,
               "--queues", ",".join(self.queues)]  # fmt: skip
        if self.gpus:
            cmd += ["--gpus", ",".join(self.gpus)]
        if self.gpu_type:
            cmd += ["--gpu-type", self.gpu_type]
        env = {**os.environ, **self.env, "HPO_WORKER_DIR": str(self.worker_dir)}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def stop(self, grace_s: float = 10.0) -> None:
        """Warm shutdown, then SIGKILL the worker's group, then any trial group it left behind."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()  # the main process only: Celery's warm shutdown
                deadline = time.monotonic() + grace_s
                while time.monotonic() < deadline and self.proc.poll() is None:
                    time.sleep(0.05)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        GroupRegistry(self.worker_dir / "pgids").kill_all(grace_s=1.0)

    def __enter__(self) -> LocalWorker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
