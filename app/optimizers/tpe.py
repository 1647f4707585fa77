"""Tree-structured Parzen Estimator (multivariate TPE, in the style of Optuna's sampler).

The first `warm_up` proposals are random (`random_unseen` on the proposal's own stream). Then the
finished trials with a loss are sorted and split: the best min(ceil(good_ratio * n), good_max)
(at least one) are "good", the rest "bad". Two joint Parzen estimators over the unit encoding
(`parzen.ParzenEstimator`) model the good set l(x) and the bad set g(x); `ei_candidates` points
drawn from l are scored by log l(x) - log g(x) and the best one is decoded with `space.from_unit`.

Choices:
- Failed trials (loss None) and non-finite losses are added to the bad set: they do not count
  in n for the split (so they never shrink the good set) but push proposals away from where
  trials crashed.
- Constant liar: configurations still running and those already chosen earlier in the same
  ask() call are also added to the bad set, so parallel asks spread out.
- Duplicates: candidates are tried best first, skipping configurations already proposed (or
  running, or chosen in this call); if all are taken, a random unseen one is used. In a finite
  space ask() returns fewer configurations (none once every configuration has been proposed).
- Determinism: the k-th proposal uses only `rng_for(k)`, so equal seed and history give equal
  proposals.
- Cost: tell() appends each observation's encoding and loss to numpy arrays (grown by doubling),
  so ask() splits, sorts and scores without touching Python lists: scripts/bench/suggest.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel

from app.optimizers.base import Observation, Optimizer
from app.optimizers.parzen import ParzenEstimator, default_weights
from app.optimizers.settings import TPESettings
from app.space import CategoricalParam, Config, NumericParam, SearchSpace, config_key


def space_dims(space: SearchSpace) -> tuple[list[int], list[int]]:
    """(categories, bins) per dimension for `ParzenEstimator`: choices of categoricals, cells of
    evenly gridded numeric dims (0 for continuous ones and for integers on a log scale)."""
    categories: list[int] = []
    bins: list[int] = []
    for p in space.params:
        if isinstance(p, CategoricalParam):
            categories.append(p.size)
            bins.append(0)
        else:
            assert isinstance(p, NumericParam)
            categories.append(0)
            gridded = p.grid_step is not None and not p.log
            bins.append(int(p.size or 0) if gridded else 0)
    return categories, bins


class TPE(Optimizer):
    name = "tpe"

    def __init__(
        self,
        space: SearchSpace,
        settings: BaseModel,
        *,
        seed: int,
        max_trials: int | None = None,
        experiments: Sequence[Config] = (),
    ) -> None:
        super().__init__(space, settings, seed=seed, max_trials=max_trials, experiments=experiments)
        # history[i] as arrays, appended to by tell(): unit encoding (rows [:_n] of a buffer that
        # doubles when full) and loss (NaN when failed or not finite).
        self._X = np.empty((16, len(space)))
        self._loss = np.empty(16)
        self._n = 0

    def tell(self, observations: Sequence[Observation]) -> None:
        super().tell(observations)
        self._append(observations)

    # --- helpers -------------------------------------------------------------------------
    def _encode(self, config: Config) -> np.ndarray:
        return np.clip(self.space.to_unit(config), 0.0, 1.0)

    def _append(self, observations: Sequence[Observation]) -> None:
        need = self._n + len(observations)
        if need > len(self._loss):
            size = max(need, 2 * len(self._loss))
            X, loss = np.empty((size, len(self.space))), np.empty(size)
            X[: self._n], loss[: self._n] = self._X[: self._n], self._loss[: self._n]
            self._X, self._loss = X, loss
        for o in observations:
            self._X[self._n] = self._encode(o.config)
            ok = o.loss is not None and math.isfinite(o.loss)
            self._loss[self._n] = float(o.loss) if ok else np.nan  # type: ignore[arg-type]
            self._n += 1

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(encodings (n, d), losses (n,)) of the history; recomputed (not stored: ask() must not
        change the optimizer) when the history was set directly rather than told."""
        if self._n == len(self.history):
            return self._X[: self._n], self._loss[: self._n]
        X = np.array([self._encode(o.config) for o in self.history]).reshape(-1, len(self.space))
        loss = np.array(
            [o.loss if o.loss is not None and math.isfinite(o.loss) else np.nan for o in self.history]
        )
        return X, loss.astype(float)

    def _split(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """(good X, good weights, bad X in age order, number of finished trials with a loss)."""
        s: TPESettings = self.settings  # type: ignore[assignment]
        X, loss = self._arrays()
        ok = np.flatnonzero(~np.isnan(loss))
        n = len(ok)
        if n == 0:
            d = len(self.space)
            return np.empty((0, d)), np.empty(0), np.empty((0, d)), 0
        n_good = max(1, min(math.ceil(s.good_ratio * n), s.good_max))
        ranked = ok[np.lexsort((ok, loss[ok]))]  # by (loss, age)
        is_good = np.zeros(len(loss), dtype=bool)
        is_good[ranked[:n_good]] = True
        return X[is_good], default_weights(n_good), X[~is_good], n

    # --- the interface -------------------------------------------------------------------
    def ask(self, n: int, running: Sequence[Config] = ()) -> list[Config]:
        s: TPESettings = self.settings  # type: ignore[assignment]
        taken = {config_key(c) for c in running}
        out: list[Config] = []
        categories, bins = space_dims(self.space)
        good_X, good_w, bad_X, n_ok = self._split()
        liars = [self._encode(c) for c in running]
        good: ParzenEstimator | None = None
        for i in range(n):
            if self.all_taken(taken):
                break  # every configuration is proposed or running
            k = len(self.proposed) + i
            rng = self.rng_for(k)
            if k < s.warm_up or n_ok == 0:
                config = self.random_unseen(rng, taken)
            else:
                if good is None:
                    good = ParzenEstimator(good_X, categories=categories, bins=bins, weights=good_w)
                X_bad = np.vstack([bad_X, *liars]) if liars else bad_X
                bad = ParzenEstimator(
                    X_bad, categories=categories, bins=bins, weights=default_weights(len(X_bad))
                )
                cand = good.sample(rng, s.ei_candidates)
                score = good.log_pdf(cand) - bad.log_pdf(cand)
                config = None
                for j in np.argsort(-score, kind="stable"):
                    c = self.space.from_unit(cand[j])
                    if not self.is_seen(c, taken):
                        config = c
                        break
                if config is None:
                    config = self.random_unseen(rng, taken)
            taken.add(config_key(config))
            liars.append(self._encode(config))
            out.append(config)
        return out
