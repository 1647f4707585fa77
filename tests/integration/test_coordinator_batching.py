"""Batched event handling: one transaction per read, ack only after it commits, replays are no-ops.

Real Redis (the test db) and SQLite; events are written to the experiment's stream by hand, and
the experiment's queue is one no worker serves, so nothing here runs a trial.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from app.config import Settings
from app.coordinator.loop import Coordinator
from app.keys import EVENTS_GROUP, events_stream
from app.messages import TrialEvent, publish_event
from app.spec.model import ResourceRequest
from app.store.batch import FinishOp, PointsOp, StartOp, TrialWriter
from app.store.models import Experiment, Trial, TrialState
from app.store.repository import Store, TrialOutcome
from tests.helpers import make_coordinator, quad_spec, submit_quad
from tests.integration.test_store import db, engine  # noqa: F401  # SQLite and PostgreSQL

QUEUE = "trials.zz6.x1"  # served by no worker: published tasks only wait here (not a queue other tests drop)
NOWHERE = {"gpu_type": "zz6", "gpus": 1, "launcher": "python"}


@pytest.fixture()
def coordinated(
    store: Store, settings: Settings, redis_client: redis.Redis
) -> Iterator[tuple[Coordinator, Experiment, list[Trial]]]:
    """An experiment of 4 trials adopted by a coordinator, all of them QUEUED."""
    exp = submit_quad(store, quad_spec(max_trials=4, max_parallel=4, resources=NOWHERE))
    assert exp.queue == QUEUE
    coord = make_coordinator(store, settings, [exp.id])
    coord.tick()
    trials = store.trials(exp.id)
    assert [t.state for t in trials] == [TrialState.QUEUED] * 4
    yield coord, exp, trials
    coord.close()
    redis_client.delete(QUEUE, f"_kombu.binding.{QUEUE}", events_stream(exp.name))


def test_a_new_experiment_s_first_trials_do_not_wait_for_an_event_read(
    store: Store, settings: Settings, redis_client: redis.Redis
) -> None:
    """The tick that adopts an experiment starts its trials without first blocking on the (empty)
    event streams for event_block_ms (which delayed every experiment's first trials)."""
    exp = submit_quad(store, quad_spec(max_trials=2, max_parallel=2, resources=NOWHERE))
    coord = make_coordinator(store, settings.model_copy(update={"event_block_ms": 20_000}), [exp.id])
    try:
        started = time.monotonic()
        coord.tick()
        assert time.monotonic() - started < 10  # not the 20 s of a blocking read
        assert [t.state for t in store.trials(exp.id)] == [TrialState.QUEUED] * 2
        assert redis_client.llen(QUEUE) == 2
    finally:
        coord.close()
        redis_client.delete(QUEUE, f"_kombu.binding.{QUEUE}", events_stream(exp.name))


def _events(exp: Experiment, trial: Trial, objective: float) -> list[TrialEvent]:
    common: dict[str, Any] = {
        "experiment": exp.name,
        "trial_id": trial.id,
        "exec_id": trial.exec_id,
        "attempt": trial.attempt,
        "worker": "w1",
    }
    points = [{"seq": 0, "step": 1, "values": {"loss": objective}}]
    return [
        TrialEvent(kind="started", started_at=1000.0, **common),
        TrialEvent(kind="finished", status="ok", objective=objective, started_at=1000.0, ended_at=1001.0,
                   points=points, **common),
    ]  # fmt: skip


def _pending(client: redis.Redis, exp: Experiment) -> int:
    return int(client.xpending(events_stream(exp.name), EVENTS_GROUP)["pending"])


def test_a_read_is_recorded_in_one_commit_and_acked_after_it(
    store: Store, redis_client: redis.Redis, coordinated: tuple[Coordinator, Experiment, list[Trial]]
) -> None:
    coord, exp, trials = coordinated
    for i, trial in enumerate(trials[:3]):
        for ev in _events(exp, trial, 0.5 - i / 10):
            publish_event(redis_client, ev)
    commits: list[int] = []

    def on_commit(conn: Any) -> None:
        commits.append(1)

    event.listen(store.engine, "commit", on_commit)
    acks_at_commit: list[int] = []
    apply = coord.writer.apply

    def spying_apply(ops: Any) -> list[bool]:
        out = apply(ops)
        acks_at_commit.append(_pending(redis_client, exp))  # committed, nothing acked yet
        return out

    coord.writer.apply = spying_apply  # type: ignore[method-assign]
    try:
        coord.tick()
    finally:
        event.remove(store.engine, "commit", on_commit)
    assert acks_at_commit == [6]  # all six events were still pending when their commit happened
    # The six events: one commit, and one for the best so far (the budget is spent: no refill).
    assert len(commits) == 2
    got = store.trials(exp.id)
    assert [t.state for t in got] == [TrialState.FINISHED] * 3 + [TrialState.QUEUED]
    assert [t.worker for t in got[:3]] == ["w1"] * 3
    assert store.experiment(exp.id).best_trial_id == got[2].id  # type: ignore[union-attr]
    assert redis_client.xlen(events_stream(exp.name)) == 0 and _pending(redis_client, exp) == 0
    assert coord.runtimes[exp.id].counts.finished == 3


def test_a_batch_the_database_refused_is_read_again_and_recorded_once(
    store: Store, redis_client: redis.Redis, coordinated: tuple[Coordinator, Experiment, list[Trial]]
) -> None:
    coord, exp, trials = coordinated
    for ev in _events(exp, trials[0], 0.25):
        publish_event(redis_client, ev)
    apply = coord.writer.apply
    calls = {"n": 0}

    def failing_once(ops: Any) -> list[bool]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OperationalError("UPDATE trial", {}, Exception("database is locked"))
        return apply(ops)

    coord.writer.apply = failing_once  # type: ignore[method-assign]
    with pytest.raises(OperationalError):
        coord.tick()
    assert store.trial(trials[0].id).state == TrialState.QUEUED  # type: ignore[arg-type,union-attr]
    assert _pending(redis_client, exp) == 2  # delivered, not acked
    coord.tick()  # the same deliveries again, from the coordinator's backlog
    assert store.trial(trials[0].id).state == TrialState.FINISHED  # type: ignore[arg-type,union-attr]
    assert _pending(redis_client, exp) == 0 and redis_client.xlen(events_stream(exp.name)) == 0
    # A replay of the same finished event (a worker that published twice) changes nothing.
    publish_event(redis_client, _events(exp, trials[0], 0.99)[1])
    coord.tick()
    trial = store.trial(trials[0].id)  # type: ignore[arg-type]
    assert trial is not None and trial.objective == pytest.approx(0.25)
    assert len(store.metric_points(trials[0].id)) == 1  # type: ignore[arg-type]
    assert coord.runtimes[exp.id].counts.finished == 1
    assert _pending(redis_client, exp) == 0


def _spy_ops(coord: Coordinator) -> list[list[str]]:
    """The kinds of the SQL writes of every batch the coordinator applies."""
    batches: list[list[str]] = []
    apply = coord.writer.apply

    def spying(ops: Any) -> list[bool]:
        batches.append([type(op).__name__ for op in ops])
        return apply(ops)

    coord.writer.apply = spying  # type: ignore[method-assign]
    return batches


def test_a_start_whose_end_is_in_the_same_read_is_recorded_by_the_end_alone(
    store: Store, redis_client: redis.Redis, coordinated: tuple[Coordinator, Experiment, list[Trial]]
) -> None:
    coord, exp, trials = coordinated
    for ev in _events(exp, trials[0], 0.4):
        publish_event(redis_client, ev)
    on_gpu = _events(exp, trials[1], 0.3)  # a start that names GPUs keeps its own write
    on_gpu[0] = on_gpu[0].model_copy(update={"gpus": ["0", "1"]})
    for ev in on_gpu:
        publish_event(redis_client, ev)
    batches = _spy_ops(coord)
    coord.tick()
    assert batches == [["FinishOp", "StartOp", "FinishOp"]]  # trial 0's start: no write of its own
    first, second = store.trial(trials[0].id), store.trial(trials[1].id)  # type: ignore[arg-type]
    assert first is not None and second is not None
    assert first.state == TrialState.FINISHED and first.worker == "w1"
    assert first.started_at is not None and first.started_at.timestamp() == pytest.approx(1000.0)
    assert second.state == TrialState.FINISHED and second.gpus == "0,1"
    assert _pending(redis_client, exp) == 0 and redis_client.xlen(events_stream(exp.name)) == 0


def _tick_with_a_later_event(
    coord: Coordinator, redis_client: redis.Redis, now: TrialEvent, later: TrialEvent
) -> list[list[str]]:
    """Publish `now`, then tick while `later` is published 0.3 s into the tick; the batches applied."""
    publish_event(redis_client, now)
    batches = _spy_ops(coord)
    timer = threading.Timer(0.3, lambda: publish_event(redis_client, later))
    timer.start()
    try:
        coord.tick()
    finally:
        timer.join()
    return batches


@pytest.mark.parametrize("linger_ms", [0, 2000])
def test_a_read_of_only_starts_waits_up_to_the_linger_for_more(
    linger_ms: int,
    store: Store,
    redis_client: redis.Redis,
    coordinated: tuple[Coordinator, Experiment, list[Trial]],
) -> None:
    """Starts act on nothing, so a read of only starts waits for more (the trial's end, here)
    for up to `event_linger_ms`; without a linger the start is recorded alone."""
    coord, exp, trials = coordinated
    coord.settings = coord.settings.model_copy(update={"event_linger_ms": linger_ms})
    batches = _tick_with_a_later_event(coord, redis_client, *_events(exp, trials[2], 0.2))
    trial = store.trial(trials[2].id)  # type: ignore[arg-type]
    assert trial is not None
    if linger_ms:
        assert batches == [["FinishOp"]] and trial.state == TrialState.FINISHED
    else:
        assert batches == [["StartOp"]] and trial.state == TrialState.RUNNING
        coord.tick()
        assert store.trial(trials[2].id).state == TrialState.FINISHED  # type: ignore[arg-type,union-attr]
    assert _pending(redis_client, exp) == 0


@pytest.mark.parametrize("bundled", [False, True])
def test_a_read_of_bundled_trials_ends_waits_up_to_the_bundle_linger_for_more(
    bundled: bool,
    store: Store,
    redis_client: redis.Redis,
    coordinated: tuple[Coordinator, Experiment, list[Trial]],
) -> None:
    """While an experiment's trials go out in bundles (each slot has one queued behind the one it
    runs), a read waits up to `bundle_linger_ms` for more events, so they share one batch; an
    experiment whose trials go one per task has its end handled at once."""
    coord, exp, trials = coordinated
    coord.settings = coord.settings.model_copy(update={"bundle_linger_ms": 2000, "event_linger_ms": 0})
    rt = coord.runtimes[exp.id]
    if bundled:  # CPU trials of a millisecond (the queue stays the fixture's: nobody serves it)
        rt.spec = rt.spec.with_resources(ResourceRequest(gpus=0))
        for _ in range(3):
            rt.bundler.observe(0.001)
    assert (rt.bundle > 1) is bundled
    first, second = _events(exp, trials[0], 0.4)[1], _events(exp, trials[1], 0.3)[1]
    batches = _tick_with_a_later_event(coord, redis_client, first, second)
    if bundled:
        assert batches == [["FinishOp", "FinishOp"]]
    else:
        assert batches == [["FinishOp"]]
        coord.tick()
        assert batches == [["FinishOp"], ["FinishOp"]]
    assert [store.trial(t.id).state for t in trials[:2]] == [TrialState.FINISHED] * 2  # type: ignore[arg-type,union-attr]
    assert _pending(redis_client, exp) == 0


class _FlakyPipelines:
    """A Redis client whose next `pipeline()` fails, as a broker hiccup would."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.fail_next = True

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        if self.fail_next:
            self.fail_next = False
            raise RedisConnectionError("connection reset")
        return self.client.pipeline(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def test_an_ack_lost_to_a_broker_hiccup_is_sent_again(
    store: Store, redis_client: redis.Redis, coordinated: tuple[Coordinator, Experiment, list[Trial]]
) -> None:
    coord, exp, trials = coordinated
    for ev in _events(exp, trials[1], 0.3):
        publish_event(redis_client, ev)
    coord.streams.redis = _FlakyPipelines(redis_client)
    with pytest.raises(RedisConnectionError):
        coord.tick()
    assert store.trial(trials[1].id).state == TrialState.FINISHED  # type: ignore[arg-type,union-attr]
    assert _pending(redis_client, exp) == 2  # recorded, but the ack did not reach Redis
    coord.tick()
    assert _pending(redis_client, exp) == 0 and redis_client.xlen(events_stream(exp.name)) == 0
    assert coord.runtimes[exp.id].counts.finished == 1


def test_writer_compare_and_set_and_points_once(db: Store) -> None:  # noqa: F811
    store = db
    exp = submit_quad(store, quad_spec(max_trials=2))
    writer = TrialWriter(store.engine)
    trials = writer.add_trials(exp, [{"x": 0.1}, {"x": 0.2}], 0)
    assert [t.id for t in trials] == [t.id for t in store.trials(exp.id)]
    assert [(t.number, t.exec_id, t.state) for t in trials] == [
        (0, f"{exp.name}-0", TrialState.QUEUED),
        (1, f"{exp.name}-1", TrialState.QUEUED),
    ]
    a, b = trials
    points = [{"seq": 0, "step": 1, "values": {"loss": 0.4}}, {"seq": 1, "step": 2, "values": {"loss": 0.3}}]
    done = TrialOutcome(state=TrialState.FINISHED, objective=0.3, points=points, worker="w2")
    applied = writer.apply(
        [
            StartOp(a.id, 1, "w1", None),  # type: ignore[arg-type]
            StartOp(a.id, 1, "w1", None),  # type: ignore[arg-type]  # a duplicate: no change
            PointsOp(a.id, 1, points[:1]),  # type: ignore[arg-type]
            PointsOp(a.id, 1, points[:1]),  # type: ignore[arg-type]  # already stored
            FinishOp(a.id, 1, done),  # type: ignore[arg-type]
            FinishOp(a.id, 1, done),  # type: ignore[arg-type]  # recorded exactly once
            FinishOp(b.id, 2, done),  # type: ignore[arg-type]  # an attempt b never had
        ]
    )
    assert applied == [True, False, True, False, True, False, False]
    got = store.trial(a.id)  # type: ignore[arg-type]
    assert got is not None and got.state == TrialState.FINISHED and got.objective == pytest.approx(0.3)
    assert got.worker == "w2" and got.started_at is not None and got.ended_at is not None
    assert [p.seq for p in store.metric_points(a.id)] == [0, 1]  # type: ignore[arg-type]
    assert store.trial(b.id).state == TrialState.QUEUED  # type: ignore[arg-type,union-attr]
