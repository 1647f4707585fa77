"""scripts/bench/quality_service.py: seeded searchers propose the same through the service as in-process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scripts.bench.problems import PROBLEMS, problem
from scripts.bench.quality_service import Pair, service_spec

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_the_service_spec_carries_the_problem_s_very_space(name: str) -> None:
    spec = service_spec(name, "tpe", 3, 10)
    assert spec.space == problem(name).space
    assert (spec.limits.max_trials, spec.limits.max_parallel, spec.algorithm.params.get("RandomSeed")) == (
        10,
        1,
        "3",
    )


def test_same_prefix_stops_at_the_first_difference() -> None:
    a = [({"x1": 1.0, "x2": 2.0}, 5.0), ({"x1": 3.0, "x2": 1.0}, 4.0), ({"x1": 0.5, "x2": 0.5}, 3.0)]
    b = [a[0], ({"x1": 3.0, "x2": 1.5}, 4.0), a[2]]
    assert Pair("branin", "tpe", a, a).same_prefix == 3
    assert Pair("branin", "tpe", a, b).same_prefix == 1
    assert Pair("branin", "tpe", a, a[:2]).same_prefix == 2
    assert Pair("branin", "tpe", a, b).regret(a) == pytest.approx(3.0 - problem("branin").optimum)


def test_random_and_tpe_propose_the_same_through_the_service() -> None:
    """Redis, a Celery worker, the coordinator and SQLite in between change no proposal."""
    proc = subprocess.run(
        [sys.executable, "scripts/bench/quality_service.py", "--problems", "branin",
         "--algorithms", "random,tpe", "--evals", "12"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    assert "- PASS branin/random through the service: 12 of 12 proposals identical" in proc.stdout
    assert "- PASS branin/tpe through the service: 12 of 12 proposals identical" in proc.stdout
