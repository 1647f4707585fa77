"""The next trial's directory made while a trial runs (workers.ready_dirs) with the real runner,
Redis and processes: the next trial of the same code gets it whole and fresh, other code gets its
own copy, and leftovers of dead processes are swept."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from app.config import Settings
from tests.helpers import trial_dir, trial_task
from workers.ready_dirs import ReadyDir
from workers.runner import TrialRunner

QUAD = Path(__file__).parent.parent / "fixtures" / "quad"


@pytest.fixture()
def runner(tmp_path: Path, redis_url: str, redis_client: redis.Redis) -> TrialRunner:
    settings = Settings(home=tmp_path, broker_url=redis_url, keep_trial_dirs=True, prespawn=False)
    return TrialRunner(settings, redis_client, worker="ready/0")


def _run(runner: TrialRunner, redis_client: redis.Redis, folder: Path, name: str) -> Path:
    """Run a trial of `folder`'s train.py long enough (0.2 s) for the next directory to be made."""
    task = trial_task(redis_client, folder, f"ready-{name}-{time.time_ns()}",
                      params={"x": 0.1, "y": 0.2, "sleep": 0.2})  # fmt: skip
    event = runner.run(task)
    assert event is not None and event.status == "ok", event and event.reason
    return trial_dir(runner, task)


def _ready(runner: TrialRunner) -> list[Path]:
    folder = runner.results_fs / ".ready"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def test_the_next_trial_of_the_same_code_takes_the_directory_made_while_the_last_one_ran(
    runner: TrialRunner, redis_client: redis.Redis
) -> None:
    first = _run(runner, redis_client, QUAD, "first")
    (made,) = _ready(runner)  # made during the first trial, for its code
    assert made.name.startswith(f"{os.getpid()}-")
    assert (made / "_submitted_code" / "quad" / "train.py").read_bytes() == (QUAD / "train.py").read_bytes()
    assert sorted(p.name for p in made.iterdir()) == ["_submitted_code", "checkpoint", "log"]
    inode = (made / "_submitted_code").stat().st_ino
    (first / "_submitted_code" / "quad" / "left_by_first.txt").write_text("x")  # a trial's own file

    second = _run(runner, redis_client, QUAD, "second")
    assert (second / "_submitted_code").stat().st_ino == inode  # renamed into place, not copied
    code = second / "_submitted_code" / "quad"
    assert sorted(p.name for p in code.iterdir()) == [
        "config.json",
        "train.py",
    ]  # fresh: nothing of the first
    assert (second / "val_dict_list.json").is_file() and (second / "log" / "stdout").read_text()
    (again,) = _ready(runner)  # and the one after is ready
    assert again != made


def test_a_trial_of_other_code_copies_its_own_and_the_ready_one_follows_the_code(
    runner: TrialRunner, redis_client: redis.Redis, tmp_path: Path
) -> None:
    other = tmp_path / "other" / "quad"
    shutil.copytree(QUAD, other)
    (other / "extra.txt").write_text("only in the other code")
    _run(runner, redis_client, QUAD, "a")
    (made,) = _ready(runner)
    inode = (made / "_submitted_code").stat().st_ino
    b = _run(runner, redis_client, other, "b")
    assert (b / "_submitted_code").stat().st_ino != inode
    assert (b / "_submitted_code" / "quad" / "extra.txt").is_file()
    (now,) = _ready(runner)  # the old code's directory was dropped, the new code's made
    assert not made.exists() and (now / "_submitted_code" / "quad" / "extra.txt").is_file()


def test_leftovers_of_dead_processes_are_swept_and_live_ones_kept(tmp_path: Path) -> None:
    folder = tmp_path / ".ready"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        for name in (f"{dead}-abc", f"{live.pid}-def"):
            (folder / name / "_submitted_code").mkdir(parents=True)
        code = tmp_path / "code"
        (code / "m").mkdir(parents=True)
        (code / "m" / "train.py").write_text("pass\n")
        ready = ReadyDir(folder)
        ready.make("sha-1", code)
        names = sorted(p.name.split("-")[0] for p in folder.iterdir())
        assert names == sorted([str(live.pid), str(os.getpid())])
        assert not ready.take("sha-2", tmp_path / "t1")  # other code: not taken
        assert ready.take("sha-1", tmp_path / "deep" / "t2") and (tmp_path / "deep" / "t2" / "log").is_dir()
        assert not ready.take("sha-1", tmp_path / "t3")  # used up
    finally:
        live.kill()
        live.wait()
