"""The dashboard's plot data from an experiment's trials, computed on columns (numpy), not rows.

`TrialColumns` holds the trials as arrays in trial-number order; each plot is a few vectorized
passes over them, so a 10,000-trial experiment costs milliseconds per refresh. Pure: no I/O.

- history: objective by trial number with the best-so-far line; every improvement is kept and the
  rest evenly sampled up to a cap
- parallel: finished trials as parallel-coordinates dimensions, the best half of the cap plus an
  even sample of the rest
- curve trials: which trials' learning curves to draw (the best, the running, the early-stopped)
- durations: count, median and max of the ended trials' run times
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.store.models import TrialState

HISTORY_POINTS = 1500
PARALLEL_ROWS = 1000
CURVES = 24


def _seconds(row: Any) -> float:
    start, end = getattr(row, "started_at", None), getattr(row, "ended_at", None)
    return (end - start).total_seconds() if start is not None and end is not None else math.nan


@dataclass
class TrialColumns:
    """Trials as columns, sorted by trial number; `objective` is NaN where missing or not finite."""

    ids: np.ndarray
    numbers: np.ndarray
    states: np.ndarray  # object array of state names
    objective: np.ndarray
    seconds: np.ndarray  # run time, NaN until ended
    params: list[dict[str, Any]]

    @classmethod
    def of(cls, rows: Sequence[Any]) -> TrialColumns:
        """From row-like objects (id, number, state, objective, params[, started_at, ended_at])."""
        return cls._build(rows).sorted()

    @classmethod
    def _build(cls, rows: Sequence[Any]) -> TrialColumns:
        objective = np.array([r.objective for r in rows], dtype=float)  # None -> NaN
        objective[~np.isfinite(objective)] = np.nan
        return cls(
            ids=np.array([r.id for r in rows], dtype=np.int64),
            numbers=np.array([r.number for r in rows], dtype=np.int64),
            states=np.array([r.state for r in rows], dtype=object),
            objective=objective,
            seconds=np.array([_seconds(r) for r in rows], dtype=float),
            params=[r.params or {} for r in rows],
        )

    def sorted(self) -> TrialColumns:
        if len(self.numbers) < 2 or bool(np.all(self.numbers[1:] > self.numbers[:-1])):
            return self
        order = np.argsort(self.numbers, kind="stable")
        return TrialColumns(
            self.ids[order], self.numbers[order], self.states[order], self.objective[order],
            self.seconds[order], [self.params[i] for i in order],
        )  # fmt: skip

    def updated(self, rows: Sequence[Any]) -> TrialColumns:
        """A copy with `rows` (trials that changed or are new) written in; self is left as it was."""
        if not rows:
            return self
        changed = TrialColumns._build(rows)
        at = dict(zip(self.ids.tolist(), range(len(self.ids)), strict=True))
        old = np.array([at.get(i, -1) for i in changed.ids.tolist()], dtype=np.int64)
        known, new = np.flatnonzero(old >= 0), np.flatnonzero(old < 0)
        out = TrialColumns(
            *(np.concatenate([mine.copy(), theirs[new]]) for mine, theirs in self._arrays_with(changed)),
            params=[*self.params, *(changed.params[i] for i in new)],
        )
        for mine, theirs in out._arrays_with(changed):
            mine[old[known]] = theirs[known]
        for i in known:
            out.params[old[i]] = changed.params[i]
        return out.sorted()

    def _arrays_with(self, other: TrialColumns) -> list[tuple[np.ndarray, np.ndarray]]:
        names = ("ids", "numbers", "states", "objective", "seconds")
        return [(getattr(self, n), getattr(other, n)) for n in names]

    def __len__(self) -> int:
        return len(self.numbers)

    def finished(self) -> np.ndarray:
        """Indices of FINISHED trials with a finite objective, in number order."""
        return np.flatnonzero((self.states == TrialState.FINISHED) & ~np.isnan(self.objective))

    def in_state(self, state: str) -> np.ndarray:
        return np.flatnonzero(self.states == state)


def even(n: int, k: int) -> np.ndarray:
    """k positions spread evenly over range(n) (all of them when n <= k)."""
    if n <= k:
        return np.arange(n)
    if k <= 0:
        return np.arange(0)
    return (np.arange(k) * (n / k)).astype(np.int64)


def history(cols: TrialColumns, maximize: bool, limit: int = HISTORY_POINTS) -> dict[str, Any]:
    """Objective by trial number with the best-so-far line; improvements are never dropped."""
    done = np.flatnonzero(~np.isnan(cols.objective))
    values = cols.objective[done]
    best = np.maximum.accumulate(values) if maximize else np.minimum.accumulate(values)
    improved = np.flatnonzero(np.r_[True, best[1:] != best[:-1]]) if len(values) else np.arange(0)
    keep = np.union1d(improved, even(len(values), max(limit - len(improved), 0)))
    return {
        "number": cols.numbers[done[keep]].tolist(),
        "value": values[keep].tolist(),
        "state": cols.states[done[keep]].tolist(),
        "best": best[keep].tolist(),
        "total": len(values),
    }


def _dimension(name: str, values: list[Any]) -> dict[str, Any]:
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return {"name": name, "kind": "numeric", "values": values}
    labels = sorted({str(v) for v in values})
    index = {label: i for i, label in enumerate(labels)}
    return {"name": name, "kind": "categorical", "labels": labels, "values": [index[str(v)] for v in values]}


def parallel(
    cols: TrialColumns, names: Sequence[str], maximize: bool, limit: int = PARALLEL_ROWS
) -> dict[str, Any]:
    """Finished trials as parallel-coordinates dimensions: the best half of the cap plus an even sample."""
    done = cols.finished()
    values = cols.objective[done]
    order = np.argsort(-values if maximize else values, kind="stable")
    best = order[: limit // 2]
    rest = np.setdiff1d(np.arange(len(done)), best, assume_unique=True)
    chosen = done[np.union1d(best, rest[even(len(rest), limit - len(best))])]
    picked = [cols.params[i] for i in chosen]
    dims = []
    for name in names:
        column = [p.get(name) for p in picked]
        if any(v is None for v in column):
            continue  # conditional parameters are left out rather than drawn with holes
        dims.append(_dimension(name, column))
    return {
        "numbers": cols.numbers[chosen].tolist(),
        "objective": cols.objective[chosen].tolist(),
        "dimensions": dims,
        "total": len(done),
    }


def curve_trials(cols: TrialColumns, maximize: bool, limit: int = CURVES) -> list[tuple[int, int, str]]:
    """(id, number, state) of the trials whose learning curves are drawn, in number order."""
    running = cols.in_state(TrialState.RUNNING)[-(limit // 3) :]
    stopped = cols.in_state(TrialState.EARLY_STOPPED)[-(limit // 3) :]
    done = cols.finished()
    values = cols.objective[done]
    room = limit - len(running) - len(stopped)
    best = done[np.argsort(-values if maximize else values, kind="stable")[: max(room, 0)]]
    chosen = np.union1d(np.union1d(best, running), stopped).astype(np.int64)
    return [(int(cols.ids[i]), int(cols.numbers[i]), str(cols.states[i])) for i in chosen]


def durations(cols: TrialColumns) -> dict[str, Any]:
    secs = np.sort(cols.seconds[~np.isnan(cols.seconds)])
    if not len(secs):
        return {"count": 0}
    return {"count": len(secs), "median": float(secs[len(secs) // 2]), "max": float(secs[-1])}
