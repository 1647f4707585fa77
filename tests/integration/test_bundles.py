"""Bundles of short trials (app.coordinator.bundling) through the real Redis, Celery worker and
trial processes: every trial runs once and is recorded on its own, running trials never exceed
maxParalleNum, a bundle runs only the trials nobody else claimed, and one whose worker died is run
again by the coordinator's lease check."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis

from app.config import Settings
from app.coordinator.dispatch import Publisher
from app.coordinator.leases import LeaseKeeper
from app.keys import claim_key, encode_stop, events_stream, lease_key, stop_key
from app.messages import TrialEvent, TrialTask
from app.store.models import ExperimentState, Trial, TrialState
from app.store.repository import Store
from tests.helpers import QUAD, drive, max_concurrency, quad_spec, submit_quad, trial_task, until
from workers.celery_app import make_celery
from workers.runner import TrialRunner

pytestmark = pytest.mark.usefixtures("cpu_worker")


def _record_groups(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """The trial numbers of every message the coordinator sends (the real send still happens)."""
    sent: list[list[int]] = []
    real = Publisher._send

    def spy(self: Publisher, producer: Any, group: list[Any], queue: str) -> None:
        sent.append([t.number for t in group])
        real(self, producer, group, queue)

    monkeypatch.setattr(Publisher, "_send", spy)
    return sent


def test_short_trials_go_out_in_bundles_and_each_is_run_and_recorded_once(
    store: Store, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = _record_groups(monkeypatch)
    spec = quad_spec(max_trials=24, max_parallel=2)
    exp = submit_quad(store, spec)
    # every trial of the quad script counts as short here: bundles of up to 4
    drive(store, settings.model_copy(update={"bundle_max": 4, "bundle_target_s": 30.0}), [exp.id])

    trials = store.trials(exp.id)
    assert store.experiment(exp.id).state == ExperimentState.FINISHED  # type: ignore[union-attr]
    assert [t.state for t in trials] == [TrialState.FINISHED] * 24
    assert sorted(n for group in sent for n in group) == list(range(24))  # each sent once
    assert max(len(g) for g in sent) == 4 and len(sent) < 24
    assert sent[0] == [0]  # nothing is bundled before a trial has finished
    assert max_concurrency(trials) <= 2  # a bundle's trials run one after another on its slot
    assert all(t.attempt == 1 and t.worker and t.objective is not None for t in trials)


def test_long_trials_are_not_bundled(
    store: Store, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = _record_groups(monkeypatch)
    exp = submit_quad(store, quad_spec(max_trials=6, max_parallel=2))
    # a quad trial takes longer than a 1 ms target
    drive(store, settings.model_copy(update={"bundle_max": 8, "bundle_target_s": 0.001}), [exp.id])
    assert [len(g) for g in sent] == [1] * 6
    assert [t.state for t in store.trials(exp.id)] == [TrialState.FINISHED] * 6


def _events(client: redis.Redis, experiment: str) -> list[TrialEvent]:
    return [TrialEvent.decode(fields) for _, fields in client.xrange(events_stream(experiment))]


def test_a_bundle_runs_only_the_trials_nobody_claimed(
    store: Store, redis_url: str, redis_client: redis.Redis
) -> None:
    """As when a bundle comes again after its worker died: the trial another delivery took is
    skipped, the others run, each with its own events."""
    name = f"bundle-{time.time_ns()}"
    params = {"x": 0.25, "y": 0.5, "c": "a"}
    tasks = [
        trial_task(
            redis_client, QUAD, f"{name}-{i}", experiment=name, trial_id=i + 1, number=i, params=params
        )
        for i in range(3)
    ]
    redis_client.set(claim_key(tasks[1].exec_id, 1), "another-delivery", ex=600)
    publisher = Publisher(make_celery(redis_url, include_tasks=False), redis_client, store)
    publisher.publish_groups([tasks], "trials.cpu")

    def ended() -> bool:
        return {e.exec_id for e in _events(redis_client, name) if e.kind == "finished"} == {
            tasks[0].exec_id,
            tasks[2].exec_id,
        }

    until(ended, 60)
    time.sleep(0.5)  # nothing more comes for the claimed trial
    kinds = Counter((e.exec_id, e.kind) for e in _events(redis_client, name))
    assert kinds == {
        (tasks[0].exec_id, "started"): 1,
        (tasks[0].exec_id, "finished"): 1,
        (tasks[2].exec_id, "started"): 1,
        (tasks[2].exec_id, "finished"): 1,
    }
    finished = [e for e in _events(redis_client, name) if e.kind == "finished"]
    assert all(e.status == "ok" and e.objective is not None for e in finished)
    assert finished[0].started_at <= finished[0].ended_at <= finished[1].started_at  # one after another


@pytest.fixture()
def runner(tmp_path: Path, redis_url: str, redis_client: redis.Redis) -> TrialRunner:
    settings = Settings(
        home=tmp_path, broker_url=redis_url, lease_timeout_s=1.0, heartbeat_s=0.2, stop_poll_s=0.1
    )
    return TrialRunner(settings, redis_client, worker="bundle/0")


def _bundle(redis_client: redis.Redis, n: int, **params: Any) -> list[TrialTask]:
    name = f"held-{time.time_ns()}"
    base = {"x": 0.25, "y": 0.5, "c": "a", **params}
    return [
        trial_task(redis_client, QUAD, f"{name}-{i}", experiment=name, trial_id=i + 1, number=i, params=base)
        for i in range(n)
    ]


def _queued(tasks: list[TrialTask]) -> list[Trial]:
    return [Trial(id=t.trial_id, experiment_id=1, number=t.number, exec_id=t.exec_id, params={},
                  queue="trials.cpu", state=TrialState.QUEUED) for t in tasks]  # fmt: skip


def test_a_worker_that_dies_holding_a_bundle_leaves_its_trials_to_be_run_again(
    runner: TrialRunner, redis_client: redis.Redis
) -> None:
    """The bundle's trials are claimed for its delivery when it arrives: were the worker to die
    there, their leases lapse and the coordinator's check finds them lost (it runs them again),
    where unclaimed trials would wait for a message nobody holds any more."""
    tasks = _bundle(redis_client, 3)
    others = _bundle(redis_client, 1)  # still in the queue: never lost
    runner.reserve(tasks, runner.new_token())  # ... and the worker dies here
    keeper = LeaseKeeper(redis_client, lease_timeout_s=1.0, heartbeat_s=0.2)
    experiment = tasks[0].experiment
    assert keeper.lost(experiment, _queued(tasks)) == [] and keeper.lost(experiment, _queued(tasks)) == []
    time.sleep(1.3)  # the leases lapse
    assert keeper.lost(experiment, _queued(tasks)) == []  # suspected once
    assert [t.exec_id for t in keeper.lost(experiment, _queued(tasks))] == [t.exec_id for t in tasks]
    assert keeper.lost(others[0].experiment, _queued(others)) == []
    assert keeper.lost(others[0].experiment, _queued(others)) == []
    # another delivery of the same bundle cannot start them: the claims are the dead delivery's
    assert runner.attempt(tasks[0], token=runner.new_token()) is None


def test_a_bundle_s_waiting_trials_keep_their_leases_while_a_long_one_runs(
    runner: TrialRunner, redis_client: redis.Redis
) -> None:
    tasks = _bundle(redis_client, 2, mode="sleep", sleep=2.5)  # 2.5 s: past the 1 s lease
    token = runner.new_token()
    runner.reserve(tasks, token)
    seen: list[bool] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.append(bool(redis_client.exists(lease_key(tasks[1].exec_id, 1))))
            time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        first = runner.attempt(tasks[0], token=token)
    finally:
        done.set()
        watcher.join()
    assert first is not None and first.outcome.status == "ok"
    assert len(seen) > 20 and all(seen)  # renewed with the running trial's lease all along
    second = runner.attempt(tasks[1], token=token)
    assert second is not None and second.outcome.status == "ok"


def test_a_reserved_trial_stopped_before_its_turn_is_skipped_and_its_lease_dropped(
    runner: TrialRunner, redis_client: redis.Redis
) -> None:
    tasks = _bundle(redis_client, 2)
    token = runner.new_token()
    runner.reserve(tasks, token)
    redis_client.set(stop_key(tasks[1].exec_id), encode_stop("cancelled", False))
    assert runner.attempt(tasks[0], token=token) is not None
    assert runner.attempt(tasks[1], token=token) is None
    assert not redis_client.exists(lease_key(tasks[1].exec_id, 1))


def test_a_trial_another_delivery_holds_is_left_alone_by_the_bundle(
    runner: TrialRunner, redis_client: redis.Redis
) -> None:
    """Its lease is the other delivery's to keep or lose: this bundle neither sets nor renews it."""
    tasks = _bundle(redis_client, 2, mode="sleep", sleep=0.8)
    redis_client.set(claim_key(tasks[1].exec_id, 1), "another-delivery", ex=600)
    token = runner.new_token()
    runner.reserve(tasks, token)
    assert redis_client.exists(lease_key(tasks[0].exec_id, 1))
    assert not redis_client.exists(lease_key(tasks[1].exec_id, 1))
    assert runner.attempt(tasks[0], token=token) is not None  # heartbeats every 0.2 s meanwhile
    assert not redis_client.exists(lease_key(tasks[1].exec_id, 1))
    assert runner.attempt(tasks[1], token=token) is None
