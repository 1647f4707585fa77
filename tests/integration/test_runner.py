"""The trial runner on its own (no Celery): real Redis, real subprocesses, real process groups."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from app.codepack import sha256
from app.config import Settings
from app.keys import claim_key, code_key, events_stream, stop_key
from app.messages import CodeRef, TrialEvent, TrialTask
from tests.helpers import process_alive, trial_task
from workers.process import GroupRegistry
from workers.runner import TrialRunner

FIXTURES = Path(__file__).parent.parent / "fixtures"


@pytest.fixture()
def runner(tmp_path: Path, redis_url: str, redis_client: redis.Redis) -> TrialRunner:
    settings = Settings(
        home=tmp_path, broker_url=redis_url, keep_trial_dirs=True, stop_poll_s=0.1, kill_grace_s=1.0
    )
    return TrialRunner(settings, redis_client, worker="unit/0")


def _task(redis_client: redis.Redis, folder: Path, name: str, **fields) -> TrialTask:  # type: ignore[no-untyped-def]
    exec_id = f"unit-{name}-{time.time_ns()}"
    return trial_task(redis_client, folder, exec_id, **{"params": {"x": 0.3, "y": 0.7}, **fields})


def _events(redis_client: redis.Redis, experiment: str) -> list[TrialEvent]:
    return [TrialEvent.decode(f) for _, f in redis_client.xrange(events_stream(experiment))]


def test_successful_trial_reports_started_then_finished(runner: TrialRunner, redis_client) -> None:
    task = _task(redis_client, FIXTURES / "quad", "ok")
    event = runner.run(task)
    assert event is not None and event.status == "ok"
    assert event.objective == pytest.approx(1.0 / 3)  # min over the three points of 0 + 1/i
    kinds = [e.kind for e in _events(redis_client, task.experiment)]
    assert kinds == ["started", "finished"]
    assert [p["step"] for p in event.points] == [1, 2, 3]
    assert event.metrics_summary["loss"]["latest"] == pytest.approx(1.0 / 3)
    assert redis_client.get(event.result_key)  # the zipped result directory is in the broker


def test_a_redelivered_attempt_does_not_run_twice(runner: TrialRunner, redis_client) -> None:
    task = _task(redis_client, FIXTURES / "quad", "dup")
    assert runner.run(task) is not None
    assert runner.run(task) is None
    assert len(_events(redis_client, task.experiment)) == 2
    assert redis_client.get(claim_key(task.exec_id, 1)).startswith(b"unit/0:")


def test_a_cancelled_trial_never_starts(runner: TrialRunner, redis_client) -> None:
    task = _task(redis_client, FIXTURES / "quad", "cancelled")
    redis_client.set(stop_key(task.exec_id), "cancelled")
    assert runner.run(task) is None
    assert _events(redis_client, task.experiment) == []


def test_missing_code_and_missing_main_fail_with_reasons(runner: TrialRunner, redis_client) -> None:
    task = _task(redis_client, FIXTURES / "quad", "nocode")
    redis_client.delete(code_key(task.code.sha256))
    event = runner.run(task)
    assert event.status == "failed" and "is not in the broker" in event.reason
    task = _task(redis_client, FIXTURES / "quad", "nomain", main="missing.py")
    event = runner.run(task)
    assert event.status == "failed" and "model main 'missing.py' not found" in event.reason


def test_stop_flag_kills_the_whole_process_group(runner: TrialRunner, redis_client) -> None:
    task = _task(redis_client, FIXTURES / "forker", "stop")
    result_dir = runner.results_fs / "hpo" / "batchworkdir" / task.exec_id

    def stop_soon() -> None:
        for _ in range(200):
            if (result_dir / "pids.json").exists():
                break
            time.sleep(0.05)
        redis_client.set(stop_key(task.exec_id), "experiment stopped")

    threading.Thread(target=stop_soon, daemon=True).start()
    started = time.monotonic()
    event = runner.run(task)
    assert time.monotonic() - started < 20
    assert event.status == "stopped" and event.reason == "stopped: experiment stopped"
    pids = json.loads((result_dir / "pids.json").read_text())
    time.sleep(0.2)
    assert not process_alive(pids["trial"]) and not process_alive(pids["child"])
    assert list((runner.registry.folder).iterdir()) == []


def test_timeout_kills_the_group_and_fails_the_trial(runner: TrialRunner, redis_client) -> None:
    task = _task(redis_client, FIXTURES / "forker", "timeout", timeout_s=1.5)
    event = runner.run(task)
    assert event.status == "failed" and event.reason.startswith("trial timed out after 1.5 s")
    pids = json.loads((runner.results_fs / "hpo" / "batchworkdir" / task.exec_id / "pids.json").read_text())
    time.sleep(0.2)
    assert not process_alive(pids["child"])


def test_single_file_upload_runs_from_submitted_code(runner: TrialRunner, redis_client, tmp_path) -> None:
    script = (FIXTURES / "quad" / "train.py").read_bytes()
    digest = sha256(script)
    redis_client.hset(code_key(digest), mapping={"filename": "train.py", "data": script})
    task = _task(redis_client, FIXTURES / "quad", "single", model_dir=None)
    task = task.model_copy(update={"code": CodeRef(sha256=digest, filename="train.py")})
    event = runner.run(task)
    assert event.status == "ok"
    probe = json.loads((runner.results_fs / "hpo" / "batchworkdir" / task.exec_id / "probe.json").read_text())
    assert probe["cwd"].endswith("/_submitted_code")
    assert os.path.exists(Path(probe["cwd"]) / "config.json")


def test_registry_kills_only_groups_that_are_still_our_trials(tmp_path: Path) -> None:
    registry = GroupRegistry(tmp_path / "pgids")
    ours = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        start_new_session=True,
        env={**os.environ, "DLI_EXECID": "exp-3"},
    )
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    registry.add(ours.pid, "exp-3")
    registry.add(stranger.pid, "exp-9")  # a stale entry whose group id now belongs to someone else
    try:
        assert registry.kill_all(grace_s=1.0) == [ours.pid]
        assert ours.wait(timeout=5) is not None
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()
    assert list(registry.folder.iterdir()) == []


def test_an_attempt_concluded_in_the_background_publishes_its_end_once_drained(
    runner: TrialRunner, redis_client
) -> None:
    """The Celery task frees its slot when the process ended; the results and the `finished`
    event go out on the runner's background thread, in order, and `drain` waits for them."""
    tasks = [_task(redis_client, FIXTURES / "quad", f"bg{i}") for i in range(2)]
    ran = [runner.attempt(task) for task in tasks]
    assert [r.outcome.status for r in ran] == ["ok", "ok"]
    assert [e.kind for e in _events(redis_client, tasks[0].experiment)] == ["started"]  # not yet
    for r in ran:
        runner.conclude_later(r)
    runner.drain()
    for task in tasks:
        events = _events(redis_client, task.experiment)
        assert [e.kind for e in events] == ["started", "finished"]
        assert events[1].objective == pytest.approx(1.0 / 3) and redis_client.get(events[1].result_key)
