"""A trial directory made ahead: the code copy and empty log/ and checkpoint/ folders for the slot's
next trial, made while the current one runs and renamed into place when the next one starts.

Copying the code and making the folders takes milliseconds of file-system metadata work per trial
(scripts/bench/trial_start.py); between two trials that was idle slot time. The next trial most
likely runs the same code (an experiment's trials do), so the slot keeps one directory of the code
its current trial runs; a trial of other code makes its own as before. The directory lives under
`<results>/.ready` (the same file system as the trial directories, so the rename is one step);
one left by a process that died is removed by the next runner of the same worker directory.

A trial too short for that (it ended before the directory was made) hands its own directory on
instead (`recycle`, after its results went out): when its code copy is exactly the cache's (same
files, sizes, modification times and modes; only its config.json added), everything else in it
(results, checkpoints, the trial's own files) is deleted and the rest becomes the next trial's
directory, so back-to-back short trials neither copy the code nor delete it again.

Files are reused, not made again, where that is safe: making a file (a new inode) cost from tens
of µs to nearly 1 ms of kernel CPU on the disks we measured, more than anything else a short
trial's directory needs (docs/benchmarks.md). So a directory comes with empty `log/stdout` and
`log/stderr` and, once known, an empty config.json where the trial's is written; a handed-on
directory keeps its config.json (rewritten in place) and its log files, emptied, when no process
still holds them open (a write lease, `unshared`, says so): a straggler of the finished trial
writing to its log must never write into the next trial's, so a log file someone holds is
replaced instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

from workers.process import pid_alive
from workers.results import CHECKPOINT_DIR, CODE_DIR

EMPTY_DIRS = ("log", CHECKPOINT_DIR)
LOG_FILES = ("stdout", "stderr")  # log/..., opened for appending by every way a trial starts
KEEP = 2  # directories ready at most, per slot
Manifest = dict[str, tuple[int, int, int]]  # relative path -> (mode, size, mtime ns); dirs (mode, 0, 0)


def manifest(root: Path) -> Manifest | None:
    """Every file and folder under `root`; None when there is a link or a special file."""
    out: Manifest = {}
    todo = [""]
    while todo:
        rel = todo.pop()
        with os.scandir(os.path.join(root, rel)) as entries:
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                name = os.path.join(rel, entry.name)
                if stat.S_ISDIR(st.st_mode):
                    out[name] = (st.st_mode, 0, 0)  # a folder's times change as files come and go
                    todo.append(name)
                elif stat.S_ISREG(st.st_mode):
                    out[name] = (st.st_mode, st.st_size, st.st_mtime_ns)
                else:
                    return None
    return out


def make_trial_dir(code: Path, target: Path, config: str | None = None) -> bool:
    """`target` with a copy of `code` in `_submitted_code`, the empty folders and log files a trial
    gets and, with `config` (relative to the code), an empty config.json there. True when that
    config.json is ours (the code has none there)."""
    shutil.copytree(code, target / CODE_DIR)
    for name in EMPTY_DIRS:
        (target / name).mkdir()
    for name in LOG_FILES:
        _touch(target / "log" / name)
    return config is not None and _touch(target / CODE_DIR / config)


def unshared(path: str | Path) -> bool:
    """No process holds `path` open (Linux: a write lease is granted only then). False when that
    cannot be told (another OS, a file system without leases, not our file)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        return True
    except (OSError, AttributeError):
        return False
    finally:
        os.close(fd)


class ReadyDir:
    """Up to `keep` directories made ahead or handed on, all for one code version. More than one:
    a slot's short trials hand their directories on from the runner's background thread, which
    can fall a trial behind; a spare directory then saves the next trial a copy of its code."""

    def __init__(
        self, folder: Path, discard_dir: Callable[[Path], None] | None = None, keep: int = KEEP
    ) -> None:
        self.folder = folder
        self.discard_dir = discard_dir or (lambda path: shutil.rmtree(path, ignore_errors=True))
        self.keep = max(keep, 1)
        # (code id, directory, the config.json in it we made or kept, relative to the code, or None)
        self._ready: list[tuple[str, Path, str | None]] = []
        self._swept = False
        self._lock = threading.Lock()  # `recycle` runs on the runner's background thread
        self._manifests: dict[Path, Manifest | None] = {}  # of code in the cache, which never changes

    def make(self, code_id: str, code: Path, config: str | None = None) -> None:
        """Have a directory of `code` ready (nothing to do when there is one); `config`: where its
        trial's config.json will be written, relative to the code."""
        with self._lock:
            if self._ready:
                if self._ready[0][0] == code_id:
                    return
                self._discard()
            target = self._target()
            try:
                ours = make_trial_dir(code, target, config)
            except OSError:
                shutil.rmtree(target, ignore_errors=True)
                return
            self._ready.append((code_id, target, config if ours else None))

    def ready_for(self, code_id: str) -> bool:
        """A directory of `code_id` is ready."""
        with self._lock:
            return any(r[0] == code_id for r in self._ready)

    def take(self, code_id: str, result_dir: Path, config: str | None = None) -> bool:
        """Move the ready directory to `result_dir` (which must not exist) if it holds `code_id`;
        `config`: where this trial's config.json goes (one made or kept elsewhere is removed)."""
        with self._lock:
            if not self._ready or self._ready[0][0] != code_id:
                return False
            _, path, made = self._ready.pop()
        try:
            result_dir.parent.mkdir(parents=True, exist_ok=True)
            os.rename(path, result_dir)
        except OSError:
            shutil.rmtree(path, ignore_errors=True)
            return False
        if made is not None and made != config:
            _unlink(result_dir / CODE_DIR / made)
        return True

    def recycle(self, code_id: str, code: Path, used: Path, config_file: Path | None) -> bool:
        """Make the finished trial directory `used` a next trial's directory of `code`, if fewer
        than `keep` are ready (none of other code) and its code copy is still exactly `code`'s
        (`config_file`: the config.json it was given, kept to be rewritten). Everything else in it
        (results, checkpoints, files of its own; log files someone holds) is deleted: files here,
        folders by `discard_dir`. True: done, `used` is gone."""
        with self._lock:
            if len(self._ready) >= self.keep or any(r[0] != code_id for r in self._ready):
                return False
            try:
                if code not in self._manifests:
                    self._manifests[code] = manifest(code)
                wanted = self._manifests[code]
                given = str(config_file.relative_to(used / CODE_DIR)) if config_file is not None else None
                if wanted is None or not _same_code(used / CODE_DIR, wanted, given):
                    return False
                kept = given if given is not None and given not in wanted else None  # rewritten in place
                for entry in os.scandir(used):
                    if entry.name == CODE_DIR:
                        continue
                    if entry.name in EMPTY_DIRS and entry.is_dir(follow_symlinks=False):
                        for inner in os.scandir(entry.path):
                            self._empty_or_delete(inner, keep=entry.name == "log" and inner.name in LOG_FILES)
                    else:
                        self._delete(entry)
                for name in EMPTY_DIRS:
                    (used / name).mkdir(exist_ok=True)
                for name in LOG_FILES:
                    _touch(used / "log" / name)
                target = self._target()
                os.rename(used, target)
            except (OSError, ValueError):
                return False
            self._ready.append((code_id, target, kept))
            return True

    def _empty_or_delete(self, entry: os.DirEntry[str], keep: bool) -> None:
        """A log file nobody holds open is emptied and kept; anything else goes (a straggler still
        writing to its log then writes to a file no trial sees)."""
        if keep and entry.is_file(follow_symlinks=False) and unshared(entry.path):
            os.truncate(entry.path, 0)
        else:
            self._delete(entry)

    def _delete(self, entry: os.DirEntry[str]) -> None:
        if entry.is_dir(follow_symlinks=False):
            self.discard_dir(Path(entry.path))
        else:
            os.unlink(entry.path)

    def discard(self) -> None:
        with self._lock:
            self._discard()

    def _discard(self) -> None:
        while self._ready:
            shutil.rmtree(self._ready.pop()[1], ignore_errors=True)

    def _target(self) -> Path:
        """A new name for a ready directory (after sweeping what dead processes left, once)."""
        if not self._swept:
            self._sweep()
        return self.folder / f"{os.getpid()}-{uuid.uuid4().hex}"

    def _sweep(self) -> None:
        """Remove what processes that are gone left here (a trial directory is made anyway)."""
        self._swept = True
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            for entry in self.folder.iterdir():
                pid = entry.name.partition("-")[0]
                if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
                    shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            pass


def _same_code(copy: Path, wanted: Manifest, given: str | None) -> bool:
    """`copy` holds exactly the files `wanted` lists (modes, sizes, modification times), and
    `given` (the trial's config.json) if that is not one of them."""
    found = manifest(copy)
    if found is None:
        return False
    if given is not None and given not in wanted:
        found.pop(given, None)
    return found == wanted


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _touch(path: Path) -> bool:
    """Make an empty file; False when there is one (or no folder for it)."""
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        return True
    return False
