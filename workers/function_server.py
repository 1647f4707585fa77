"""Function trials: a per-slot process that imports the user's module once and calls its function
for each trial, in-process, without starting or forking a process per trial.

Run by workers.forkserver as `python function_server.py REQ_FD REPLY_FD PARENT_PID [MODULE ...]`
with the trial interpreter (standard library only). The protocol is forkserver_server.py's: the
server says {"ready": pid}; each request ({"main", "argv", "cwd", "env", "stdout", "stderr"} plus
"source": the module file, "function": its name, "metric": the objective's name) is answered by
{"started": pid}, the call, then {"exited": pid, "code": int}; the pid is the server's own.

For each trial the server sets up what the script would see (cwd, `os.environ`, `sys.argv`,
stdout/stderr appended to the trial's log files), reads config.json, calls `function(config)` and
sends what it returned back with the exit code, as val_dict_list.json's text (`"results"`): a
number as one point of the objective metric, a dict as one point, a list of dicts as they are;
None sends nothing (the function wrote `$RESULT_DIR/val_dict_list.json` itself). The worker puts
that text into the trial's result archive as val_dict_list.json; it is written into RESULT_DIR
only when the request says `"results_file": true` (kept trial directories): a new file costs more
kernel time than the rest of a short function trial (docs/benchmarks.md). A return is exit
code 0, `sys.exit(n)` code n, an exception its traceback on stderr and code 1. The module is
imported at the first call (so its top level sees that trial's environment) and kept: its globals
live on between trials, as in Ray Tune's reused actors or an Optuna objective. The worker replaces
the process after a failed, stopped or GPU trial.

`python function_server.py --call MAIN FUNCTION METRIC [ARGS ...]` runs one trial the same way in a
process of its own (the fallback where the server cannot be used, e.g. a multi-GPU trial under
torchrun: only rank 0 writes the results).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, NamedTuple

try:  # run as a script by the trial interpreter (its folder is on sys.path), or imported as workers.*
    import forkserver_server as fs
except ImportError:  # pragma: no cover - the package import, for tests and type checks
    from workers import forkserver_server as fs

RESULTS_FILE = "val_dict_list.json"
RETURNS = "return a number (the objective), a dict of metrics, a list of such dicts (one per epoch), or None"


class ResultError(TypeError):
    """The function is not there, or returned something that is not a result."""


def load_function(source: str, name: str, modules: dict[str, Any]) -> Callable[..., Any]:
    """`name` from the module file `source`, imported once (as the file's stem when no other module
    has that name: pickling and multiprocessing find it)."""
    module = modules.get(source)
    if module is None:
        stem = os.path.splitext(os.path.basename(source))[0]
        taken = stem in sys.modules or not stem.isidentifier()
        module_name = f"_hpo_trial_{len(modules)}" if taken else stem
        spec = importlib.util.spec_from_file_location(module_name, source)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {source}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
        modules[source] = module
    function = getattr(module, name, None)
    if not callable(function):
        found = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))[:10]
        raise ResultError(
            f"{os.path.basename(source)} has no function {name!r} (model.function); "
            f"callables there: {', '.join(found) or 'none'}"
        )
    return function  # type: ignore[no-any-return]


def _plain(value: Any) -> float:
    """numpy and torch scalars become floats in the results file."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ResultError(f"{type(value).__name__} is not a number") from None


def result_points(value: Any, metric: str, function: str) -> list[dict[str, Any]] | None:
    """What `function` returned, as val_dict_list.json's points; None when it returned None."""
    if value is None:
        return None
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list | tuple) and all(isinstance(v, dict) for v in value):
        return list(value)
    if not isinstance(value, bool | str | bytes | list | tuple) and hasattr(value, "__float__"):
        return [{metric: _plain(value)}]
    raise ResultError(f"{function}() returned {type(value).__name__}: {RETURNS}")


def write_results(text: str, result_dir: str) -> None:
    with open(os.path.join(result_dir, RESULTS_FILE), "w") as fh:
        fh.write(text)


class Called(NamedTuple):
    code: int  # the trial's exit code
    results: str | None = None  # val_dict_list.json's text, from what the function returned


def call(main: str, source: str, function: str, metric: str, results_file: bool = True) -> Called:
    """Call the trial's function with ./config.json; its exit code and results (written to
    RESULT_DIR too with `results_file`)."""
    results = None
    try:
        fn = load_function(source, function, _MODULES)
        with open("config.json") as fh:
            config = json.load(fh)
        points = result_points(fn(config), metric, function)
        if points is not None and os.environ.get("RANK", "0") == "0":
            results = json.dumps(points, default=_plain)
            if results_file:
                write_results(results, os.environ.get("RESULT_DIR", "."))
        code = 0
    except SystemExit as exc:
        code = fs._exit_code(exc.code)
    except ResultError as exc:  # our own message says it all
        with contextlib.suppress(Exception):
            print(f"hpo: {exc}", file=sys.stderr)
        code = 1
    except BaseException as exc:
        tb = None if isinstance(exc, SyntaxError) else fs._user_traceback(exc.__traceback__, source)
        with contextlib.suppress(Exception):
            sys.excepthook(type(exc), exc.with_traceback(tb), tb)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()
    return Called(code, results if code == 0 else None)


_MODULES: dict[str, Any] = {}  # imported trial modules, by file


def _enter(request: dict[str, Any], server_env: dict[str, str]) -> None:
    """The trial's log files on fds 1 and 2 (behind the same sys.stdout/sys.stderr objects, so one
    kept from an earlier trial writes to this trial's logs), cwd, environment, argv, module folder."""
    fs.redirect_logs(request)
    unbuffered = bool(request["env"].get("PYTHONUNBUFFERED"))
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.reconfigure(write_through=unbuffered)  # type: ignore[union-attr]
    fs.enter_trial(request, server_env, os.path.dirname(request["source"]))


def _leave(devnull: int) -> None:
    """Between trials, stray output (a thread the function left running) goes nowhere."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()
    for target in (1, 2):
        os.dup2(devnull, target)


def serve(req: int, reply: int, parent: int, preload: list[str]) -> int:
    if not fs.start_server(reply, parent, preload):
        return 1
    server_env = dict(os.environ)
    # the module is imported from the worker's code cache, which every later trial copies
    sys.dont_write_bytecode = True
    fs._warm_up()
    devnull = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1, 2):
        os.dup2(devnull, target)
    fs._std_streams(unbuffered=False)
    me = os.getpid()
    fs._send(reply, {"ready": me})
    requests = fs._Lines(req)
    while True:
        lines = requests.read()
        if lines is None:
            return 0  # the worker is gone or closed us
        for line in lines:
            request = json.loads(line)
            fs._send(reply, {"started": me})
            try:
                _enter(request, server_env)
            except BaseException:
                with contextlib.suppress(BaseException):
                    traceback.print_exc()
                called = Called(127)
            else:
                called = call(request["main"], request["source"], request["function"], request["metric"],
                              bool(request.get("results_file", True)))  # fmt: skip
            _leave(devnull)
            done: dict[str, Any] = {"exited": me, "code": called.code}
            if called.results is not None:
                done["results"] = called.results
            fs._send(reply, done)


def call_once(main: str, function: str, metric: str, args: list[str]) -> int:
    """`--call`: one trial in this process, already in the trial's cwd, environment and logs."""
    source = os.path.abspath(main)
    sys.path[0] = os.path.dirname(source)
    sys.argv = [main, *args]
    return call(main, source, function, metric).code


if __name__ == "__main__":
    if sys.argv[1] == "--call":
        sys.exit(call_once(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]))
    del sys.path[0]  # this file's folder: neither preloads nor trials should see it
    sys.exit(serve(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]))
