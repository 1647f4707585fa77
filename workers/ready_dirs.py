"""A trial directory made ahead: the code copy and empty log/ and checkpoint/ folders for the slot's
next trial, made while the current one runs and renamed into place when the next one starts.

Copying the code and making the folders takes milliseconds of file-system metadata work per trial
(scripts/bench/trial_start.py); between two trials that was idle slot time. The next trial most
likely runs the same code (an experiment's trials do), so the slot keeps one directory of the code
its current trial runs; a trial of other code makes its own as before. The directory lives under
`<results>/.ready` (the same file system as the trial directories, so the rename is one step);
one left by a process that died is removed by the next runner of the same worker directory.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from workers.process import pid_alive
from workers.results import CHECKPOINT_DIR, CODE_DIR

EMPTY_DIRS = ("log", CHECKPOINT_DIR)


def make_trial_dir(code: Path, target: Path) -> None:
    """`target` with a copy of `code` in `_submitted_code` and the empty folders a trial gets."""
    shutil.copytree(code, target / CODE_DIR)
    for name in EMPTY_DIRS:
        (target / name).mkdir()


class ReadyDir:
    """At most one directory made ahead, for one code version."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._ready: tuple[str, Path] | None = None
        self._swept = False

    def make(self, code_id: str, code: Path) -> None:
        """Have a directory of `code` ready (nothing to do when there is one)."""
        if self._ready is not None:
            if self._ready[0] == code_id:
                return
            self.discard()
        if not self._swept:
            self._sweep()
        target = self.folder / f"{os.getpid()}-{uuid.uuid4().hex}"
        try:
            make_trial_dir(code, target)
        except OSError:
            shutil.rmtree(target, ignore_errors=True)
            return
        self._ready = (code_id, target)

    def take(self, code_id: str, result_dir: Path) -> bool:
        """Move the ready directory to `result_dir` (which must not exist) if it holds `code_id`."""
        if self._ready is None or self._ready[0] != code_id:
            return False
        _, path = self._ready
        self._ready = None
        try:
            result_dir.parent.mkdir(parents=True, exist_ok=True)
            os.rename(path, result_dir)
        except OSError:
            shutil.rmtree(path, ignore_errors=True)
            return False
        return True

    def discard(self) -> None:
        if self._ready is not None:
            shutil.rmtree(self._ready[1], ignore_errors=True)
            self._ready = None

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
