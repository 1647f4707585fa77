"""Coordinator decisions: how many trials to start, when an experiment is done."""

from __future__ import annotations

from concurrent.futures import Future

import pytest

from app.coordinator.runtime import ExperimentRuntime
from app.optimizers import create_optimizer
from app.optimizers.random_search import RandomSearch
from app.optimizers.settings import RandomSettings
from app.spec.model import ResourceRequest
from app.store.models import Experiment, Trial, TrialState
from tests.helpers import quad_spec


def _rt(**overrides) -> ExperimentRuntime:
    spec = quad_spec(**overrides)
    exp = Experiment(id=1, name="e", algorithm="random", spec={}, queue="trials.cpu", objective_metric="loss",
                     direction=spec.objective.direction)  # fmt: skip
    opt = RandomSearch(spec.space, RandomSettings(), seed=1)
    return ExperimentRuntime(experiment=exp, spec=spec, optimizer=opt, started_at=1000.0)


def _trial(i: int) -> Trial:
    return Trial(id=i, experiment_id=1, number=i, exec_id=f"e-{i}", params={"x": i}, queue="trials.cpu")


def test_fills_free_slots_within_the_budget() -> None:
    rt = _rt(max_trials=5, max_parallel=3)
    assert rt.wanted(1000.0) == 3
    rt.in_flight = {1: _trial(1), 2: _trial(2)}
    rt.created = 4
    assert rt.wanted(1000.0) == 1  # one slot free, one trial of budget left
    rt.created = 5
    assert rt.wanted(1000.0) == 0
    assert not rt.done(1000.0)  # two still running
    rt.in_flight = {}
    assert rt.done(1000.0) and rt.end_message(1000.0) == "maxJobNum reached"


def test_lookahead_only_while_the_queue_s_slots_cannot_exceed_max_parallel() -> None:
    rt = _rt(max_trials=10, max_parallel=2)
    rt.in_flight = {1: _trial(1), 2: _trial(2)}
    for slots, extra in ((2, 1), (1, 1), (0, 0), (3, 0)):  # 0: no worker known to serve the queue
        rt.allow_lookahead(1, slots)
        assert rt.wanted(1000.0) == extra, slots
    rt.allow_lookahead(1, 2)
    rt.created = 9
    assert rt.wanted(1000.0) == 1  # within the budget
    rt.created = 10
    assert rt.wanted(1000.0) == 0


def test_sync_batches_wait_for_the_whole_batch() -> None:
    rt = _rt(max_trials=10, max_parallel=3, sync_batches=True)
    rt.in_flight = {1: _trial(1)}
    assert rt.wanted(1000.0) == 0
    rt.in_flight = {}
    rt.allow_lookahead(1, 3)
    assert rt.wanted(1000.0) == 3 and rt.lookahead == 0  # a batch is max_parallel trials


def test_deadline_stops_new_trials_and_ends_after_running_ones() -> None:
    rt = _rt(max_trials=None, max_parallel=2, max_minutes=1)
    assert rt.wanted(1059.0) == 2
    rt.in_flight = {1: _trial(1)}
    assert rt.wanted(1060.0) == 0 and not rt.done(1060.0)
    rt.in_flight = {}
    assert rt.done(1060.0) and rt.end_message(1060.0) == "maxRunTime reached"


def test_pending_ask_and_searcher_waiting_block_the_end() -> None:
    rt = _rt(max_trials=None, max_parallel=2)
    rt.asking = Future()
    assert not rt.done(0) and rt.wanted(0) == 2
    rt.asking = None
    rt.wait_for_result = True
    assert rt.wanted(0) == 0
    rt.exhausted = True
    assert rt.done(0) and rt.end_message(0) == "search space exhausted"


def test_observe_tracks_best_in_the_objective_direction() -> None:
    rt = _rt(objective={"metric": "score", "direction": "maximize"})
    for i, value in enumerate([0.2, 0.9, 0.5]):
        t = _trial(i)
        rt.in_flight[i] = t
        obs = rt.observe(t, TrialState.FINISHED, value)
        assert obs.loss == -value  # optimizers always minimise
    failed = _trial(7)
    rt.in_flight[7] = failed
    assert rt.observe(failed, TrialState.FAILED, None).loss is None
    assert rt.best_value == 0.9 and rt.best_trial_id == 1
    assert rt.counts.finished == 3 and rt.counts.failed == 1 and not rt.in_flight


def _short_trials(rt: ExperimentRuntime, seconds: float = 0.01) -> None:
    rt.bundler.max_size, rt.bundler.target_s = 8, 0.2
    rt.bundler.observe(seconds)


def test_short_trials_go_out_in_whole_bundles_and_bundles_count_against_max_parallel() -> None:
    rt = _rt(max_trials=100, max_parallel=2)
    rt.allow_lookahead(1, 2)
    assert rt.bundle == 1 and rt.wanted(1000.0) == 3  # nothing measured yet
    _short_trials(rt)
    assert rt.bundle == 8
    assert rt.wanted(1000.0) == 24  # (max_parallel + lookahead) bundles
    rt.in_flight = {i: _trial(i) for i in range(24)}
    rt.created = 24
    for start in (0, 8, 16):
        rt.sent_together(list(range(start, start + 8)))
    assert rt.tasks_in_flight == 3 and rt.wanted(1000.0) == 0
    for i in range(4, 16):  # half of the first bundle and all of the second ended
        rt.observe(rt.in_flight[i], TrialState.FINISHED, 1.0)
    assert rt.tasks_in_flight == 2  # a bundle holds its slot until its last trial ends
    assert rt.wanted(1000.0) == 8
    rt.in_flight[90] = _trial(90)  # a trial sent alone (a new attempt) is a task of its own
    assert rt.tasks_in_flight == 3 and rt.wanted(1000.0) == 0


def test_the_last_bundle_of_the_budget_may_be_partial() -> None:
    rt = _rt(max_trials=30, max_parallel=2)
    _short_trials(rt)
    rt.in_flight = {i: _trial(i) for i in range(8)}
    rt.sent_together(list(range(8)))
    rt.created = 27
    assert rt.wanted(1000.0) == 3  # one bundle's room, 3 trials of the budget left


@pytest.mark.parametrize("kind", ["gpus", "sync"])
def test_gpu_trials_and_synchronous_batches_are_never_bundled(kind: str) -> None:
    rt = _rt(max_trials=100, max_parallel=2, sync_batches=kind == "sync")
    if kind == "gpus":
        rt.spec = rt.spec.with_resources(ResourceRequest(gpus=1))
    _short_trials(rt)
    assert rt.bundle == 1 and rt.wanted(1000.0) == 2


@pytest.mark.parametrize("name", ["tpe", "bayesian", "hyperband"])
def test_an_adaptive_searcher_s_trials_are_never_bundled(name: str) -> None:
    """A bundle asks for (max_parallel + lookahead) x bundle trials at once: for a searcher that
    learns from results that would be a different search (Hyperband opened its next bracket while a
    rung waited, found by tests/integration/test_hyperband_e2e.py on a fast machine)."""
    algorithm: dict[str, object] = {"name": name}
    if name == "hyperband":
        algorithm.update(resource_name="epochs", resource_value=9, eta=3)
    rt = _rt(max_trials=100, max_parallel=1, algorithm=algorithm)
    rt.optimizer = create_optimizer(rt.spec, 1)
    _short_trials(rt)
    assert rt.bundler.size == 8 and rt.bundle == 1 and rt.wanted(1000.0) == 1
    assert not _rt().optimizer.adaptive  # random search: bundled (the test above)
