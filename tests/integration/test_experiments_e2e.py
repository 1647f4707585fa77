"""End to end with the real Redis, a real Celery worker process and real subprocess trials."""

from __future__ import annotations

import io
import itertools
import json
import time
import zipfile

import pytest

from app.config import Settings
from app.keys import EVENTS_GROUP, current_attempt_key, encode_stop, events_stream, stop_key
from app.local_workers import LocalWorker
from app.messages import TrialEvent, publish_event
from app.optimizers import register
from app.spec.model import Algorithm, ResourceRequest
from app.store.artifacts import FileArtifactStore
from app.store.models import ExperimentState, TrialState
from app.store.repository import Store
from tests.conftest import start_worker
from tests.helpers import drive, make_coordinator, max_concurrency, quad_spec, submit_quad

pytestmark = pytest.mark.usefixtures("cpu_worker")

SLEEPY = {"sleep": {"type": "categorical", "choices": [0.4]}}


def _space(**extra):
    return {
        "x": {"type": "float", "low": 0.0, "high": 1.0},
        "y": {"type": "float", "low": 0.0, "high": 1.0, "step": 0.05},
        "c": {"type": "categorical", "choices": ["a", "b"]},
        **extra,
    }


@pytest.mark.parametrize(
    "algorithm",
    [
        {"name": "random", "seed": 3},
        {"name": "tpe", "seed": 3, "warm_up": 3},
        {"name": "bayesian", "seed": 3, "init_points": 3},
    ],
    ids=lambda a: a["name"],
)
def test_searcher_runs_exactly_max_trials_at_full_parallelism(
    store: Store, settings: Settings, algorithm
) -> None:
    spec = quad_spec(algorithm=algorithm, max_trials=8, max_parallel=3, space=_space(**SLEEPY))
    exp = submit_quad(store, spec)
    drive(store, settings, [exp.id])

    exp = store.experiment(exp.id)
    trials = store.trials(exp.id)
    assert exp.state == ExperimentState.FINISHED
    assert exp.message == "maxJobNum reached"
    assert len(trials) == 8
    assert [t.state for t in trials] == [TrialState.FINISHED] * 8
    assert max_concurrency(trials) == 3  # reaches maxParalleJobNum and never exceeds it
    assert all(spec.space.problems(t.params | {}) == [] for t in trials)
    best = min(trials, key=lambda t: t.objective)
    assert exp.best_trial_id == best.id and exp.best_value == pytest.approx(best.objective)
    assert all(t.started_at <= t.ended_at for t in trials)
    assert len(store.metric_points(best.id)) == 3  # every point of val_dict_list.json stored


@pytest.mark.parametrize("parallel", [3, 2])
def test_one_trial_waits_queued_ahead_only_when_the_queue_s_slots_cannot_run_it_too(
    store: Store, settings: Settings, parallel: int
) -> None:
    """Lookahead: with as many slots on the queue as maxParalleNum (3 here), one more trial waits in
    the queue for the next free slot; with more slots (3 > 2) none does, or it would run at once."""
    spec = quad_spec(max_trials=8, max_parallel=parallel, space=_space(**SLEEPY))
    exp = submit_quad(store, spec)
    drive(store, settings.model_copy(update={"lookahead": 1}), [exp.id])
    trials = store.trials(exp.id)
    assert [t.state for t in trials] == [TrialState.FINISHED] * 8
    assert max_concurrency(trials) == parallel  # running: never more than maxParalleNum
    assert max_concurrency(trials, since="created_at") == parallel + (1 if parallel == 3 else 0)


def test_grid_runs_listed_experiments_up_to_max_trials(store: Store, settings: Settings) -> None:
    experiments = [{"x": i / 10, "y": 0.5, "c": "a", "sleep": 0.3} for i in range(8)]
    spec = quad_spec(algorithm="grid", experiments=experiments, max_trials=6, max_parallel=2)
    exp = submit_quad(store, spec)
    drive(store, settings, [exp.id])
    trials = store.trials(exp.id)
    assert [t.params for t in trials] == experiments[:6]
    assert all(t.state == TrialState.FINISHED for t in trials)
    assert max_concurrency(trials) == 2


def test_grid_ends_when_the_list_is_exhausted(store: Store, settings: Settings) -> None:
    experiments = [{"x": 0.1}, {"x": 0.3, "y": 0.7}, {"x": 0.9, "c": "b"}]
    exp = submit_quad(
        store, quad_spec(algorithm="grid", experiments=experiments, max_trials=None, max_parallel=2)
    )
    drive(store, settings, [exp.id])
    exp = store.experiment(exp.id)
    assert exp.message == "search space exhausted"
    assert [t.params for t in store.trials(exp.id)] == experiments
    assert store.trial(exp.best_trial_id).params == {"x": 0.3, "y": 0.7}


def test_failing_trials_are_failed_with_reasons_and_excluded_from_best(
    store: Store, settings: Settings
) -> None:
    modes = ["exit1", "noresult", "nometric", "nan", "ok", "ok"]
    experiments = [{"mode": m, "x": 0.3, "y": 0.7 if i == 5 else 0.0} for i, m in enumerate(modes)]
    exp = submit_quad(
        store, quad_spec(algorithm="grid", experiments=experiments, max_trials=None, max_parallel=3)
    )
    drive(store, settings, [exp.id])

    exp = store.experiment(exp.id)
    trials = store.trials(exp.id)
    assert exp.state == ExperimentState.FINISHED
    assert [t.state for t in trials] == [TrialState.FAILED] * 4 + [TrialState.FINISHED] * 2
    reasons = [t.reason for t in trials[:4]]
    assert "exited with code 1" in reasons[0] and "boom: failing on purpose" in reasons[0]
    assert "val_dict_list.json was not written" in reasons[1]
    assert "metric 'loss' missing" in reasons[2]
    assert "metric 'loss' is nan" in reasons[3]
    assert all(t.objective is None for t in trials[:4])
    assert exp.best_trial_id == trials[5].id


def test_maximize_picks_the_largest_metric(store: Store, settings: Settings) -> None:
    spec = quad_spec(objective={"metric": "score", "direction": "maximize"}, max_trials=6, max_parallel=3)
    exp = submit_quad(store, spec)
    drive(store, settings, [exp.id])
    trials = store.trials(exp.id)
    best = max(trials, key=lambda t: t.objective)
    assert store.experiment(exp.id).best_trial_id == best.id
    assert best.objective == pytest.approx(max(p.values["score"] for p in store.metric_points(best.id)))


def test_max_run_time_stops_new_trials(store: Store, settings: Settings) -> None:
    spec = quad_spec(
        max_trials=None,
        max_parallel=2,
        max_minutes=0.05,
        space=_space(sleep={"type": "categorical", "choices": [1.0]}),
    )
    exp = submit_quad(store, spec)
    drive(store, settings, [exp.id])

    exp = store.experiment(exp.id)
    trials = store.trials(exp.id)
    deadline = exp.started_at.timestamp() + 3.0
    assert exp.state == ExperimentState.FINISHED and exp.message == "maxRunTime reached"
    assert 2 <= len(trials) <= 10
    assert all(t.created_at.timestamp() <= deadline + 0.1 for t in trials)  # none created after it
    assert all(t.state in (TrialState.FINISHED, TrialState.CANCELLED) for t in trials)
    # running trials were allowed to finish (WMLA behaviour): the experiment ends after them
    assert exp.finished_at.timestamp() >= max(t.ended_at.timestamp() for t in trials)


def test_kill_on_timeout_stops_running_trials(store: Store, settings: Settings) -> None:
    spec = quad_spec(
        max_trials=None,
        max_parallel=2,
        max_minutes=0.03,
        kill_on_timeout=True,
        space=_space(mode={"type": "categorical", "choices": ["hang"]}),
    )
    exp = submit_quad(store, spec)
    started = time.monotonic()
    drive(store, settings, [exp.id], timeout_s=40)
    assert time.monotonic() - started < 30
    trials = store.trials(exp.id)
    assert {t.state for t in trials} <= {TrialState.FAILED, TrialState.CANCELLED}
    assert any("maxRunTime reached" in (t.reason or "") for t in trials)


def test_trial_timeout_fails_the_trial_and_the_experiment_goes_on(store: Store, settings: Settings) -> None:
    experiments = [{"mode": "hang"}, {"x": 0.3, "y": 0.7}]
    spec = quad_spec(algorithm="grid", experiments=experiments, max_trials=None, trial_timeout=1.5)
    exp = submit_quad(store, spec)
    drive(store, settings, [exp.id])
    hung, ok = store.trials(exp.id)
    assert hung.state == TrialState.FAILED and "timed out after 1.5 s" in hung.reason
    assert ok.state == TrialState.FINISHED


def test_trial_sees_the_wmla_contract_and_none_of_our_settings(store: Store, settings: Settings) -> None:
    spec = quad_spec(
        algorithm="grid",
        experiments=[{"x": 0.25, "c": "b"}],
        model={
            "main": "train.py",
            "dir": "mymodel",
            "args": ["--epochs", "3", "two words"],
            "data_path": "sets/a",
        },
        env={"EXTRA": "yes"},
    )
    exp = submit_quad(store, spec)
    drive(store, settings, [exp.id])
    (trial,) = store.trials(exp.id)
    assert trial.state == TrialState.FINISHED
    assert trial.exec_id == f"{exp.name}-0"
    assert "config {'x': 0.25, 'c': 'b'}" in trial.stdout_tail
    data = FileArtifactStore(settings.artifacts_dir).get_result(trial.result_path)
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert {"val_dict_list.json", "probe.json", "log/stdout", "log/stderr"} <= set(archive.namelist())
    assert not any(n.startswith("_submitted_code") for n in archive.namelist())
    probe = json.loads(archive.read("probe.json"))
    env = probe["env"]
    assert probe["argv"] == ["--epochs", "3", "two words"]
    assert probe["cwd"] == env["RESULT_DIR"] + "/_submitted_code/mymodel"
    assert env["RESULT_DIR"].endswith(f"/batchworkdir/{trial.exec_id}")
    assert env["LOG_DIR"] == env["RESULT_DIR"] + "/log"
    assert env["DATA_DIR"] == env["DLI_DATA_FS"] + "/sets/a"
    assert env["DLI_EXECID"] == trial.exec_id
    assert env["CUDA_VISIBLE_DEVICES"] == ""
    assert env["EXTRA"] == "yes"
    assert not [k for k in env if k.startswith(("HPO_", "CELERY"))]
    assert not [k for k, v in env.items() if settings.broker_url in v]


def test_two_resource_classes_land_only_on_their_workers(
    store: Store, settings: Settings, redis_url: str, tmp_path
) -> None:
    gpu_worker: LocalWorker = start_worker(
        redis_url, tmp_path / "gpu", "test-a100@%h", ["trials.a100.x1"], 2, gpus=["0", "1"], gpu_type="a100"
    )
    try:
        cpu = submit_quad(store, quad_spec(max_trials=6, max_parallel=2, space=_space(**SLEEPY)))
        gpu_spec = quad_spec(
            max_trials=6, max_parallel=2, space=_space(**SLEEPY), resources={"gpu_type": "a100", "gpus": 1}
        )
        assert gpu_spec.resources == ResourceRequest(gpu_type="a100", gpus=1)
        gpu = submit_quad(store, gpu_spec)
        drive(store, settings, [cpu.id, gpu.id])
    finally:
        gpu_worker.stop()
    cpu_trials, gpu_trials = store.trials(cpu.id), store.trials(gpu.id)
    assert store.experiment(gpu.id).queue == "trials.a100.x1"
    assert all(t.worker.startswith("test-cpu@") for t in cpu_trials)
    assert all(t.worker.startswith("test-a100@") for t in gpu_trials)
    assert all(t.state == TrialState.FINISHED for t in cpu_trials + gpu_trials)
    # the two ran at the same time
    assert min(t.ended_at for t in gpu_trials) > min(t.started_at for t in cpu_trials)
    assert min(t.ended_at for t in cpu_trials) > min(t.started_at for t in gpu_trials)


def test_results_wait_in_the_broker_while_no_coordinator_runs(store: Store, settings: Settings) -> None:
    spec = quad_spec(
        max_trials=4, max_parallel=2, space=_space(sleep={"type": "categorical", "choices": [0.5]})
    )
    exp = submit_quad(store, spec)
    first = make_coordinator(store, settings, [exp.id])
    first.run(
        should_stop=lambda: (
            store.trial_counts(exp.id).get(TrialState.QUEUED, 0) + len(store.trials(exp.id)) >= 2
        )
    )
    first.close()  # gone while its two trials run and report
    time.sleep(2.0)
    assert {t.state for t in store.trials(exp.id)} <= {TrialState.QUEUED, TrialState.RUNNING}
    drive(store, settings, [exp.id])
    trials = store.trials(exp.id)
    assert len(trials) == 4 and all(t.state == TrialState.FINISHED for t in trials)


def test_slow_optimizer_does_not_hold_up_another_experiment(store: Store, settings: Settings) -> None:
    register("slow", "tests.helpers:SlowOptimizer")
    slow_spec = quad_spec(max_trials=2, max_parallel=1)
    slow_spec = slow_spec.model_copy(update={"algorithm": Algorithm(name="slow")})
    slow = submit_quad(store, slow_spec)
    fast = submit_quad(store, quad_spec(max_trials=10, max_parallel=2))
    drive(store, settings, [slow.id, fast.id], timeout_s=60)
    fast_exp = store.experiment(fast.id)
    slow_trials = store.trials(slow.id)
    assert len(store.trials(fast.id)) == 10 and len(slow_trials) == 2
    # all ten fast trials were done before the slow searcher's first answer (a 4 s "fit")
    assert fast_exp.finished_at < slow_trials[0].created_at


def test_sync_batches_start_the_next_batch_only_after_the_whole_batch(
    store: Store, settings: Settings
) -> None:
    sleeps = {"sleep": {"type": "categorical", "choices": [0.2, 0.8]}}
    spec = quad_spec(max_trials=9, max_parallel=3, sync_batches=True, space=_space(**sleeps))
    exp = submit_quad(store, spec)
    drive(store, settings, [exp.id])
    trials = store.trials(exp.id)
    batches = [trials[i : i + 3] for i in range(0, 9, 3)]
    for before, after in itertools.pairwise(batches):
        assert min(t.created_at for t in after) >= max(t.ended_at for t in before)


def test_a_name_used_again_after_delete_runs_fresh(store: Store, settings: Settings, redis_client) -> None:
    """Redis keys outlive a deleted experiment (and a reset database): claims for 30 days, the
    current attempt of a retried trial, the stop flag of a stopped one. An experiment given the
    old name again gets the same exec ids; none of those keys may touch its trials."""
    spec = quad_spec(name="reborn", max_trials=3, max_parallel=3)
    first = submit_quad(store, spec)
    drive(store, settings, [first.id])
    assert [t.attempt for t in store.trials(first.id)] == [1, 1, 1]
    # what a first life with a retried and a stopped trial also leaves behind
    redis_client.set(current_attempt_key("reborn-1"), 2)
    redis_client.set(stop_key("reborn-2"), encode_stop("stopped on request", force=True))
    # and an event its coordinator read but died before recording (trial ids restart after a reset)
    old = store.trials(first.id)[0]
    stale = TrialEvent(
        kind="finished",
        experiment="reborn",
        trial_id=old.id,
        exec_id=old.exec_id,
        attempt=1,
        status="ok",
        objective=-1e9,
        ended_at=time.time(),
    )
    publish_event(redis_client, stale)
    redis_client.xreadgroup(EVENTS_GROUP, "dead-coordinator", {events_stream("reborn"): ">"})
    store.delete_experiment(first.id)

    again = submit_quad(store, spec)
    started = time.monotonic()
    drive(store, settings, [again.id], timeout_s=settings.lease_s)
    trials = store.trials(again.id)
    assert [(t.exec_id, t.state, t.attempt) for t in trials] == [
        (f"reborn-{n}", TrialState.FINISHED, 1) for n in range(3)
    ]
    assert time.monotonic() - started < settings.lease_s
    assert -1e9 not in [t.objective for t in trials]
