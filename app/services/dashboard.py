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
from app.services.plot_data import TrialColumns, curve_trials, durations, history, parallel
from app.store.models import Experiment
from app.store.repository import Store


def _finite(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and math.isfinite(x) else None


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


def param_names(exp: Experiment, trial_params: Sequence[dict[str, Any]]) -> list[str]:
    """The space's parameter names in spec order (the stored, parsed spec), else those the trials carry."""
    space = (exp.spec or {}).get("space")
    declared = space.get("params") if isinstance(space, dict) else None
    names = [str(p["name"]) for p in declared or [] if isinstance(p, dict) and p.get("name")]
    if not names:
        for p in trial_params[:50]:
            for k in p:
                if k not in names:
                    names.append(k)
    return names


def plots(exp: Experiment, cols: TrialColumns) -> dict[str, Any]:
    """Every plot's data from the experiment's trials."""
    maximize = exp.direction == "maximize"
    names = param_names(exp, cols.params)
    done = cols.finished()
    return {
        "history": history(cols, maximize),
        "parallel": parallel(cols, names, maximize),
        "importance": importances([cols.params[i] for i in done], cols.objective[done].tolist(), names),
        "curve_trials": curve_trials(cols, maximize),
        "params": names,
        "durations": durations(cols),
    }


@dataclass
class _Entry:
    fingerprint: tuple[Any, ...]
    attempts: int  # sum of attempts: a retried trial (FAILED -> QUEUED) means a full re-read
    cols: TrialColumns
    ended_mark: datetime | None  # the latest end time read; older ended rows cannot change
    data: dict[str, Any]


def _latest_end(rows: Sequence[Any], mark: datetime | None) -> datetime | None:
    ends = [r.ended_at for r in rows if r.ended_at is not None]
    if mark is not None:
        ends.append(mark)
    return max(ends) if ends else None


class PlotCache:
    """Per-experiment plot data, recomputed only when the trials' fingerprint changes.

    The trials are kept as columns and refreshed incrementally: after a change only the trials
    that have not ended, or ended since the last read, are read again and written into a copy of
    the columns; the plots are then vectorized passes over those. Learning curves are read on
    every call (a few trials' points): running trials add points without changing the fingerprint.
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
            rows = store.dashboard_rows(exp.id)
            cols, mark = TrialColumns.of(rows), _latest_end(rows, None)
        else:
            rows = store.dashboard_rows(exp.id, ended_since=old.ended_mark)
            cols, mark = old.cols.updated(rows), _latest_end(rows, old.ended_mark)
        entry = _Entry(fingerprint, attempts, cols, mark, plots(exp, cols))
        with self._lock:
            self._items[exp.id] = entry
            self._items.move_to_end(exp.id)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return entry
