"""The optimizer interface every searcher implements (Random, TPE, Bayesian, grid, plugins).

Contract:
- `ask(n, running)` proposes up to n new configurations, knowing which are still running. It must
  not change the optimizer: the coordinator may run it in another process on a copy (for slow
  searchers, `blocking = True`) and only calls `mark_proposed` once the trials are recorded. An
  empty answer while nothing runs means the searcher is exhausted.
- `tell(observations)` learns from finished trials. Losses are always minimised: the coordinator
  passes `sign * metric`; failed trials arrive with `loss = None`.
- Randomness for the k-th proposal comes from `rng_for(k)`, a stream derived from (seed, k), so a
  seeded run repeats exactly and an optimizer rebuilt from SQL after a restart continues the same
  streams.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from pydantic import BaseModel

from app.space import Config, SearchSpace, config_key


@dataclass(frozen=True)
class Observation:
    config: Config
    loss: float | None  # objective to minimise; None when the trial failed
    trial: int | None = None  # the trial's number (plugins report it back as `id`)
    state: str | None = None  # FINISHED | FAILED | EARLY_STOPPED | CANCELLED
    value: float | None = None  # the objective as reported (not sign-flipped)


class Optimizer(ABC):
    name: ClassVar[str]
    blocking: ClassVar[bool] = False  # True: ask() can take seconds; run it off the coordinator loop
    # True: what it proposes depends on the results told so far, so asking for more trials than
    # run at once would change the search (Hyperband would even open brackets early): the
    # coordinator never bundles its trials (app.coordinator.bundling). Random and grid say False.
    adaptive: ClassVar[bool] = True
    # Multi-fidelity searchers (Hyperband) add this key to proposals: the budget a trial trains for.
    # Proposals equal but for it continue one another and share a checkpoint directory.
    resource_name: str | None = None

    def __init__(
        self,
        space: SearchSpace,
        settings: BaseModel,
        *,
        seed: int,
        max_trials: int | None = None,
        experiments: Sequence[Config] = (),
    ) -> None:
        self.space = space
        self.settings = settings
        self.seed = int(seed)
        self.max_trials = max_trials
        self.experiments = list(experiments)
        self.proposed: list[Config] = []
        self.history: list[Observation] = []
        self._seen: set[tuple] = set()

    # --- the interface ---------------------------------------------------------------
    @abstractmethod
    def ask(self, n: int, running: Sequence[Config] = ()) -> list[Config]:
        """Up to n new configurations; must not mutate self."""

    def tell(self, observations: Sequence[Observation]) -> None:
        self.history.extend(observations)

    def close(self) -> None:  # noqa: B027 - optional hook
        """The experiment ended or is no longer driven here: release processes or files."""

    def mark_proposed(self, configs: Sequence[Config]) -> None:
        for c in configs:
            self.proposed.append(c)
            self._seen.add(config_key(c))

    # --- helpers for implementations -------------------------------------------------
    def rng_for(self, k: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, k])

    def is_seen(self, config: Config, extra: set[tuple] | None = None) -> bool:
        key = config_key(config)
        return key in self._seen or (extra is not None and key in extra)

    @property
    def space_left(self) -> int | None:
        """Configurations never proposed, None for an infinite space."""
        size = self.space.size
        return None if size is None else max(size - len(self._seen), 0)

    def all_taken(self, taken: set[tuple]) -> bool:
        """True when a finite space has nothing left: every configuration proposed or running."""
        size = self.space.size
        return size is not None and len(self._seen | taken) >= size

    def random_unseen(self, rng: np.random.Generator, taken: set[tuple], tries: int = 64) -> Config:
        """A random configuration, avoiding `taken` and earlier proposals while alternatives remain."""
        size = self.space.size
        config = self.space.sample(rng)
        if size is None:
            return config
        for _ in range(tries):
            if not self.is_seen(config, taken):
                return config
            config = self.space.sample(rng)
        if len(self._seen | taken) >= size or size > 100_000:  # exhausted, or too big to list
            return config
        # Small remaining set: pick uniformly among what is left.
        left = [c for c in self.space.grid() if not self.is_seen(c, taken)]
        return left[int(rng.integers(len(left)))] if left else config

    def observed(self) -> tuple[list[Config], np.ndarray]:
        """Finished trials with a loss: (configs, losses)."""
        pairs = [(o.config, o.loss) for o in self.history if o.loss is not None]
        return [c for c, _ in pairs], np.array([loss for _, loss in pairs], dtype=float)
