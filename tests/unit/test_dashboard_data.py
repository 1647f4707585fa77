"""The dashboard's server-side aggregation: downsampling keeps what matters, importance ranks right."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from types import SimpleNamespace

import numpy as np

from app.services.importance import eta_squared, importances
from app.services.plot_data import TrialColumns, curve_trials, durations, history, parallel


def _row(number: int, objective: float | None, state: str = "FINISHED", **params: object) -> SimpleNamespace:
    return SimpleNamespace(id=number + 1, number=number, state=state, objective=objective, params=params)


def test_history_keeps_every_improvement_and_caps_the_rest() -> None:
    rng = random.Random(1)
    rows = [_row(i, rng.random()) for i in range(5000)]
    h = history(TrialColumns.of(rows), maximize=False, limit=300)
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
    h = history(TrialColumns.of(rows), maximize=True)
    assert h["number"] == [2, 3] and h["best"] == [3.0, 5.0]


def test_parallel_keeps_the_best_and_encodes_categories() -> None:
    rows = [_row(i, float(i), x=i / 10, opt=["sgd", "adam"][i % 2]) for i in range(50)]
    rows.append(_row(50, None, "RUNNING", x=0.5, opt="sgd"))
    p = parallel(TrialColumns.of(rows), ["x", "opt"], maximize=False, limit=10)
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


def _same(a: TrialColumns, b: TrialColumns) -> None:
    assert a.ids.tolist() == b.ids.tolist() and a.numbers.tolist() == b.numbers.tolist()
    assert a.states.tolist() == b.states.tolist() and a.params == b.params
    np.testing.assert_array_equal(a.objective, b.objective)
    np.testing.assert_array_equal(a.seconds, b.seconds)


def test_columns_updated_in_place_equal_columns_built_from_scratch() -> None:
    rng = random.Random(3)
    t0 = datetime(2026, 1, 1)
    rows = {
        i: SimpleNamespace(
            id=i + 1, number=i, state="RUNNING", objective=None, params={"x": i}, started_at=t0, ended_at=None
        )
        for i in range(200)
    }
    cols = TrialColumns.of(list(rows.values()))
    for _ in range(20):
        changed = []
        for i in rng.sample(sorted(rows), 15):  # some trials end
            end = t0 + timedelta(seconds=rng.randint(1, 100))
            rows[i] = SimpleNamespace(
                **{**vars(rows[i]), "state": "FINISHED", "objective": rng.random(), "ended_at": end}
            )
            changed.append(rows[i])
        for _ in range(3):  # new trials, sometimes with a number below the newest (out of order)
            n = max(rows) + rng.choice([1, 2]) if rng.random() < 0.8 else -len(rows)
            rows[n] = SimpleNamespace(id=10_000 + len(rows), number=n, state="QUEUED", objective=float("nan"),
                                      params={"x": n}, started_at=None, ended_at=None)  # fmt: skip
            changed.append(rows[n])
        before = cols
        cols = cols.updated(changed)
        _same(cols, TrialColumns.of(list(rows.values())))
        assert before is not cols and len(before) < len(cols)  # the old columns were left as they were


def test_curve_trials_take_the_best_the_running_and_the_stopped() -> None:
    rows = [_row(i, float(i)) for i in range(40)]
    rows += [_row(40 + i, None, "RUNNING") for i in range(10)] + [_row(60, 0.5, "EARLY_STOPPED")]
    chosen = curve_trials(TrialColumns.of(rows), maximize=False, limit=12)
    numbers = [n for _, n, _ in chosen]
    assert numbers == sorted(numbers)
    assert [n for _, n, s in chosen if s == "RUNNING"] == [46, 47, 48, 49]  # the newest limit // 3
    assert [n for _, n, s in chosen if s == "FINISHED"] == list(range(7))  # the best of the rest
    assert 60 in numbers and len(chosen) == 12


def test_durations_count_only_ended_trials() -> None:
    t0 = datetime(2026, 1, 1)
    rows = [
        SimpleNamespace(
            id=i,
            number=i,
            state="FINISHED",
            objective=1.0,
            params={},
            started_at=t0,
            ended_at=t0 + timedelta(seconds=s),
        )
        for i, s in enumerate([5, 1, 3])
    ]
    rows.append(
        SimpleNamespace(
            id=9, number=9, state="RUNNING", objective=None, params={}, started_at=t0, ended_at=None
        )
    )
    assert durations(TrialColumns.of(rows)) == {"count": 3, "median": 3.0, "max": 5.0}
    assert durations(TrialColumns.of([])) == {"count": 0}


def test_importance_treats_mixed_ints_and_floats_as_numbers() -> None:
    rng = random.Random(5)
    xs = [rng.choice([0, 1, 2]) if i % 2 else rng.uniform(0, 2) for i in range(400)]
    ys = [x * 3 + rng.gauss(0, 0.1) for x in xs]
    noise = [rng.choice(["a", "b"]) for _ in xs]
    ranked = importances([{"x": x, "n": n} for x, n in zip(xs, noise, strict=True)], ys, ["x", "n"])
    assert ranked[0]["name"] == "x" and ranked[0]["importance"] > 0.95
