"""ASHA: asynchronous successive halving, the stopping form (Li et al. 2020; Ray Tune's ASHA).

Rungs sit at grace * eta**k <= max. When a trial first reports at or past a rung it has not been
recorded at (the highest such rung), its current loss is compared with the losses recorded there
so far: outside the best 1/eta of them, it stops; either way its loss is recorded. There is no
waiting for a rung to fill, so no slot ever idles: a stopped trial frees its slot for a new one,
and the trials that survive every rung train on to `max` ("promotion" is simply not being
stopped). With `brackets` > 1, trial i goes to bracket i % brackets, bracket b's first rung being
grace * eta**b: asynchronous Hyperband.
"""

from __future__ import annotations

import math

import numpy as np

from app.schedulers.base import Decision, Scheduler
from app.spec.model import SchedulerSpec


def rung_levels(grace: float, max_resource: float, eta: float, bracket: int = 0) -> list[float]:
    """Rung resources of a bracket, ascending: grace * eta**(k + bracket) <= max, max excluded."""
    levels = []
    k = bracket
    while True:
        level = grace * eta**k
        if level >= max_resource * (1 - 1e-9):
            return levels
        levels.append(level)
        k += 1


class ASHA(Scheduler):
    def __init__(self, spec: SchedulerSpec) -> None:
        super().__init__(spec)
        self.brackets = [
            [(level, {}) for level in rung_levels(spec.grace, spec.max, spec.eta, b)]
            for b in range(max(spec.brackets, 1))
        ]
        self.stopped: set[int] = set()

    def on_result(self, trial_id: int, resource: float, loss: float) -> Decision:
        if trial_id in self.stopped or not math.isfinite(loss):
            return Decision.CONTINUE
        rungs: list[tuple[float, dict[int, float]]] = self.brackets[trial_id % len(self.brackets)]
        for level, recorded in reversed(rungs):
            if resource < level * (1 - 1e-9) or trial_id in recorded:
                continue
            cutoff = self.cutoff(recorded)
            recorded[trial_id] = loss
            if cutoff is not None and loss > cutoff:
                self.stopped.add(trial_id)
                return Decision.STOP
            break
        return Decision.CONTINUE

    def cutoff(self, recorded: dict[int, float]) -> float | None:
        """The loss a trial must not exceed to stay in the best 1/eta of those recorded."""
        if not recorded:
            return None
        return float(np.percentile(list(recorded.values()), 100.0 / self.spec.eta))
