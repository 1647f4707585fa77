"""The next trial's directory made while a trial runs (workers.ready_dirs) with the real runner,
Redis and processes: the next trial of the same code gets it whole and fresh, other code gets its
own copy, and leftovers of dead processes are swept. A short trial's own directory is handed on,
emptied of all but its code, unless the trial changed its code copy."""

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
from workers import runner as runner_module
from workers.ready_dirs import ReadyDir, make_trial_dir
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


SHORT = """import json, os, sys
print("hello from", os.environ["DLI_EXECID"])
print("to stderr", file=sys.stderr)
json.dump([{"loss": 0.5}], open(os.path.join(os.environ["RESULT_DIR"], "val_dict_list.json"), "w"))
"""


def _short_code(tmp_path: Path) -> Path:
    folder = tmp_path / "short"
    (folder / "pkg").mkdir(parents=True)
    (folder / "train.py").write_text(SHORT)
    (folder / "pkg" / "data.txt").write_text("a data file beside the script")
    return folder


def test_a_short_trial_hands_its_directory_to_the_next_one_emptied_of_its_own_files(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Trials that end before the next directory is made ahead: the finished one, its code copy
    untouched, becomes the next one's (renamed, not copied), without its results, logs or config."""
    # "short" = done before the runner makes the next directory (REFILL_AFTER_S into the trial); a
    # loaded machine can take longer than that to start an interpreter, so the test moves it out
    monkeypatch.setattr(runner_module, "REFILL_AFTER_S", 30.0)
    settings = Settings(home=tmp_path / "home", broker_url=redis_url, prespawn=False)
    runner = TrialRunner(settings, redis_client, worker="ready/1")
    folder = _short_code(tmp_path)
    first = trial_task(redis_client, folder, f"recycle-a-{time.time_ns()}", params={"x": 1})
    assert runner.run(first) is not None
    (ready,) = _ready(runner)  # the first trial's directory, handed on
    assert not trial_dir(runner, first).exists()
    assert sorted(p.name for p in ready.iterdir()) == ["_submitted_code", "checkpoint", "log"]
    logs = ready / "log"  # the log files are kept, emptied (no process holds them): no new inodes
    assert sorted(p.name for p in logs.iterdir()) == ["stderr", "stdout"]
    assert all(p.stat().st_size == 0 for p in logs.iterdir()) and list((ready / "checkpoint").iterdir()) == []
    code = ready / "_submitted_code" / "short"
    assert sorted(str(p.relative_to(code)) for p in code.rglob("*")) == [
        "config.json", "pkg", "pkg/data.txt", "train.py"
    ]  # fmt: skip  # config.json stays, to be rewritten in place
    inode = code.stat().st_ino
    kept = ("_submitted_code/short/config.json", "log/stdout", "log/stderr")
    inodes = {name: (ready / name).stat().st_ino for name in kept}

    second = trial_task(redis_client, folder, f"recycle-b-{time.time_ns()}", params={"x": 2})
    event = runner.run(second.model_copy(update={"code": first.code}))
    assert event is not None and event.status == "ok" and event.objective == 0.5
    assert "hello from recycle-b" in event.stdout_tail and "recycle-a" not in event.stdout_tail
    assert event.stderr_tail == "to stderr\n"
    (again,) = _ready(runner)  # the second trial ran in the first one's directory, and hands it on
    assert (again / "_submitted_code" / "short").stat().st_ino == inode
    assert {name: (again / name).stat().st_ino for name in kept} == inodes


def _finished(tmp_path: Path) -> tuple[ReadyDir, Path, Path, Path]:
    """A ready-dir holder, a code cache folder, and a finished trial directory of that code."""
    code = tmp_path / "cache"
    shutil.copytree(_short_code(tmp_path / "src"), code)
    used = tmp_path / "results" / "t1"
    make_trial_dir(code, used)
    (used / "_submitted_code" / "config.json").write_text("{}")
    (used / "log" / "stdout").write_text("out")
    (used / "val_dict_list.json").write_text("[]")
    return ReadyDir(tmp_path / "results" / ".ready"), code, used, used / "_submitted_code" / "config.json"


@pytest.mark.parametrize(
    "change", ["a code file edited", "a code file deleted", "a file added to the code", "a link in the code"]
)
def test_a_directory_whose_code_copy_the_trial_changed_is_not_handed_on(tmp_path: Path, change: str) -> None:
    ready, code, used, config = _finished(tmp_path)
    script = used / "_submitted_code" / "train.py"
    if change == "a code file edited":
        script.write_text(script.read_text().replace("0.5", "0.7"))  # same size, new mtime
    elif change == "a code file deleted":
        (used / "_submitted_code" / "pkg" / "data.txt").unlink()
    elif change == "a file added to the code":
        (used / "_submitted_code" / "pkg" / "out.csv").write_text("1,2")
    else:
        (used / "_submitted_code" / "link").symlink_to(script)
    before = sorted(str(p.relative_to(used)) for p in used.rglob("*"))
    assert not ready.recycle("sha-1", code, used, config)
    assert sorted(str(p.relative_to(used)) for p in used.rglob("*")) == before  # left as it was
    assert not ready.take("sha-1", tmp_path / "next")


def test_the_trial_s_own_files_outside_its_code_are_deleted_and_folders_discarded(tmp_path: Path) -> None:
    ready, code, used, config = _finished(tmp_path)
    discarded: list[str] = []
    ready.discard_dir = lambda path: (discarded.append(str(path.relative_to(used))), shutil.rmtree(path))
    (used / "probe.json").write_text("{}")
    (used / "plots" / "deep").mkdir(parents=True)
    (used / "plots" / "deep" / "curve.csv").write_text("1,2")
    (used / "log" / "tensorboard").mkdir()
    (used / "log" / "events.out").write_text("x")
    (used / "checkpoint" / "model.pt").write_text("w")
    assert ready.recycle("sha-1", code, used, config) and not used.exists()
    assert sorted(discarded) == ["log/tensorboard", "plots"]
    assert ready.take("sha-1", tmp_path / "next")  # its config.json is not where this trial's goes: removed
    assert sorted(str(p.relative_to(tmp_path / "next")) for p in (tmp_path / "next").rglob("*")) == [
        "_submitted_code", "_submitted_code/pkg", "_submitted_code/pkg/data.txt", "_submitted_code/train.py",
        "checkpoint", "log", "log/stderr", "log/stdout",
    ]  # fmt: skip


def test_up_to_two_directories_are_ready_at_a_time_and_only_for_one_code(tmp_path: Path) -> None:
    ready, code, used, config = _finished(tmp_path)
    assert ready.recycle("sha-1", code, used, config) and not used.exists()
    second, third = tmp_path / "results" / "t2", tmp_path / "results" / "t3"
    make_trial_dir(code, second)
    make_trial_dir(code, third)
    assert ready.recycle("sha-1", code, second, None)  # a spare, for a background thread running late
    assert not ready.recycle("sha-1", code, third, None) and third.exists()  # two are ready already
    assert not ready.take("sha-2", tmp_path / "next")
    for name in ("next", "after"):
        assert ready.take("sha-1", tmp_path / name)
        assert sorted(str(p.relative_to(tmp_path / name)) for p in (tmp_path / name).rglob("*")) == [
            "_submitted_code", "_submitted_code/pkg", "_submitted_code/pkg/data.txt",
            "_submitted_code/train.py", "checkpoint", "log", "log/stderr", "log/stdout",
        ]  # fmt: skip
    assert not ready.take("sha-1", tmp_path / "none left")
    assert ready.recycle("sha-1", code, third, None)
    ready.make("sha-2", code)  # another code: what was ready for the old one goes
    assert len(list((tmp_path / "results" / ".ready").iterdir())) == 1
    assert not ready.recycle("sha-1", code, tmp_path / "next", None)  # and the old code's is not kept
    assert ready.take("sha-2", tmp_path / "other")


def test_a_log_file_a_process_still_holds_is_replaced_and_one_nobody_holds_is_emptied(tmp_path: Path) -> None:
    """A straggler of the finished trial (here: a process with its stdout open) writes to a file no
    later trial sees; the log file nobody holds is reused, emptied (no new inode)."""
    ready, code, used, config = _finished(tmp_path)
    (used / "log" / "stderr").write_text("err")
    inodes = {name: (used / "log" / name).stat().st_ino for name in ("stdout", "stderr")}
    straggler = subprocess.Popen(["sleep", "30"], stdout=(used / "log" / "stdout").open("a"))
    try:
        assert ready.recycle("sha-1", code, used, config)
        assert ready.take("sha-1", tmp_path / "next", "config.json")
        logs = tmp_path / "next" / "log"
        assert (logs / "stderr").stat().st_ino == inodes["stderr"] and (logs / "stderr").read_text() == ""
        assert (logs / "stdout").stat().st_ino != inodes["stdout"] and (logs / "stdout").read_text() == ""
        os.write(os.open(f"/proc/{straggler.pid}/fd/1", os.O_WRONLY | os.O_APPEND), b"late line")
        assert (logs / "stdout").read_text() == ""  # the straggler's line went to the old file
    finally:
        straggler.kill()
        straggler.wait()


def test_config_json_is_kept_in_place_for_a_trial_that_writes_it_there_and_only_then(tmp_path: Path) -> None:
    ready, code, used, config = _finished(tmp_path)
    inode = config.stat().st_ino
    assert ready.recycle("sha-1", code, used, config)
    assert ready.take("sha-1", tmp_path / "same", "config.json")
    assert (tmp_path / "same" / "_submitted_code" / "config.json").stat().st_ino == inode

    made = ReadyDir(tmp_path / "ready-2")  # made ahead: an empty config.json where the trial's goes
    made.make("sha-1", code, "pkg/config.json")
    assert made.take("sha-1", tmp_path / "there", "pkg/config.json")
    assert (tmp_path / "there" / "_submitted_code" / "pkg" / "config.json").read_text() == ""
    made.make("sha-1", code, "pkg/config.json")
    assert made.take("sha-1", tmp_path / "elsewhere", "config.json")  # another model folder: removed
    assert not (tmp_path / "elsewhere" / "_submitted_code" / "pkg" / "config.json").exists()

    (code / "config.json").write_text('{"default": 1}')  # the code's own config.json is never removed
    own = ReadyDir(tmp_path / "ready-3")
    own.make("sha-2", code, "config.json")
    assert own.take("sha-2", tmp_path / "own", "pkg/config.json")
    assert (tmp_path / "own" / "_submitted_code" / "config.json").read_text() == '{"default": 1}'
