"""Finished trial directories leave their place at once and are deleted in the background."""

from __future__ import annotations

import os
import time
from pathlib import Path

from workers.trash import Trash


def _tree(root: Path) -> Path:
    (root / "log").mkdir(parents=True)
    (root / "log" / "stdout").write_text("x" * 1000)
    (root / "val_dict_list.json").write_text("[]")
    return root


def _wait_empty(folder: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while any(folder.iterdir()):
        assert time.monotonic() < deadline, f"still there: {list(folder.iterdir())}"
        time.sleep(0.02)


def test_discarded_directories_go_at_once_and_are_deleted(tmp_path: Path) -> None:
    trash = Trash(tmp_path / ".trash")
    dirs = [_tree(tmp_path / f"trial-{i}") for i in range(5)]
    for d in dirs:
        trash.discard(d)
        assert not d.exists()
    _wait_empty(tmp_path / ".trash")
    trash.discard(tmp_path / "never-existed")  # nothing to do, no error


def test_leftovers_of_a_dead_process_are_deleted_by_the_next(tmp_path: Path) -> None:
    folder = tmp_path / ".trash"
    _tree(folder / "left-by-a-killed-worker")
    trash = Trash(folder)
    trash.discard(_tree(tmp_path / "trial"))
    _wait_empty(folder)


def test_a_forked_child_starts_its_own_thread(tmp_path: Path) -> None:
    trash = Trash(tmp_path / ".trash")
    trash.discard(_tree(tmp_path / "a"))
    pid = os.fork()
    if pid == 0:  # the child's copy has no running thread: discard must still empty the folder
        try:
            trash.discard(_tree(tmp_path / "b"))
            _wait_empty(tmp_path / ".trash")
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
