"""Crash safety with real processes: lost workers, a killed coordinator, duplicate events, long
trials past the broker's visibility timeout, a broker that restarts empty, retries on request.

Workers here are started per test on a queue of their own (a made-up GPU type, no GPUs), with
fast heartbeats (0.5 s) and short leases (2 s), so the session's default worker never interferes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from app.broker import EmbeddedRedis
from app.config import Settings
from app.keys import events_stream
from app.local_workers import LocalWorker
from app.messages import TrialEvent
from app.services.auth import Principal
from app.services.experiments import request_stop, retry, stop_trial
from app.store.models import ExperimentState, TrialState
from app.store.repository import Store
from tests.helpers import drive, quad_spec, submit_quad

ROOT = Path(__file__).resolve().parents[2]
FAST = {"HPO_HEARTBEAT_S": "0.5", "HPO_LEASE_TIMEOUT_S": "2", "HPO_STOP_POLL_S": "0.2"}


def _worker(redis_url: str, folder: Path, name: str, queue: str, **env: str) -> LocalWorker:
    worker = LocalWorker(
        slots=1,
        queues=[queue],
        env={"HPO_BROKER_URL": redis_url, "HPO_HOME": str(folder), **FAST, **env},
        log_path=folder / f"{name}.log",
        worker_dir=folder / name,
        name=f"{name}@%h",
        gpus=["0"] if queue != "trials.cpu" else [],  # a fake GPU: GPU queues need one
    ).start()
    deadline = time.monotonic() + 60
    while " ready." not in worker.log_tail(50):
        assert worker.exit_code() is None and time.monotonic() < deadline, worker.log_tail(50)
        time.sleep(0.1)
    return worker


@pytest.fixture()
def fast(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"lease_check_s": 0.5, "lease_timeout_s": 2.0, "heartbeat_s": 0.5, "lease_s": 3}
    )


@pytest.fixture()
def workers(redis_url: str, tmp_path: Path) -> Iterator[Callable[..., LocalWorker]]:
    started: list[LocalWorker] = []

    def start(name: str, queue: str, url: str = redis_url, **env: str) -> LocalWorker:
        started.append(_worker(url, tmp_path, name, queue, **env))
        return started[-1]

    yield start
    for w in started:
        w.stop(grace_s=2)


def _until(condition: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _background(store: Store, settings: Settings, ids: list[int]) -> threading.Thread:
    thread = threading.Thread(
        target=drive, args=(store, settings, ids), kwargs={"timeout_s": 120}, daemon=True
    )
    thread.start()
    return thread


def _on(queue_type: str, **spec: object):  # type: ignore[no-untyped-def]
    return quad_spec(resources={"gpu_type": queue_type, "gpus": 1}, **spec)


def test_a_killed_worker_s_trial_reruns_elsewhere_within_the_lease(
    store: Store, fast: Settings, workers: Callable[..., LocalWorker]
) -> None:
    a, b = workers("wa", "trials.lostw.x1"), workers("wb", "trials.lostw.x1")
    spec = _on("lostw", algorithm="grid", experiments=[{"mode": "sleep", "sleep": 4.0}], max_trials=None)
    exp = submit_quad(store, spec)
    thread = _background(store, fast, [exp.id])
    _until(lambda: store.trials(exp.id) and store.trials(exp.id)[0].state == TrialState.RUNNING)
    (trial,) = store.trials(exp.id)
    victim = a if trial.worker.startswith("wa@") else b
    os.killpg(victim.proc.pid, signal.SIGKILL)  # the whole worker, mid-trial
    killed = time.monotonic()
    _until(lambda: store.trials(exp.id)[0].attempt == 2, timeout_s=30)
    rescheduled_after = time.monotonic() - killed
    thread.join(timeout=60)
    (trial,) = store.trials(exp.id)
    assert trial.state == TrialState.FINISHED and trial.attempt == 2
    assert not trial.worker.startswith(victim.name.split("@")[0] + "@")
    assert rescheduled_after < 2.0 + 2 * 0.5 + 3  # lease + two checks + slack
    (record,) = store.attempt_records(trial.id)
    assert record.state == "LOST" and record.attempt == 1 and "stopped heartbeating" in record.reason
    assert len(store.trials(exp.id)) == 1  # a retry is not a new trial
    assert store.experiment(exp.id).state == ExperimentState.FINISHED


def test_an_attempt_lost_while_the_experiment_stops_is_not_run_again(
    store: Store, fast: Settings, workers: Callable[..., LocalWorker]
) -> None:
    """Its worker died just as the user stopped the experiment: the trial fails, the experiment
    stops, and no worker starts the trial again (it would hang here, and the stop never end)."""
    a, b = workers("sa", "trials.stopw.x1"), workers("sb", "trials.stopw.x1")
    exp = submit_quad(store, _on("stopw", algorithm="grid", experiments=[{"mode": "hang"}], max_trials=None))
    thread = _background(store, fast, [exp.id])
    _until(lambda: store.trials(exp.id) and store.trials(exp.id)[0].state == TrialState.RUNNING)
    (trial,) = store.trials(exp.id)
    victim = a if trial.worker.startswith("sa@") else b
    os.killpg(victim.proc.pid, signal.SIGKILL)
    request_stop(store, Principal(id=0, name=exp.owner, is_admin=True), exp.name, force=True)
    thread.join(timeout=30)
    assert not thread.is_alive(), [(t.state, t.attempt, t.worker) for t in store.trials(exp.id)]
    (trial,) = store.trials(exp.id)
    assert (trial.state, trial.attempt) == (TrialState.FAILED, 1)
    assert "the experiment is ending" in trial.reason
    assert store.experiment(exp.id).state == ExperimentState.STOPPED


def test_a_worker_killed_holding_a_bundle_leaves_no_trial_behind(
    store: Store, fast: Settings, workers: Callable[..., LocalWorker]
) -> None:
    """Short CPU trials go out in bundles (app.coordinator.bundling). A worker SIGKILLed while it
    runs one, with trials waiting behind the running one, takes none of them along: they were
    claimed when the bundle came, their leases lapse with the running trial's, and they run again
    on the other worker. (Unclaimed, they would wait for a message nobody holds any more.)"""
    url = "redis://127.0.0.1:6379/12"  # a broker of its own: the session's CPU worker takes nothing
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        settings = fast.model_copy(update={"broker_url": url, "bundle_max": 4, "bundle_target_s": 30.0})
        a = workers("bundle-a", "trials.cpu", url=url)
        space = {"x": {"type": "float", "low": 0.0, "high": 1.0},
                 "sleep": {"type": "categorical", "choices": [0.3]}}  # fmt: skip
        exp = submit_quad(store, quad_spec(max_trials=12, max_parallel=1, space=space))
        thread = _background(store, settings, [exp.id])
        # trial 0 goes alone; then bundles of 4: 1-4 on the worker (2 running), 5-8 queued
        _until(lambda: any(t.number == 2 and t.state == TrialState.RUNNING for t in store.trials(exp.id)))
        os.killpg(a.proc.pid, signal.SIGKILL)
        workers("bundle-b", "trials.cpu", url=url)
        thread.join(timeout=120)
        trials = store.trials(exp.id)
        assert store.experiment(exp.id).state == ExperimentState.FINISHED  # type: ignore[union-attr]
        assert [t.state for t in trials] == [TrialState.FINISHED] * 12
        rerun = {t.number for t in trials if t.attempt == 2}
        assert {2, 3, 4} <= rerun  # the running one and the two waiting behind it
        for t in trials:
            if t.number in (3, 4):
                (record,) = store.attempt_records(t.id)  # type: ignore[arg-type]
                assert record.state == "LOST" and record.attempt == 1
    finally:
        client.flushdb()
        client.close()


@pytest.mark.usefixtures("cpu_worker")
def test_coordinator_killed_twice_during_40_trials(store: Store, tmp_path: Path, redis_url: str) -> None:
    space = {
        "x": {"type": "float", "low": 0.0, "high": 0.9, "step": 0.1},
        "y": {"type": "categorical", "choices": [0.0, 0.5, 1.0]},
        "c": {"type": "categorical", "choices": ["a", "b"]},
        "sleep": {"type": "categorical", "choices": [0.2]},
    }
    exp = submit_quad(store, quad_spec(max_trials=40, max_parallel=3, space=space))  # 60 configurations
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPO_")}
    env.update(HPO_BROKER_URL=redis_url, HPO_DATABASE_URL=str(store.engine.url), HPO_HOME=str(tmp_path),
               HPO_LEASE_S="2", HPO_POLL_INTERVAL_S="0.1", PYTHONPATH=str(ROOT))  # fmt: skip

    def coordinator() -> subprocess.Popen:
        log = (tmp_path / "coordinator.log").open("a")
        return subprocess.Popen(
            [sys.executable, "-m", "app.cli", "coordinator"], env=env, stdout=log, stderr=log
        )

    proc = coordinator()
    try:
        for at in (8, 25):
            _until(lambda at=at: len(store.trials(exp.id)) >= at, timeout_s=120)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            time.sleep(0.5)
            proc = coordinator()
        _until(lambda: store.experiment(exp.id).state == ExperimentState.FINISHED, timeout_s=180)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    trials = store.trials(exp.id)
    assert len(trials) == 40 and all(t.state == TrialState.FINISHED for t in trials)
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 40  # no configuration twice
    assert all(len(store.metric_points(t.id)) == 3 for t in trials)  # each result recorded once
    assert [t.number for t in trials] == list(range(40))


SLEEPY = {"x": {"type": "float", "low": 0, "high": 1}, "sleep": {"type": "categorical", "choices": [0.5]}}


@pytest.mark.usefixtures("cpu_worker")
def test_duplicate_events_change_nothing(store: Store, settings: Settings, redis_url: str) -> None:
    exp = submit_quad(store, quad_spec(max_trials=6, max_parallel=2, space=SLEEPY))
    client = redis.Redis.from_url(redis_url)
    thread = _background(store, settings, [exp.id])
    injected: dict[int, float] = {}
    while thread.is_alive():
        for t in store.trials(exp.id):
            if t.state == TrialState.FINISHED and t.id not in injected:
                injected[t.id] = t.objective
                for kind in ("started", "finished"):  # delivered again, and with other values
                    point = {"seq": 0, "step": 1, "values": {"loss": -123.0}}
                    dup = TrialEvent(kind=kind, experiment=exp.name, trial_id=t.id, exec_id=t.exec_id,
                                     attempt=1, status="ok", objective=-123.0, points=[point])  # fmt: skip
                    client.xadd(events_stream(exp.name), dup.encode())
        time.sleep(0.05)
    thread.join()
    trials = store.trials(exp.id)
    assert len(injected) >= 4
    assert len(trials) == 6 and all(t.state == TrialState.FINISHED for t in trials)
    assert all(t.objective == injected[t.id] for t in trials if t.id in injected)
    assert all(len(store.metric_points(t.id)) == 3 for t in trials)
    assert store.experiment(exp.id).best_value > -123.0
    client.close()


def test_a_long_healthy_trial_past_the_visibility_timeout_runs_once(
    store: Store, settings: Settings, workers: Callable[..., LocalWorker], tmp_path: Path
) -> None:
    sweep = '{"unacked_restore_interval": 1, "unacked_restore_throttle": 0}'
    quick = {"HPO_VISIBILITY_TIMEOUT_S": "2", "HPO_BROKER_TRANSPORT_OPTIONS": sweep}
    a, b = workers("va", "trials.vis.x1", **quick), workers("vb", "trials.vis.x1", **quick)
    runs = tmp_path / "runs.log"
    spec = _on("vis", algorithm="grid", experiments=[{"mode": "sleep", "sleep": 12.0}], max_trials=None,
               env={"RUN_LOG": str(runs)})  # fmt: skip
    exp = submit_quad(store, spec)
    drive(store, settings, [exp.id], timeout_s=90)
    (trial,) = store.trials(exp.id)
    assert trial.state == TrialState.FINISHED and trial.attempt == 1
    received = (a.log_tail(500) + b.log_tail(500)).count(f"{trial.exec_id}.1] received")
    assert received >= 2, "the broker never redelivered: this test would prove nothing"
    assert len(runs.read_text().splitlines()) == 1  # delivered again, run once


def test_broker_restart_without_persistence_loses_nothing(
    store: Store, settings: Settings, workers: Callable[..., LocalWorker], tmp_path: Path
) -> None:
    broker = EmbeddedRedis(tmp_path / "redis").start()
    port = broker.port
    try:
        workers("ra", "trials.cpu", url=broker.url)
        workers("rb", "trials.cpu", url=broker.url)
        quick = {"broker_url": broker.url, "lease_check_s": 0.5, "lease_timeout_s": 2.0, "heartbeat_s": 0.5}
        fast = settings.model_copy(update=quick)
        spec = quad_spec(max_trials=12, max_parallel=2, space=SLEEPY)
        exp = submit_quad(store, spec)
        thread = _background(store, fast, [exp.id])
        _until(lambda: len([t for t in store.trials(exp.id) if t.state == TrialState.FINISHED]) >= 3)
        broker.stop()  # everything in Redis is gone: queues, events, leases, claims, code
        time.sleep(1.0)
        broker = EmbeddedRedis(tmp_path / "redis", port=port).start()
        thread.join(timeout=150)
        assert not thread.is_alive()
    finally:
        broker.stop()
    trials = store.trials(exp.id)
    assert len(trials) == 12 and all(t.state == TrialState.FINISHED for t in trials)
    assert store.experiment(exp.id).state == ExperimentState.FINISHED


@pytest.mark.usefixtures("cpu_worker")
def test_retry_runs_failed_trials_again(store: Store, settings: Settings, tmp_path: Path) -> None:
    mark = tmp_path / "flaky.mark"
    spec = quad_spec(algorithm="grid", experiments=[{"mode": "flaky"}, {"x": 0.3, "y": 0.7}], max_trials=None,
                     env={"FLAKY_MARK": str(mark)})  # fmt: skip
    exp = submit_quad(store, spec)
    drive(store, settings, [exp.id])
    flaky, ok = store.trials(exp.id)
    assert flaky.state == TrialState.FAILED and ok.state == TrialState.FINISHED
    owner = Principal(id=0, name=exp.owner, is_admin=False)
    assert [t.number for t in retry(store, owner, exp.name)] == [0]
    assert store.experiment(exp.id).state == ExperimentState.SUBMITTED
    drive(store, settings, [exp.id])
    flaky = store.trial(flaky.id)
    assert flaky.state == TrialState.FINISHED and flaky.attempt == 2
    assert [r.state for r in store.attempt_records(flaky.id)] == ["RETRIED"]
    assert len(store.trials(exp.id)) == 2 and store.experiment(exp.id).state == ExperimentState.FINISHED


@pytest.mark.usefixtures("cpu_worker")
def test_retry_runs_a_trial_stopped_on_request_again(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    """A stopped trial ends FAILED and its stop flag stays in Redis for days; its retry must run."""
    spec = quad_spec(algorithm="grid", experiments=[{"mode": "hang_once"}], max_trials=None,
                     env={"FLAKY_MARK": str(tmp_path / "hung.mark")})  # fmt: skip
    exp = submit_quad(store, spec)
    owner = Principal(id=0, name=exp.owner, is_admin=False)
    coordinator = threading.Thread(target=drive, args=(store, settings, [exp.id]))
    coordinator.start()
    _until(lambda: [t.state for t in store.trials(exp.id)] == [TrialState.RUNNING])
    stop_trial(store, owner, store.trials(exp.id)[0].exec_id, force=True)
    coordinator.join(timeout=60)
    assert not coordinator.is_alive()
    assert [t.state for t in store.trials(exp.id)] == [TrialState.FAILED]
    retry(store, owner, exp.name)
    drive(store, settings, [exp.id], timeout_s=settings.lease_s)
    (trial,) = store.trials(exp.id)
    assert (trial.state, trial.attempt) == (TrialState.FINISHED, 2)


@pytest.mark.usefixtures("cpu_worker")
def test_two_coordinators_never_drive_the_same_experiment(
    store: Store, tmp_path: Path, redis_url: str
) -> None:
    space = {**SLEEPY, "sleep": {"type": "categorical", "choices": [0.3]}}
    exps = [submit_quad(store, quad_spec(max_trials=8, max_parallel=2, space=space)) for _ in range(3)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPO_")}
    env.update(HPO_BROKER_URL=redis_url, HPO_DATABASE_URL=str(store.engine.url), HPO_HOME=str(tmp_path),
               HPO_POLL_INTERVAL_S="0.1", PYTHONPATH=str(ROOT))  # fmt: skip
    logs = [(tmp_path / f"c{i}.log").open("w") for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-m", "app.cli", "coordinator"], env=env, stdout=f, stderr=f)
             for f in logs]  # fmt: skip
    try:
        _until(
            lambda: all(store.experiment(e.id).state == ExperimentState.FINISHED for e in exps), timeout_s=120
        )
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT)
            p.wait(timeout=30)
        for f in logs:
            f.close()
    driven = [(tmp_path / f"c{i}.log").read_text().count("driving ") for i in range(2)]
    assert sum(driven) == 3  # each experiment adopted exactly once
    for e in exps:
        trials = store.trials(e.id)
        assert len(trials) == 8 and all(t.state == TrialState.FINISHED and t.attempt == 1 for t in trials)
        assert all(len(store.metric_points(t.id)) == 3 for t in trials)


def test_a_trial_ending_during_a_broker_outage_keeps_its_result(
    store: Store, settings: Settings, workers: Callable[..., LocalWorker], tmp_path: Path
) -> None:
    """Found by scripts/chaos.py: the result upload did not ride out an outage, so a finished trial
    was thrown away and ran again. Now every broker call of the worker retries through it."""
    broker = EmbeddedRedis(tmp_path / "redis").start()
    port = broker.port
    runs = tmp_path / "runs.log"
    try:
        workers("oa", "trials.cpu", url=broker.url)
        quick = {"broker_url": broker.url, "lease_check_s": 0.5, "lease_timeout_s": 2.0, "heartbeat_s": 0.5}
        spec = quad_spec(algorithm="grid", experiments=[{"mode": "sleep", "sleep": 3.0}], max_trials=None,
                         env={"RUN_LOG": str(runs)})  # fmt: skip
        exp = submit_quad(store, spec)
        thread = _background(store, settings.model_copy(update=quick), [exp.id])
        _until(lambda: store.trials(exp.id) and store.trials(exp.id)[0].state == TrialState.RUNNING)
        time.sleep(1.5)
        broker.stop()  # down while the trial finishes and reports
        time.sleep(3.0)
        broker = EmbeddedRedis(tmp_path / "redis", port=port).start()
        thread.join(timeout=90)
    finally:
        broker.stop()
    (trial,) = store.trials(exp.id)
    assert trial.state == TrialState.FINISHED and trial.attempt == 1
    assert store.attempt_records(trial.id) == []
    assert len(runs.read_text().splitlines()) == 1
