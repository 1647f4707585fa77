"""Subprocess trials in a spare interpreter (workers.prespawn) against the real runner, Redis and
processes: the trial in the spare gets what a freshly started `python main args` gets, ends with the
same codes and tracebacks, is stopped and registered like one, and a spare that cannot serve (a
start-up variable differs, it died) is replaced by a plain subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from app.config import Settings
from app.keys import stop_key
from app.messages import TrialTask
from tests.helpers import (
    PER_TRIAL_ENV,
    RUNNER_SCRIPT,
    process_alive,
    read_probe,
    trial_dir,
    trial_task,
    until,
)
from workers.prespawn import startup_differences
from workers.process import GroupRegistry, wait_exit
from workers.runner import TrialRunner

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
OURS = "app.config,workers.runner,redis,celery"  # modules of the worker a fresh interpreter lacks


@pytest.fixture()
def runner(tmp_path: Path, redis_url: str, redis_client: redis.Redis):  # type: ignore[no-untyped-def]
    settings = Settings(
        home=tmp_path, broker_url=redis_url, keep_trial_dirs=True, stop_poll_s=0.1, kill_grace_s=1.0
    )
    trial_runner = TrialRunner(settings, redis_client, worker="spare/0")
    yield trial_runner
    trial_runner.spares.close()


def _task(redis_client: redis.Redis, name: str, probe_log: Path | None = None, **fields) -> TrialTask:  # type: ignore[no-untyped-def]
    env = {"PROBE_LOG": str(probe_log), "PROBE_MODULES": OURS} if probe_log else {}
    base = dict(params={"x": 0.5}, args=["--flag", "value"], env=env)
    exec_id = f"spare-{name}-{time.time_ns()}"
    return trial_task(redis_client, FIXTURES / "prewarm", exec_id, **{**base, **fields})


def _warm(runner: TrialRunner, redis_client: redis.Redis) -> int:
    """Run one trial (a plain subprocess: no spare yet); returns the spare it left waiting."""
    assert runner.run(_task(redis_client, "warm")).status == "ok"
    spare = runner.spares.waiting_pid
    assert spare is not None and process_alive(spare)
    return spare


def test_the_next_trial_runs_in_the_spare_and_gets_what_a_fresh_interpreter_gets(
    runner: TrialRunner, redis_client: redis.Redis, tmp_path: Path
) -> None:
    log = tmp_path / "probes.jsonl"
    first = _task(redis_client, "first", log)
    assert runner.run(first).status == "ok"
    spare = runner.spares.waiting_pid
    second = _task(redis_client, "second", log)
    event = runner.run(second)
    assert event is not None and event.status == "ok", event.reason
    assert event.objective == pytest.approx(0.25) and event.exit_code == 0 and event.notes == []
    p1, p2 = read_probe(runner, first), read_probe(runner, second)
    assert p2["pid"] == spare and p1["pid"] != spare  # the first had no spare to use
    assert runner.spares.waiting_pid not in (None, spare)  # the next one is waiting already
    for probe, task in ((p1, first), (p2, second)):
        assert probe["ppid"] == os.getpid()  # a child of the slot's process, like any subprocess
        assert probe["pgid"] == probe["pid"] == probe["sid"]  # its own session and group
        assert probe["argv"] == ["train.py", "--flag", "value"]
        assert probe["name"] == "__main__" and probe["stdin"] == "/dev/null"
        assert probe["cwd"] == str(trial_dir(runner, task) / "_submitted_code" / "prewarm")
        assert probe["path0"] == probe["cwd"] and probe["file"] == f"{probe['cwd']}/train.py"
        assert probe["env"]["RESULT_DIR"] == str(trial_dir(runner, task))
        assert probe["env"]["DLI_EXECID"] == task.exec_id
        assert not [k for k in probe["env"] if k.startswith("HPO_")]
        assert "probe written" in (trial_dir(runner, task) / "log" / "stdout").read_text()
    same = {k: v for k, v in p2["env"].items() if k not in PER_TRIAL_ENV}
    assert same == {k: v for k, v in p1["env"].items() if k not in PER_TRIAL_ENV}
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["preloaded"] for r in records] == [[], []]  # nothing of the worker in either interpreter


def test_exit_codes_and_tracebacks_are_a_fresh_interpreter_s(
    runner: TrialRunner, redis_client: redis.Redis
) -> None:
    spare = _warm(runner, redis_client)
    task = _task(redis_client, "crash", params={"mode": "crash"})
    event = runner.run(task)
    assert event.status == "failed" and event.exit_code == 1 and read_probe(runner, task)["pid"] == spare
    stderr = (trial_dir(runner, task) / "log" / "stderr").read_text()
    assert stderr.startswith("Traceback (most recent call last):")
    assert "in fail_deeply" in stderr and "forkserver" not in stderr  # only the script's frames
    assert stderr.rstrip().endswith("RuntimeError: deliberate crash in the trial")
    spare = runner.spares.waiting_pid
    task = _task(redis_client, "exit", params={"mode": "exit", "code": 7})
    event = runner.run(task)
    assert event.status == "failed" and event.exit_code == 7 and read_probe(runner, task)["pid"] == spare


def test_a_start_up_variable_of_its_own_means_a_plain_subprocess(
    runner: TrialRunner, redis_client: redis.Redis
) -> None:
    spare = _warm(runner, redis_client)
    task = _task(redis_client, "hashseed", env={"PYTHONHASHSEED": "0"})
    assert runner.run(task).status == "ok"
    probe = read_probe(runner, task)
    assert probe["pid"] != spare and probe["env"]["PYTHONHASHSEED"] == "0"
    assert not process_alive(spare)  # discarded, and a new one waits
    spare = runner.spares.waiting_pid
    task = _task(redis_client, "after")
    assert runner.run(task).status == "ok" and read_probe(runner, task)["pid"] == spare


def test_a_dead_spare_is_replaced_by_a_plain_subprocess(
    runner: TrialRunner, redis_client: redis.Redis
) -> None:
    spare = _warm(runner, redis_client)
    os.kill(spare, signal.SIGKILL)
    until(lambda: runner.spares._spare.proc.poll() is not None)  # type: ignore[union-attr]
    task = _task(redis_client, "replaced")
    event = runner.run(task)
    assert event.status == "ok" and event.notes == [] and read_probe(runner, task)["pid"] != spare


def test_cancel_kills_the_whole_group_of_a_trial_in_the_spare(
    runner: TrialRunner, redis_client: redis.Redis
) -> None:
    spare = _warm(runner, redis_client)
    task = _task(redis_client, "cancel", params={"mode": "hang"})
    pids_file = trial_dir(runner, task) / "pids.json"

    def stop_soon() -> None:
        until(pids_file.exists)
        redis_client.set(stop_key(task.exec_id), "experiment stopped")

    threading.Thread(target=stop_soon, daemon=True).start()
    event = runner.run(task)
    assert event.status == "stopped" and event.reason == "stopped: experiment stopped"
    pids = json.loads(pids_file.read_text())
    assert pids["trial"] == spare
    until(lambda: not process_alive(pids["trial"]) and not process_alive(pids["child"]), 5)
    assert list(runner.registry.folder.iterdir()) == []


def test_a_killed_worker_takes_its_spare_trial_along_and_the_registry_the_rest(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis
) -> None:
    warm, task = _task(redis_client, "warm"), _task(redis_client, "orphan", params={"mode": "hang"})
    home = tmp_path / "doomed"
    worker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            RUNNER_SCRIPT,
            str(home),
            redis_url,
            warm.model_dump_json(),
            task.model_dump_json(),
        ],
        cwd=ROOT,
    )
    results = home / "worker" / "results" / "hpo" / "batchworkdir"
    try:
        until(lambda: (results / task.exec_id / "pids.json").exists(), 60)
        pids = json.loads((results / task.exec_id / "pids.json").read_text())
        spare_probe = json.loads((results / task.exec_id / "probe.json").read_text())
        assert spare_probe["ppid"] == worker.pid
        assert "DLI_EXECID" not in Path(f"/proc/{pids['trial']}/environ").read_bytes().decode(
            errors="replace"
        )
        os.kill(worker.pid, signal.SIGKILL)
        assert worker.wait(timeout=10) == -9
        until(lambda: not process_alive(pids["trial"]), 5)  # its parent-death signal
        # the grandchild is left to what a restarted worker does: the registry finds the group
        assert GroupRegistry(home / "worker" / "pgids").kill_all(grace_s=1.0) == [pids["trial"]]
        until(lambda: not process_alive(pids["child"]), 5)
    finally:
        worker.kill()
        worker.wait()


def test_wait_exit_sees_the_end_or_times_out() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time, sys; time.sleep(0.3); sys.exit(5)"])
    try:
        assert wait_exit(proc, 0.01) is None
        assert wait_exit(proc, 30) == 5
        assert wait_exit(proc, 0.01) == 5  # already reaped
    finally:
        proc.kill()
        proc.wait()


def test_startup_differences_name_what_python_reads_before_the_script() -> None:
    base = {"PATH": "/bin", "PYTHONPATH": "/a", "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"}
    trial = {
        **base,
        "PYTHONPATH": "/b",
        "PYTHONUNBUFFERED": "",
        "RESULT_DIR": "/r",
        "CUDA_VISIBLE_DEVICES": "1",
    }
    assert startup_differences(base, trial) == []  # applied when the spare becomes the trial
    assert startup_differences(base, {**trial, "LANG": "de_DE.UTF-8", "LD_PRELOAD": "x.so"}) == [
        "LANG",
        "LD_PRELOAD",
    ]
    assert startup_differences(base, {**trial, "PYTHONHASHSEED": "0"}) == ["PYTHONHASHSEED"]
