"""The dashboard's server-side aggregation: downsampling keeps what matters, importance ranks right."""

from __future__ import annotations

import random
from types import SimpleNamespace

from app.services.dashboard import history, parallel
from app.services.importance import eta_squared, importances


def _row(number: int, objective: float | None, state: str = "FINISHED", **params: object) -> SimpleNamespace:
    return SimpleNamespace(id=number + 1, number=number, state=state, objective=objective, params=params)


def test_history_keeps_every_improvement_and_caps_the_rest() -> None:
    rng = random.Random(1)
    rows = [_row(i, rng.random()) for i in range(5000)]
    h = history(rows, maximize=False, limit=300)
    improvements = []
    best = None
    for r in rows:
        if best is None or r.objective < best:
            best = r.objective
            improvements.append(r.number)
    assert set(improvements) <= set(h["number"])
    assert len(h["number"]) <= 300 + len(improvements)
    assert h["total"] == 5000
    assert h["best"][-1] == min(r.objective for r in rows)
    assert all(a >= b for a, b in zip(h["best"], h["best"][1:], strict=False))  # never gets worse


def test_history_skips_missing_and_non_finite_results() -> None:
    rows = [_row(0, None, "RUNNING"), _row(1, float("nan"), "FAILED"), _row(2, 3.0), _row(3, 5.0)]
    h = history(rows, maximize=True)
    assert h["number"] == [2, 3] and h["best"] == [3.0, 5.0]


def test_parallel_keeps_the_best_and_encodes_categories() -> None:
    rows = [_row(i, float(i), x=i / 10, opt=["sgd", "adam"][i % 2]) for i in range(50)]
    rows.append(_row(50, None, "RUNNING", x=0.5, opt="sgd"))
    p = parallel(rows, ["x", "opt"], maximize=False, limit=10)
    assert len(p["objective"]) == 10 and p["total"] == 50
    assert {0.0, 1.0, 2.0, 3.0, 4.0} <= set(p["objective"])  # the best half of the cap
    opt = next(d for d in p["dimensions"] if d["name"] == "opt")
    assert opt["kind"] == "categorical" and opt["labels"] == ["adam", "sgd"]
    assert set(opt["values"]) <= {0, 1}


def test_importance_finds_the_parameter_that_matters() -> None:
    rng = random.Random(7)
    params = [
        {"lr": rng.random(), "noise": rng.random(), "act": rng.choice(["relu", "tanh"])} for _ in range(300)
    ]
    objective = [(p["lr"] - 0.3) ** 2 * 10 + (1.5 if p["act"] == "tanh" else 0.0) + rng.random() * 0.01
                 for p in params]  # fmt: skip
    ranked = importances(params, objective, ["lr", "noise", "act"])
    assert [d["name"] for d in ranked] == ["lr", "act", "noise"]
    assert ranked[-1]["importance"] < 0.01
    assert abs(sum(d["importance"] for d in ranked) - 1.0) < 1e-9
    assert importances(params[:3], objective[:3], ["lr"]) == []  # too few results


def test_eta_squared_bounds() -> None:
    assert eta_squared([1, 2, 3, 4], [1.0, 1.0, 1.0, 1.0]) == 0.0  # no variance to explain
    assert eta_squared(["a", "a", "b", "b"], [0.0, 0.0, 1.0, 1.0]) == 1.0
