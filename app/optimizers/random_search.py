"""Random search: independent uniform draws in the unit encoding (log/step/power applied on decode)."""

from __future__ import annotations

from collections.abc import Sequence

from app.optimizers.base import Optimizer
from app.space import Config, config_key


class RandomSearch(Optimizer):
    adaptive = False  # proposals do not depend on results: bundling changes nothing
    name = "random"

    def ask(self, n: int, running: Sequence[Config] = ()) -> list[Config]:
        out: list[Config] = []
        taken = {config_key(c) for c in running}
        for i in range(n):
            if self.all_taken(taken):
                break  # a finite space is exhausted: no duplicates, the experiment can end
            config = self.random_unseen(self.rng_for(len(self.proposed) + i), taken)
            taken.add(config_key(config))
            out.append(config)
        return out
