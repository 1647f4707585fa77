"""The machine a benchmark ran on (cores, CPU model, Python, load) and process memory from /proc."""

from __future__ import annotations

import os
import platform
import resource
import shutil
import subprocess
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def describe() -> str:
    """One line: cores, CPU model, OS, Python."""
    return (
        f"{os.cpu_count()} cores, {cpu_model()}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def file_create_us(folder: Path, files: int = 200) -> float:
    """Kernel CPU per new file (microseconds) in a fresh folder under `folder`: the cost of the
    files a trial directory gets, which differs by an order of magnitude between places of one disk."""
    folder.mkdir(parents=True, exist_ok=True)
    probe = tempfile.mkdtemp(prefix="create-probe-", dir=folder)
    try:
        before = resource.getrusage(resource.RUSAGE_SELF)
        for i in range(files):
            os.close(os.open(os.path.join(probe, str(i)), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        after = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        shutil.rmtree(probe, ignore_errors=True)
    return (after.ru_stime - before.ru_stime + after.ru_utime - before.ru_utime) / files * 1e6


def storage(workdir: Path) -> str:
    """Where the service's files went and what a new file cost there (and in the temp folder)."""
    here = file_create_us(workdir)
    line = f"trial directories, SQLite and results under {workdir}: {here:.0f} µs of CPU per new file"
    tmp = Path(tempfile.gettempdir())
    if tmp.resolve() not in (workdir.resolve(), *workdir.resolve().parents):
        line += f" ({tmp}: {file_create_us(tmp):.0f} µs)"
    return line


def code_version(root: Path) -> str:
    """The commit the code is at, and whether the working tree has changes on top of it."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True,
                              timeout=10).stdout.strip()  # fmt: skip

    try:
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head} + uncommitted changes" if dirty else head


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def status_kb(pid: int, field: str) -> int | None:
    """A `kB` field of /proc/<pid>/status (VmHWM: peak RSS, VmRSS: current RSS)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def peak_rss_mb(pid: int) -> float | None:
    kb = status_kb(pid, "VmHWM")
    return None if kb is None else kb / 1024


def rss_mb(pid: int) -> float | None:
    kb = status_kb(pid, "VmRSS")
    return None if kb is None else kb / 1024


class RssSampler:
    """Samples a process's RSS every `every_s` seconds in a thread; `peak` is the highest seen."""

    def __init__(self, pid: int, every_s: float = 0.5) -> None:
        self.pid = pid
        self.every_s = every_s
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"rss-{pid}", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            value = rss_mb(self.pid)
            if value is not None:
                self.samples.append(value)
            self._stop.wait(self.every_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def peak(self) -> float | None:
        return max(self.samples) if self.samples else None
