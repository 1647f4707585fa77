"""What the dashboard and `hpo report` draw, aggregated on the server so a refresh stays small.

One call gives an experiment's plot data: the optimization history (downsampled, every improvement
kept), parallel coordinates (capped: the best trials plus an even sample of the rest), parameter
importance, and the learning curves of a few trials (the best, the running and the early-stopped).
The result is cached per experiment until a trial is added, starts or ends (a cheap fingerprint
query), so a dashboard polling a 10,000-trial experiment costs one aggregate query per refresh.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.services.importance import importances
from app.store.models import Experiment, TrialState
from app.store.repository import Store

HISTORY_POINTS = 1500
PARALLEL_ROWS = 1000
CURVES = 24


def _finite(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and math.isfinite(x) else None


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts else None


def _even(indices: Sequence[int], k: int) -> list[int]:
    """k indices spread evenly over `indices` (all of them when there are at most k)."""
    if len(indices) <= k:
        return list(indices)
    if k <= 0:
        return []
    step = len(indices) / k
    return [indices[int(i * step)] for i in range(k)]


def history(rows: Sequence[Any], maximize: bool, limit: int = HISTORY_POINTS) -> dict[str, Any]:
    """Objective by trial number with the best-so-far line; improvements are never dropped."""
    done = [(r.number, _finite(r.objective), r.state) for r in rows]
    done = [d for d in done if d[1] is not None]
    best_line, improvements, best = [], [], None
    for i, (_, value, _) in enumerate(done):
        if best is None or (value > best if maximize else value < best):  # type: ignore[operator]
            best = value
            improvements.append(i)
        best_line.append(best)
    keep = sorted(set(improvements) | set(_even(range(len(done)), max(limit - len(improvements), 0))))
    return {
        "number": [done[i][0] for i in keep],
        "value": [done[i][1] for i in keep],
        "state": [done[i][2] for i in keep],
        "best": [best_line[i] for i in keep],
        "total": len(done),
    }


def _dimension(name: str, values: list[Any]) -> dict[str, Any]:
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return {"name": name, "kind": "numeric", "values": values}
    labels = sorted({str(v) for v in values})
    index = {label: i for i, label in enumerate(labels)}
    return {"name": name, "kind": "categorical", "labels": labels, "values": [index[str(v)] for v in values]}


def parallel(
    rows: Sequence[Any], names: Sequence[str], maximize: bool, limit: int = PARALLEL_ROWS
) -> dict[str, Any]:
    """Finished trials as parallel-coordinates dimensions: the best half of the cap plus an even sample."""
    done = [r for r in rows if r.state == TrialState.FINISHED and _finite(r.objective) is not None]
    ranked = sorted(range(len(done)), key=lambda i: done[i].objective, reverse=maximize)
    best = ranked[: limit // 2]
    rest = sorted(set(range(len(done))) - set(best))
    chosen = sorted(set(best) | set(_even(rest, limit - len(best))))
    picked = [done[i] for i in chosen]
    dims = []
    for name in names:
        values = [(r.params or {}).get(name) for r in picked]
        if any(v is None for v in values):
            continue  # conditional parameters are left out rather than drawn with holes
        dims.append(_dimension(name, values))
    return {
        "numbers": [r.number for r in picked],
        "objective": [float(r.objective) for r in picked],
        "dimensions": dims,
        "total": len(done),
    }


def _curve_trials(rows: Sequence[Any], maximize: bool, limit: int = CURVES) -> list[Any]:
    running = [r for r in rows if r.state == TrialState.RUNNING][-limit // 3 :]
    stopped = [r for r in rows if r.state == TrialState.EARLY_STOPPED][-limit // 3 :]
    finished = [r for r in rows if r.state == TrialState.FINISHED and _finite(r.objective) is not None]
    finished.sort(key=lambda r: r.objective, reverse=maximize)
    room = limit - len(running) - len(stopped)
    chosen = {r.id: r for r in [*finished[:room], *running, *stopped]}
    return sorted(chosen.values(), key=lambda r: r.number)


def curves(store: Store, trials: Sequence[tuple[int, int, str]], metric: str) -> list[dict[str, Any]]:
    """Learning curves of (id, number, state) trials: read fresh, since running trials add points."""
    points = store.metric_points_of(t[0] for t in trials)
    out = []
    for trial_id, number, state in trials:
        xs, ys = [], []
        for seq, p in enumerate(points[trial_id]):
            y = _finite(p.values.get(metric))
            if y is not None:
                xs.append(p.step if p.step is not None else seq + 1)
                ys.append(y)
        if ys:
            out.append({"number": number, "state": state, "step": xs, "value": ys})
    return out


def param_names(exp: Experiment, rows: Sequence[Any]) -> list[str]:
    """The space's parameter names in spec order (the stored, parsed spec), else those the trials carry."""
    space = (exp.spec or {}).get("space")
    params = space.get("params") if isinstance(space, dict) else None
    names = [str(p["name"]) for p in params or [] if isinstance(p, dict) and p.get("name")]
    if not names:
        for r in rows[:50]:
            for k in r.params or {}:
                if k not in names:
                    names.append(k)
    return names


def plots(exp: Experiment, rows: Sequence[Any]) -> dict[str, Any]:
    """Every plot's data from the experiment's trial rows (sorted by number)."""
    maximize = exp.direction == "maximize"
    names = param_names(exp, rows)
    finished = [r for r in rows if r.state == TrialState.FINISHED and _finite(r.objective) is not None]
    return {
        "history": history(rows, maximize),
        "parallel": parallel(rows, names, maximize),
        "importance": importances([r.params or {} for r in finished], [r.objective for r in finished], names),
        "curve_trials": [(r.id, r.number, r.state) for r in _curve_trials(rows, maximize)],
        "params": names,
        "durations": _durations(rows),
    }


def _durations(rows: Sequence[Any]) -> dict[str, Any]:
    secs = sorted(
        (r.ended_at - r.started_at).total_seconds() for r in rows if r.started_at is not None and r.ended_at
    )
    if not secs:
        return {"count": 0}
    return {"count": len(secs), "median": secs[len(secs) // 2], "max": secs[-1]}


@dataclass
class _Entry:
    fingerprint: tuple[Any, ...]
    attempts: int  # sum of attempts: a retried trial (FAILED -> QUEUED) means a full re-read
    rows: dict[int, Any]  # trial id -> row
    ended_mark: datetime | None  # the latest end time read; older ended rows cannot change
    data: dict[str, Any]


class PlotCache:
    """Per-experiment plot data, recomputed only when the trials' fingerprint changes.

    Trial rows are kept too and refreshed incrementally: after a change only the trials that have
    not ended, or ended since the last read, are read again. Learning curves are read on every
    call (a few trials' points): running trials add points without changing the fingerprint.
    """

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self._items: OrderedDict[int, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, store: Store, exp: Experiment) -> dict[str, Any]:
        assert exp.id is not None
        counts = store.trials_fingerprint(exp.id)
        fingerprint = (*counts, exp.state)
        attempts = int(counts[-1] or 0)
        with self._lock:
            entry = self._items.get(exp.id)
            if entry is not None:
                self._items.move_to_end(exp.id)
        if entry is None or entry.fingerprint != fingerprint:
            entry = self._refresh(store, exp, entry, fingerprint, attempts)
        data = {k: v for k, v in entry.data.items() if k != "curve_trials"}
        data["curves"] = curves(store, entry.data["curve_trials"], exp.objective_metric)
        return data

    def _refresh(
        self, store: Store, exp: Experiment, old: _Entry | None, fingerprint: tuple[Any, ...], attempts: int
    ) -> _Entry:
        assert exp.id is not None
        if old is None or old.attempts != attempts or old.ended_mark is None:
            rows = {r.id: r for r in store.dashboard_rows(exp.id)}
        else:
            rows = dict(old.rows)
            rows.update((r.id, r) for r in store.dashboard_rows(exp.id, ended_since=old.ended_mark))
        ordered = sorted(rows.values(), key=lambda r: r.number)
        ends = [r.ended_at for r in ordered if r.ended_at is not None]
        entry = _Entry(fingerprint, attempts, rows, max(ends) if ends else None, plots(exp, ordered))
        with self._lock:
            self._items[exp.id] = entry
            self._items.move_to_end(exp.id)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return entry
