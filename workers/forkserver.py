"""Pre-warmed trials: a per-worker-process server that imports `preload` once and forks each trial,
or (mode function) calls the trial's function itself.

`ForkServers` (one per TrialRunner, i.e. per pool process) keeps up to a few servers, one per
(python, preload, function module) key, started lazily and restarted when one died.
`ForkServers.spawn` returns a `ForkedTrial` (a `FunctionCall` for a function trial), which has the
part of Popen's interface the runner and workers.process use (`pid`, `poll`, `wait`, `returncode`):
the trial leads its own process group like a subprocess trial (a function trial: the server's), so
stop, timeout, cancel and the group registry work unchanged. The server sides are
workers/forkserver_server.py and workers/function_server.py; docs/trial-modes.md says what differs
from a fresh interpreter.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from workers.process import die_with_parent

SERVER_SCRIPT = Path(__file__).with_name("forkserver_server.py")
FUNCTION_SCRIPT = Path(__file__).with_name("function_server.py")
READY_TIMEOUT_S = 600.0  # importing torch on a cold disk can take a while
MAX_SERVERS = 2  # per pool process; the least recently used one goes first


class ForkServerError(RuntimeError):
    """The server cannot start trials (failed preload, server died while starting).

    `lasting`: it would fail the same way again (a preload that does not import)."""

    def __init__(self, message: str, *, lasting: bool = False) -> None:
        super().__init__(message)
        self.lasting = lasting


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Delay SIGTERM/SIGINT handlers (main thread only) until the block is done."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def unsupported() -> str | None:
    """Why this platform cannot run pre-warmed trials, or None."""
    if not sys.platform.startswith("linux") or not hasattr(os, "fork"):
        return f"needs Linux (fork and a parent-death signal); this is {sys.platform}"
    return None


def trial_request(
    main: str, args: Sequence[str], cwd: Path, env: Mapping[str, str], stdout: Path, stderr: Path
) -> dict[str, Any]:
    """A trial as forkserver_server.py takes it (a forked child, or a spare interpreter)."""
    return {"main": main, "argv": [main, *args], "cwd": str(cwd), "env": dict(env),
            "stdout": str(stdout), "stderr": str(stderr)}  # fmt: skip


class ForkServer:
    """One server process and the two pipes to it."""

    def __init__(
        self,
        python: str,
        preload: Sequence[str],
        env: Mapping[str, str],
        script: Path = SERVER_SCRIPT,
        on_close: Callable[[int], None] | None = None,
    ) -> None:
        self.python = python
        self.preload = tuple(preload)
        self.script = script
        self._env = dict(env)
        self._on_close = on_close  # told each server process's pid once, when it is closed
        self._told = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._req = self._rep = -1
        self._buffer = b""
        self._exited: dict[int, int] = {}
        self._results: dict[int, str] = {}  # a function call's val_dict_list.json text, by pid
        self._pending: set[int] = set()

    # --- lifecycle -----------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None and self._rep >= 0

    def start(self, tick: Callable[[], None] | None = None) -> None:
        """Start the server and wait for its preload, calling `tick` about every second."""
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        try:
            self._proc = subprocess.Popen(
                [self.python, str(self.script), str(req_r), str(rep_w), str(os.getpid()), *self.preload],
                env=self._env,
                stdin=subprocess.DEVNULL,
                pass_fds=(req_r, rep_w),
                start_new_session=True,  # a terminal's Ctrl-C reaches the worker, not the trials
                preexec_fn=die_with_parent,
            )
        finally:
            os.close(req_r)
            os.close(rep_w)
        self._told = False
        self._req, self._rep = req_w, rep_r
        self._buffer = b""
        deadline = time.monotonic() + READY_TIMEOUT_S
        reply = self._next(1.0)
        while reply == {}:  # still importing: keep the caller's lease alive meanwhile
            if time.monotonic() > deadline:
                reply = {"error": f"preload took over {READY_TIMEOUT_S:g} s"}
                break
            if tick is not None:
                tick()
            reply = self._next(1.0)
        if reply is None or "ready" not in reply:
            why = (reply or {}).get("error")
            self.close()
            raise ForkServerError(str(why or "the server exited while starting"), lasting=bool(why))

    def close(self) -> None:
        for fd in (self._req, self._rep):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._req = self._rep = -1
        code = None
        if self._proc is not None:
            with contextlib.suppress(OSError):
                os.killpg(self._proc.pid, signal.SIGKILL)  # with what a function trial left running
            with contextlib.suppress(OSError):
                self._proc.kill()
            code = self._proc.wait()
            if self._on_close is not None and not self._told:
                self._told = True
                self._on_close(self._proc.pid)
        self._lost(code)

    def _lost(self, code: int | None) -> None:
        """The server is gone (exit status `code`): its children died with it (parent-death
        signal); say so. A function trial is the server itself: its status is the trial's."""
        for pid in self._pending:
            with contextlib.suppress(OSError):
                os.killpg(pid, 9)  # a grandchild that outlived its leader goes too
            mine = self._proc is not None and pid == self._proc.pid and code is not None
            self._exited.setdefault(pid, code if mine else -9)  # type: ignore[arg-type]
        self._pending.clear()

    # --- the pipe ------------------------------------------------------------------------
    def _next(self, timeout: float | None) -> dict[str, Any] | None:
        """The next message; {} when none came within `timeout`; None when the server is gone.

        A signal handler may call this too (the runner's SIGTERM handler stops the trial and waits
        for it), so reading and bookkeeping run with signals held: the handler sees whole state."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with _signals_held():
                message = self._pop()
            if message is not None:
                return message
            if self._rep < 0:
                return None
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            ready, _, _ = select.select([self._rep], [], [], left)
            if not ready:
                return {}
            with _signals_held():
                chunk = os.read(self._rep, 65536) if self._rep >= 0 else b""
                self._buffer += chunk
            if not chunk:
                self.close()
                return None

    def _pop(self) -> dict[str, Any] | None:
        if b"\n" not in self._buffer:
            return None
        line, self._buffer = self._buffer.split(b"\n", 1)
        message: dict[str, Any] = json.loads(line)
        if "exited" in message:
            self._pending.discard(message["exited"])
            self._exited[message["exited"]] = int(message["code"])
            if "results" in message:
                self._results[message["exited"]] = str(message["results"])
        return message

    def spawn(self, request: dict[str, Any], tick: Callable[[], None] | None = None) -> int:
        if not self.alive:
            self.close()
            self.start(tick)
        try:
            os.write(self._req, (json.dumps(request) + "\n").encode())
        except OSError as exc:
            self.close()
            raise ForkServerError(f"the server is gone ({exc})") from None
        while True:
            reply = self._next(None)
            if reply is None:
                raise ForkServerError("the server died while starting the trial")
            if "started" in reply:
                pid = int(reply["started"])
                self._pending.add(pid)
                self._exited.pop(pid, None)  # a function server's pid is every trial's
                self._results.pop(pid, None)
                return pid
            if "failed" in reply:
                raise ForkServerError(str(reply["failed"]))

    def exit_code(self, pid: int, timeout: float | None) -> int | None:
        """The trial's exit code once it ended, waiting up to `timeout` (None: for ever; 0: what the
        pipe says already, so that a poll sees a dead server and reaps it)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while pid not in self._exited:
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            reply = self._next(left)
            if reply is None:
                self._exited.setdefault(pid, -9)
            elif not reply:  # nothing came within `timeout`
                return None
        return self._exited[pid]

    def forget(self, pid: int) -> None:
        self._exited.pop(pid, None)  # its results stay until read (`results`) or its pid starts again

    def results(self, pid: int) -> str | None:
        """What a function call that ended sent back as val_dict_list.json's text, once."""
        return self._results.pop(pid, None)

    def reap(self) -> None:
        """Collect the server process if it died (a function trial's group is the server's)."""
        if self._proc is not None and self._proc.poll() is not None:
            self.close()


class ForkedTrial:
    """A trial forked by a ForkServer, behind Popen's small interface."""

    def __init__(self, server: ForkServer, pid: int, args: list[str]) -> None:
        self.server = server
        self.pid = pid
        self.args = args
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.server.exit_code(self.pid, 0.0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            code = self.server.exit_code(self.pid, timeout)
            if code is None:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
            self.returncode = code
            self.server.forget(self.pid)
        return self.returncode


class FunctionCall(ForkedTrial):
    """A function trial: a call in the server process, which outlives it (workers/function_server.py)."""

    def poll(self) -> int | None:
        code = super().poll()
        if code is not None:
            self.server.reap()  # a stopped call took the server along: no zombie keeps its group
        return code

    def close_server(self) -> None:
        """End the server (after a failed, stopped or GPU trial: the next trial gets a fresh one)."""
        self.server.close()

    @property
    def results(self) -> str | None:
        """val_dict_list.json's text from what the function returned (None: it returned None, or
        failed); read once, after the call ended."""
        return self.server.results(self.pid)


Key = tuple[str, tuple[str, ...], str | None]


class ForkServers:
    """The servers of one pool process, by (python, preload, function module or None)."""

    def __init__(self, env: Mapping[str, str], on_close: Callable[[int], None] | None = None) -> None:
        self.env = dict(env)
        self.on_close = on_close  # told the pid of every server process that is closed or replaced
        self._servers: OrderedDict[Key, ForkServer] = OrderedDict()
        self._broken: dict[Key, str] = {}  # failed preloads are not retried

    def spawn(
        self,
        python: str,
        preload: Sequence[str],
        *,
        main: str,
        args: Sequence[str],
        cwd: Path,
        env: Mapping[str, str],
        stdout: Path,
        stderr: Path,
        tick: Callable[[], None] | None = None,
        function: tuple[Path, str, str] | None = None,
        fresh: bool = False,
        results_file: bool = True,
    ) -> ForkedTrial:
        """Fork the trial; with `function` = (module file, function name, objective metric), call
        that function in a function server instead (a FunctionCall), in a new one when `fresh`;
        `results_file`: the call also writes what it returned to RESULT_DIR (else only sends it)."""
        key: Key = (python, tuple(preload), None if function is None else str(function[0]))
        if key in self._broken:
            raise ForkServerError(self._broken[key], lasting=True)
        script = SERVER_SCRIPT if function is None else FUNCTION_SCRIPT
        server = self._servers.pop(key, None)
        if server is not None and fresh and server.alive:
            server.close()
        server = server or ForkServer(python, preload, self.env, script, self.on_close)
        self._servers[key] = server
        while len(self._servers) > MAX_SERVERS:
            _, old = self._servers.popitem(last=False)
            old.close()
        request = trial_request(main, args, cwd, env, stdout, stderr)
        kind = ForkedTrial
        if function is not None:
            request.update(source=str(function[0]), function=function[1], metric=function[2],
                           results_file=results_file)  # fmt: skip
            kind = FunctionCall
        try:
            return kind(server, server.spawn(request, tick), request["argv"])
        except ForkServerError as exc:
            if exc.lasting:
                self._broken[key] = str(exc)
                del self._servers[key]
            raise

    def running(self, python: str, preload: Sequence[str], source: Path | None = None) -> bool:
        """Whether the server for (python, preload, function module) is up (a spawn then forks
        nothing here)."""
        server = self._servers.get((python, tuple(preload), None if source is None else str(source)))
        return server is not None and server.alive

    def close(self) -> None:
        for server in self._servers.values():
            server.close()
        self._servers.clear()
