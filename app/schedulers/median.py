"""Median stopping (Golovin et al., Google Vizier): stop a trial whose best loss so far is worse
than the median of the other trials' running-mean losses at the same resource.

A decision needs the resource to be at least `grace` and at least `min_samples` other trials to
have reported at or past it; a trial's running mean at resource r averages its points up to r.
"""

from __future__ import annotations

import bisect
import math
import statistics

from app.schedulers.base import Decision, Scheduler
from app.spec.model import SchedulerSpec


class MedianStopping(Scheduler):
    def __init__(self, spec: SchedulerSpec) -> None:
        super().__init__(spec)
        self.curves: dict[int, tuple[list[float], list[float]]] = {}  # trial -> (resources, running sums)
        self.best: dict[int, float] = {}
        self.stopped: set[int] = set()

    def _record(self, trial_id: int, resource: float, loss: float) -> None:
        resources, sums = self.curves.setdefault(trial_id, ([], []))
        resources.append(resource)
        sums.append((sums[-1] if sums else 0.0) + loss)
        self.best[trial_id] = min(self.best.get(trial_id, math.inf), loss)

    def _running_mean(self, trial_id: int, resource: float) -> float | None:
        resources, sums = self.curves[trial_id]
        if not resources or resources[-1] < resource:
            return None  # has not got that far
        i = bisect.bisect_right(resources, resource)
        return sums[i - 1] / i if i else None

    def on_result(self, trial_id: int, resource: float, loss: float) -> Decision:
        if trial_id in self.stopped or not math.isfinite(loss):
            return Decision.CONTINUE
        self._record(trial_id, resource, loss)
        if resource < self.spec.grace:
            return Decision.CONTINUE
        means = [
            m for t in self.curves if t != trial_id and (m := self._running_mean(t, resource)) is not None
        ]
        if len(means) < self.spec.min_samples:
            return Decision.CONTINUE
        if self.best[trial_id] > statistics.median(means):
            self.stopped.add(trial_id)
            return Decision.STOP
        return Decision.CONTINUE
