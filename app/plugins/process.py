"""A plugin host process: untrusted code behind a pipe, with a memory limit and a time limit per call.

The host runs in its own session (killed as a group), with RLIMIT_AS capping its memory and an
environment scrubbed of our settings and secrets. A call that does not answer in time, a host that
dies, or an answer that is not JSON all raise PluginError; the caller fails the experiment.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import app
from workers.environment import scrub

MAX_ANSWER = 16 * 1024 * 1024
PACKAGE_ROOT = Path(app.__file__).resolve().parents[1]  # so the host finds `plugins.core`


class PluginError(RuntimeError):
    pass


def _limits(memory_mb: int) -> None:  # runs in the child between fork and exec
    import resource

    if memory_mb > 0:
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


class HostProcess:
    def __init__(self, folder: Path, *, memory_mb: int, log_path: Path, secrets: list[str]) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = scrub(os.environ, secrets)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
        env["OMP_NUM_THREADS"] = env.get("OMP_NUM_THREADS", "1")  # BLAS threads reserve memory too
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "app.plugins.host", str(folder)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                cwd=folder,
                start_new_session=True,
                preexec_fn=lambda: _limits(memory_mb),
            )
        self.log_path = log_path
        self._buf = b""

    def call(self, request: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise PluginError(self._died()) from None
        try:
            line = self._readline(timeout_s)
        except TimeoutError:
            self.close()
            raise PluginError(
                f"{request['op']}() did not answer within {timeout_s:g} s; the plugin was stopped"
            ) from None
        try:
            reply = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise PluginError(
                f"the plugin host answered something that is not JSON: {line[:200]!r}"
            ) from None
        if not reply.get("ok"):
            raise PluginError(
                f"{request['op']}() raised {reply.get('error')}\n{reply.get('trace', '')}".strip()
            )
        return reply

    def _readline(self, timeout_s: float) -> bytes:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise PluginError(self._died())
            self._buf += chunk
            if len(self._buf) > MAX_ANSWER:
                self.close()
                raise PluginError(f"the plugin's answer is over {MAX_ANSWER} bytes")
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def _died(self) -> str:
        code = self.proc.wait(timeout=5)
        how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        tail = ""
        with contextlib.suppress(OSError):
            tail = self.log_path.read_text(errors="replace")[-1500:].strip()
        hint = " (out of memory?)" if "MemoryError" in tail or code == -signal.SIGKILL else ""
        return f"the plugin process died ({how}){hint}" + (f"\n{tail}" if tail else "")

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=5)
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(Exception):
                stream.close()  # type: ignore[union-attr]
