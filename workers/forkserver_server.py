"""The pre-warmed trial server: imports `preload` once, then forks one child per trial.

Run by workers.forkserver as `python forkserver_server.py REQ_FD REPLY_FD PARENT_PID [MODULE ...]`
with the trial interpreter (standard library only, so any Python 3.9+ works); by workers.prespawn
as `python forkserver_server.py --one REQ_FD PARENT_PID`: a fresh interpreter that reads one request
and becomes that trial itself, without forking. Protocol, one JSON object per line:
    server -> worker  {"ready": pid} after the preload, or {"error": text} and exit
    worker -> server  {"main", "argv", "cwd", "env", "stdout", "stderr"}: start a trial
    server -> worker  {"started": pid} or {"failed": text}; later {"exited": pid, "code": int}
                      (`code` as Popen's returncode: -N when killed by signal N)
The child sets up what `python main args` would get (own session, die-with-parent, stdin
/dev/null, stdout/stderr appended to the log files, cwd, the environment, argv, sys.path[0]) and
runs the script as a fresh `__main__` module, ending like an interpreter: SystemExit's code, or a
traceback on stderr and code 1; then non-daemon threads are joined and atexit handlers run.
The server's own parent dying kills it (and so its children).
"""

from __future__ import annotations

import builtins
import contextlib
import ctypes
import functools
import importlib
import importlib.machinery
import io
import json
import os
import select
import signal
import sys
import traceback
import types
from typing import Any

_PR_SET_PDEATHSIG = 1


@functools.cache
def _libc() -> Any:
    return ctypes.CDLL("libc.so.6", use_errno=True)  # loaded once, by the server: its forks inherit it


def die_with_parent(parent: int) -> None:
    """SIGKILL this process when its parent exits; exit now if the parent is already gone."""
    with contextlib.suppress(OSError, AttributeError):
        _libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def _send(fd: int, message: dict[str, Any]) -> None:
    os.write(fd, (json.dumps(message) + "\n").encode())


# --- the child: become the trial -------------------------------------------------------------
def _std_streams(unbuffered: bool) -> None:
    encoding = getattr(sys.__stdout__, "encoding", None) or "utf-8"
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(
        io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding=encoding
    )
    sys.stdout = sys.__stdout__ = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(1, "w", closefd=False)), encoding=encoding, write_through=unbuffered
    )
    sys.stderr = sys.__stderr__ = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(2, "w", closefd=False)),
        encoding=encoding,
        errors="backslashreplace",
        line_buffering=True,
        write_through=unbuffered,
    )


def redirect_logs(request: dict[str, Any]) -> None:
    """The trial's log files on fds 1 and 2 (appended to)."""
    out = os.open(request["stdout"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    err = os.open(request["stderr"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    for fd, target in ((out, 1), (err, 2)):
        os.dup2(fd, target)
        os.close(fd)


def set_environ(env: dict[str, str]) -> None:
    """`os.environ` (and the C environment) becomes `env`: a kept function process goes from one
    trial's environment to the next one's, which differ in a few paths. Only those go through
    os.environ (each change there is a dict update and a putenv or unsetenv); the rest are put
    again in the C environment alone."""
    current = os.environ
    for key in [k for k in current if k not in env]:
        del current[key]
    for key, value in env.items():
        if current.get(key) != value:
            current[key] = value
        else:  # C code (a library's setenv) may have changed it behind os.environ's back
            os.putenv(key, value)


def enter_trial(request: dict[str, Any], server_env: dict[str, str], folder: str) -> None:
    """The trial's cwd, environment, argv, and `folder` (the script's) first on sys.path, then its
    PYTHONPATH when that differs from the server's (the server's is on sys.path already)."""
    env: dict[str, str] = request["env"]
    os.chdir(request["cwd"])
    set_environ(env)
    sys.argv = list(request["argv"])
    extra = env.get("PYTHONPATH", "")
    added = [p for p in extra.split(os.pathsep) if p] if extra != server_env.get("PYTHONPATH", "") else []
    front = [] if sys.path[:1] == [folder] else [folder]
    sys.path[:0] = [
        *front,
        *dict.fromkeys(os.path.abspath(p) for p in added if os.path.abspath(p) not in sys.path),
    ]


def _become_trial(request: dict[str, Any], server_env: dict[str, str]) -> str:
    """Everything a fresh `python main args` would have; returns the script's absolute path."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    redirect_logs(request)
    _std_streams(bool(request["env"].get("PYTHONUNBUFFERED")))
    main = os.path.abspath(os.path.join(request["cwd"], request["main"]))
    enter_trial(request, server_env, os.path.dirname(main))
    if "numpy.random" in sys.modules:  # a fresh interpreter seeds numpy's global generator anew
        with contextlib.suppress(Exception):
            sys.modules["numpy.random"].seed()
    return main


def _user_traceback(tb: Any, main: str) -> Any:
    """The traceback from the script's own frames on, as an interpreter would print it."""
    cur = tb
    while cur is not None and cur.tb_frame.f_code.co_filename != main:
        cur = cur.tb_next
    return cur if cur is not None else tb


def _exit_code(code: Any) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    with contextlib.suppress(Exception):
        print(code, file=sys.stderr)
    return 1


def _run_main(main: str) -> None:
    """What `python main` does with its script (runpy.run_path would set argv[0] to the path and put
    the old __main__ back afterwards): a fresh __main__ module, compiled without our __future__s."""
    module = types.ModuleType("__main__")
    module.__dict__.update(
        __file__=main,
        __cached__=None,
        __loader__=importlib.machinery.SourceFileLoader("__main__", main),
        __builtins__=builtins,
    )
    sys.modules["__main__"] = module
    with open(main, "rb") as fh:
        source = fh.read()
    exec(compile(source, main, "exec", dont_inherit=True), module.__dict__)


def _run_trial(main: str) -> int:
    interrupted = False
    try:
        _run_main(main)
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except BaseException as exc:
        tb = None if isinstance(exc, SyntaxError) else _user_traceback(exc.__traceback__, main)
        with contextlib.suppress(Exception):
            sys.excepthook(type(exc), exc.with_traceback(tb), tb)
        interrupted = isinstance(exc, KeyboardInterrupt)
        code = 1
    threading = sys.modules.get("threading")  # as CPython: only a script that imported it has threads
    if threading is not None:
        with contextlib.suppress(BaseException):
            threading._shutdown()  # type: ignore[attr-defined]  # wait for non-daemon threads
    with contextlib.suppress(BaseException):
        import atexit

        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()
    if interrupted:  # like CPython: die of SIGINT
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    return code


def _child(request: dict[str, Any], server: int, server_env: dict[str, str], fds: list[int]) -> None:
    code = 1
    try:
        os.setsid()  # own session and process group: the worker kills the group as a whole
        die_with_parent(server)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for fd in fds:
            os.close(fd)
        main = _become_trial(request, server_env)
    except BaseException:
        with contextlib.suppress(BaseException):
            traceback.print_exc()
            sys.stderr.flush()
        os._exit(127)
    try:
        code = _run_trial(main)
    finally:
        os._exit(code)


def _warm_up() -> None:
    """Pay once, before any trial: a process's first compile() costs ~2 ms (as much as the rest of
    a trial's start), its first json.loads a few tenths."""
    compile(b"pass\n", "<warm-up>", "exec", dont_inherit=True)
    json.loads('{"warm": [1]}')


def one(req: int, parent: int) -> None:
    """A pre-spawned interpreter (already its own session, started by `parent`): wait for one
    request, then become that trial. End of input before a request: exit quietly."""
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # until it is a trial (as a forked child is)
    _warm_up()
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(req, 65536)
        if not chunk:
            os._exit(0)
        data += chunk
    os.close(req)
    env = dict(os.environ)
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        main = _become_trial(json.loads(data), env)
    except BaseException:
        with contextlib.suppress(BaseException):
            traceback.print_exc()
            sys.stderr.flush()
        os._exit(127)
    os._exit(_run_trial(main))


# --- the server ---------------------------------------------------------------------------
class _Lines:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""

    def read(self) -> list[bytes] | None:
        """Complete lines available now; None at end of input."""
        chunk = os.read(self.fd, 65536)
        if not chunk:
            return None
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        return lines


def _reap(reply: int) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(reply, {"exited": pid, "code": os.waitstatus_to_exitcode(status)})


def start_server(reply: int, parent: int, preload: list[str]) -> bool:
    """A server's start: die with the worker, leave Ctrl-C to it, import `preload` (a failure is
    reported on `reply`: False)."""
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is the worker's to handle
    for name in preload:
        try:
            importlib.import_module(name)
        except BaseException as exc:
            _send(reply, {"error": f"preload of {name!r} failed: {type(exc).__name__}: {exc}"})
            return False
    return True


def serve(req: int, reply: int, parent: int, preload: list[str]) -> int:
    if not start_server(reply, parent, preload):
        return 1
    server_env = dict(os.environ)
    _warm_up()  # in the server, so every forked trial inherits it
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    _send(reply, {"ready": os.getpid()})
    requests = _Lines(req)
    me = os.getpid()
    while True:
        ready, _, _ = select.select([req, wake_r], [], [])
        if wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 4096)
            _reap(reply)
        if req not in ready:
            continue
        lines = requests.read()
        if lines is None:
            return 0  # the worker is gone or closed us
        for line in lines:
            request = json.loads(line)
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            try:
                pid = os.fork()
            except OSError as exc:
                _send(reply, {"failed": f"fork failed: {exc}"})
                continue
            if pid == 0:
                _child(request, me, server_env, [req, reply, wake_r, wake_w])
            _send(reply, {"started": pid})


if __name__ == "__main__":
    del sys.path[0]  # this file's folder: neither preloads nor trials should see it
    if sys.argv[1] == "--one":
        one(int(sys.argv[2]), int(sys.argv[3]))
    sys.exit(serve(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]))
