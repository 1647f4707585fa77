"""Subprocess trials without waiting for Python to start: one fresh interpreter kept ready per slot.

A `Spare` is `python forkserver_server.py --one ...` started in the trials' base environment
before its trial is known: it starts up (site, encodings: tens of milliseconds; scripts/bench/trial_start.py)
and blocks on a pipe. When the slot's next trial comes, the runner writes the trial's request (cwd,
environment, argv, log files) to it and the interpreter becomes that trial, as a forked trial does
(workers.forkserver_server): a fresh `__main__`, `sys.argv`, the full environment, stdout/stderr
to the log files, exit code as `python main args`. Unlike a forked trial it shares nothing with
other trials: no preloaded modules, its own hash seed, a fresh interpreter. Then a new spare
starts while the trial runs.

A spare is used only when the trial's environment agrees with the spare's on what Python and the
dynamic loader read before the first line runs (`startup_differences`): else the trial starts as
a plain subprocess. The spare is an ordinary child of the pool process (own session, its
parent-death signal set as it starts), so the runner stops, times out and registers it like any
subprocess trial.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from workers.forkserver import SERVER_SCRIPT, trial_request

# Read by the interpreter or the dynamic loader at start-up, so a spare started without the trial's
# value would differ from `python main args`. PYTHONPATH and PYTHONUNBUFFERED are applied when the
# spare becomes the trial (as in a forked trial), so they may differ.
STARTUP_PREFIXES = ("PYTHON", "LD_", "LC_", "LANG", "MALLOC_", "GLIBC_TUNABLES")
APPLIED_LATER = frozenset({"PYTHONPATH", "PYTHONUNBUFFERED"})


def startup_differences(spare_env: Mapping[str, str], trial_env: Mapping[str, str]) -> list[str]:
    """Variables read at interpreter start-up whose value differs between the two environments."""
    names = {k for k in (*spare_env, *trial_env) if k.startswith(STARTUP_PREFIXES)} - APPLIED_LATER
    return sorted(k for k in names if spare_env.get(k) != trial_env.get(k))


class Spare:
    """One waiting interpreter and the pipe that will carry its trial's request."""

    def __init__(self, python: str, env: Mapping[str, str]) -> None:
        self.python = python
        req_r, req_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [python, str(SERVER_SCRIPT), "--one", str(req_r), str(os.getpid())],
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                pass_fds=(req_r,),
                start_new_session=True,  # its own process group, like a subprocess trial
                # no preexec_fn, so Popen can vfork (a fork of a big pool process costs ~10 ms);
                # the spare sets its parent-death signal itself as it starts
            )
        except BaseException:
            os.close(req_w)
            raise
        finally:
            os.close(req_r)
        self._req = req_w
        # a spare nobody will use (its runner gone) reads the end of its pipe and exits
        self._closer = weakref.finalize(self, _close_quietly, req_w)

    def become(self, request: Mapping[str, Any]) -> subprocess.Popen[bytes] | None:
        """Hand the trial over; None when the spare is gone (the caller starts a subprocess)."""
        try:
            if self.proc.poll() is not None:
                return None
            os.write(self._req, (json.dumps(request) + "\n").encode())
            return self.proc
        except OSError:
            self.discard()
            return None
        finally:
            self._closer()

    def discard(self) -> None:
        self._closer()
        with contextlib.suppress(OSError):
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=5)


def _close_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


class Spares:
    """A pool process's spare interpreter (one: a slot runs one trial at a time)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)
        self._spare: Spare | None = None

    def spawn(
        self,
        python: str,
        *,
        main: str,
        args: Sequence[str],
        cwd: Path,
        env: Mapping[str, str],
        stdout: Path,
        stderr: Path,
    ) -> subprocess.Popen[bytes] | None:
        """The trial started in the spare, or None (no usable spare: start a subprocess instead)."""
        spare, self._spare = self._spare, None
        if spare is None:
            return None
        if spare.python != python or startup_differences(self.env, env):
            spare.discard()
            return None
        return spare.become(trial_request(main, args, cwd, env, stdout, stderr))

    @property
    def waiting_pid(self) -> int | None:
        """The spare interpreter waiting for the next trial, if any."""
        return None if self._spare is None else self._spare.proc.pid

    def refill(self, python: str) -> None:
        """Start the next trial's interpreter now (the current trial is already running)."""
        if self._spare is not None and (self._spare.python != python or self._spare.proc.poll() is not None):
            self._spare.discard()
            self._spare = None
        if self._spare is None:
            with contextlib.suppress(OSError):
                self._spare = Spare(python, self.env)

    def close(self) -> None:
        if self._spare is not None:
            self._spare.discard()
            self._spare = None
