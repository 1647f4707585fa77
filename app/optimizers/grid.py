"""ExperimentGridSearch: run the listed configurations in order (or every point of a finite space)."""

from __future__ import annotations

from collections.abc import Sequence

from app.optimizers.base import Optimizer
from app.space import Config


class GridSearch(Optimizer):
    adaptive = False  # proposals do not depend on results: bundling changes nothing
    name = "grid"

    def _points(self) -> list[Config]:
        if self.experiments:
            return self.experiments
        return list(self.space.grid())

    def ask(self, n: int, running: Sequence[Config] = ()) -> list[Config]:
        start = len(self.proposed)
        return [dict(c) for c in self._points()[start : start + n]]
