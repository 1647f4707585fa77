"""Start a trial in its own process group and kill the whole group; remember groups on disk.

The registry (one file per live group under `<worker dir>/pgids`) lets `hpo run` and a restarted
worker kill training processes that outlived a crashed worker. A trial is a `subprocess.Popen`
or a workers.forkserver.ForkedTrial: both are `Trial`s here.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

_PR_SET_PDEATHSIG = 1


class Trial(Protocol):
    """What the runner needs of a started trial (subprocess.Popen has it)."""

    pid: int

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...


def die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(
    cmd: Sequence[str], *, cwd: Path, env: Mapping[str, str], stdout: Path, stderr: Path
) -> subprocess.Popen[bytes]:
    with stdout.open("ab") as out, stderr.open("ab") as err:
        return subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,  # own session => own process group, killed as a whole
            preexec_fn=die_with_parent,
        )


def wait_exit(proc: Trial, timeout: float) -> int | None:
    """The exit code if the trial ends within `timeout`, else None. A subprocess is watched through a
    pidfd (Linux), so its end is seen at once: Popen.wait(timeout) polls with sleeps of up to 50 ms."""
    if isinstance(proc, subprocess.Popen) and proc.returncode is None and hasattr(os, "pidfd_open"):
        try:
            fd = os.pidfd_open(proc.pid)
        except OSError:
            fd = -1
        if fd >= 0:
            try:
                select.select([fd], [], [], timeout)
            finally:
                os.close(fd)
            return proc.poll()
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def pid_alive(pid: int) -> bool:
    """The process exists (maybe as another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_group(pgid: int, grace_s: float, leader: Trial | None = None) -> None:
    """SIGTERM the group, wait up to `grace_s`, then SIGKILL whatever is left. With our own
    `leader`, it is reaped while waiting: an unreaped leader would keep the group "alive"."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if leader is not None:
            leader.poll()
        if not group_alive(pgid):
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def stop_process(proc: Trial, grace_s: float) -> int:
    kill_group(proc.pid, grace_s, leader=proc)
    return proc.wait()


class GroupRegistry:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def add(self, pgid: int, label: str, *, forked: bool = False) -> None:
        """`label` (the exec id); for a forked trial, whose /proc environ does not show its exec id,
        also the leader's start time (with the pid, unique)."""
        started = start_time(pgid) if forked else None
        (self.folder / str(pgid)).write_text(label if started is None else f"{label}\nstart={started}")

    def remove(self, pgid: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.folder / str(pgid)).unlink()

    def kill_all(self, grace_s: float = 2.0) -> list[int]:
        """Kill every registered group still alive; returns the ones that were.

        A group id can be reused once its processes are gone, so on Linux a group is killed only
        if one of its processes still carries the trial's DLI_EXECID (the registered label).
        """
        killed = []
        for entry in self.folder.iterdir():
            if not entry.name.isdigit():
                continue
            pgid = int(entry.name)
            label, _, started = entry.read_text().strip().partition("\nstart=")
            if group_alive(pgid) and _is_trial_group(pgid, label, started or None):
                kill_group(pgid, grace_s)
                killed.append(pgid)
            self.remove(pgid)
        return killed


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (with its pid, unique); None if unknown."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _is_trial_group(pgid: int, exec_id: str, started: str | None = None) -> bool:
    """A forked trial (workers.forkserver) keeps the server's /proc environ: its leader is known
    by its start time; processes it exec'd, and subprocess trials, carry DLI_EXECID."""
    proc = Path("/proc")
    if not proc.is_dir():
        return True  # no way to check: trust the registry
    if started is not None and start_time(pgid) == started:
        return True
    marker = f"DLI_EXECID={exec_id}\0".encode()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) == pgid and marker in (entry / "environ").read_bytes() + b"\0":
                return True
        except (OSError, ProcessLookupError):
            continue
    return False
