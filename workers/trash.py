"""Finished trial directories, deleted in the background so a slot takes its next trial at once.

A directory is renamed into `<folder>` (same filesystem: instant) and a daemon thread removes it.
Leftovers of a process that died before its thread finished are removed by the next one to start.
"""

from __future__ import annotations

import os
import queue
import shutil
import threading
import uuid
from pathlib import Path


class Trash:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._queue: queue.SimpleQueue[Path] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def discard(self, path: Path) -> None:
        """`path` is gone from where it was when this returns; its files go soon after."""
        target = self.folder / uuid.uuid4().hex
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._ensure_thread()
            os.rename(path, target)
        except FileNotFoundError:
            return
        except OSError:  # another filesystem, or the folder cannot be made: delete it here
            shutil.rmtree(path, ignore_errors=True)
            return
        self._queue.put(target)

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            return
        self._queue = queue.SimpleQueue()  # a forked child gets a copy whose thread is not running
        for leftover in self.folder.iterdir():
            self._queue.put(leftover)
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._empty, name="hpo-trash", daemon=True)
        self._thread.start()

    def _empty(self) -> None:
        while True:
            shutil.rmtree(self._queue.get(), ignore_errors=True)
