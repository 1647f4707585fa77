"""The searcher benchmarks' pure parts: problem optima, the Optuna peer's distributions and
proposals, the Monte-Carlo band for Random, and the PASS/FAIL verdicts."""

from __future__ import annotations

import numpy as np
import pytest

from app.space import config_key
from scripts.bench.problems import PROBLEMS, mixed, problem
from scripts.bench.quality import RunResult, random_median_band, run_one, verdicts


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_optimum_is_a_lower_bound_of_random_points(name: str) -> None:
    prob = problem(name)
    rng = np.random.default_rng(0)
    values = [prob.fn(prob.space.sample(rng)) for _ in range(300)]
    assert min(values) >= prob.optimum - 1e-6
    assert max(values) > prob.optimum + 1e-3  # not constant


def test_mixed_optimum_is_reached_at_its_configuration() -> None:
    best = {"lr": 1e-3, "width": 128, "depth": 4, "dropout": 0.3, "optimizer": "adam", "activation": "relu"}
    assert mixed(best) == pytest.approx(0.0, abs=1e-12)
    assert mixed({**best, "optimizer": "sgd"}) > 0.1


def test_random_band_brackets_a_sampled_median() -> None:
    values = np.random.default_rng(0).random(10_000)
    lo, mid, hi = random_median_band(values, evals=20, seeds=10, rng=np.random.default_rng(1), replicates=500)
    assert lo < mid < hi
    assert mid == pytest.approx(1 - 0.5 ** (1 / 20), rel=0.25)  # median of the min of 20 uniforms


def test_verdicts_count_problems_and_flag_random_outside_its_band() -> None:
    def rows(algo: str, regrets: list[float]) -> list[RunResult]:
        return [RunResult(p, algo, 0, (r,), 0.0) for p, r in zip(["a", "b", "c", "d"], regrets, strict=True)]

    results = rows("tpe", [1, 1, 1, 5]) + rows("optuna-tpe", [2, 2, 2, 2]) + rows("random", [3, 3, 3, 9])
    bands = {p: (2.0, 3.0, 4.0) for p in "abcd"}
    out = verdicts(results, ["a", "b", "c", "d"], ["tpe", "optuna-tpe", "random"], 10, bands)
    assert out[0].startswith("PASS tpe") and "3 of 4" in out[0]
    assert [line.split()[0] for line in out[1:]] == ["PASS", "PASS", "PASS", "FAIL"]
    worse = rows("tpe", [3, 3, 1, 1]) + rows("optuna-tpe", [2, 2, 2, 2])
    assert verdicts(worse, list("abcd"), ["tpe", "optuna-tpe"], 10, {})[0].startswith("FAIL")


@pytest.mark.parametrize("peer", ["optuna-random", "optuna-tpe"])
def test_optuna_peer_runs_through_our_interface(peer: str) -> None:
    pytest.importorskip("optuna")
    result = run_one("mixed", peer, 0, (5, 12), {})
    assert len(result.regrets) == 2 and result.regrets[1] <= result.regrets[0]


def test_optuna_peer_proposals_are_in_the_space() -> None:
    pytest.importorskip("optuna")
    from app.optimizers.base import Observation
    from app.optimizers.settings import RandomSettings
    from scripts.bench.optuna_peer import OptunaPeer

    prob = problem("mixed")
    opt = OptunaPeer(prob.space, RandomSettings(), seed=1, sampler="optuna-tpe")
    seen = set()
    for _ in range(15):
        config = opt.ask(1)[0]
        assert prob.space.problems(config) == []
        seen.add(config_key(config))
        opt.tell([Observation(config, prob.fn(config))])
    assert len(seen) > 10


def test_suggest_verdicts_apply_the_bars() -> None:
    from scripts.bench.suggest import verdicts as suggest_verdicts

    rows = {
        ("tpe", 1_000): 0.004,
        ("optuna-tpe", 1_000): 0.05,
        ("bayesian", 200): 0.7,
        ("optuna-gp", 200): 2.0,
    }
    assert [line.split()[0] for line in suggest_verdicts(rows)] == ["PASS", "PASS"]
    rows.update({("tpe", 1_000): 0.06, ("bayesian", 200): 1.2})
    assert [line.split()[0] for line in suggest_verdicts(rows)] == ["FAIL", "FAIL"]


def test_suggest_times_our_tpe_and_optunas() -> None:
    pytest.importorskip("optuna")
    from scripts.bench.suggest import time_optuna, time_ours

    ours, theirs = time_ours("tpe", 30, 2), time_optuna("optuna-tpe", 30, 2)
    assert len(ours) == len(theirs) == 2 and all(t > 0 for t in ours + theirs)
