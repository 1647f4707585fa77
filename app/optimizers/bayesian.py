"""Bayesian optimisation: scikit-optimize's Gaussian process over the unit encoding.

The first `init_points` proposals (and any proposal made before a trial has finished) are
random (`random_unseen`). After that every proposal builds a fresh `skopt.Optimizer` whose
dimensions are the unit encoding of the space (numeric -> Real(0, 1), categorical ->
Categorical over choice indices; constant dims are left out), tells it every observation at once
(one GP fit) and asks for the acquisition optimum, which is decoded with `space.from_unit`.

Choices:
- The GP sees `space.to_unit(config)` of the configuration that actually ran (snapped to its
  step/int/power grid), not the continuous point the acquisition found.
- Failed trials (loss None) and non-finite losses are told with the worst finite loss
  observed, so the model steers away from where trials crash without distorting the scale.
- Constant liar: running configurations and the ones already chosen earlier in the same ask()
  call are told with the worst observed loss too ("cl_max"), so parallel asks spread out.
  Each extra proposal in one call costs one more GP fit.
- `noiseless=True`: GP with a fixed, tiny white noise (1e-10, plus scikit-learn's jitter);
  False: the noise level is fitted (`noise="gaussian"`).
- Acquisition: skopt's "gp_hedge" (EI/PI/LCB); the optimizer is "lbfgs" from the best of
  `cube_size` random points when every active dim is Real, else "sampling" over `cube_size`
  random points (default `DEFAULT_CUBE_SIZE`, chosen with scripts/bench/quality.py).
- Duplicates: if the decoded proposal was already proposed, running or chosen in this call, the
  fitted GP scores `cube_size` random candidates by EI and the best unseen one is taken; if none
  is left, a random unseen configuration. In a finite space ask() returns fewer configurations
  (none once every configuration has been proposed).
- Determinism and pickling: proposal k draws all its randomness (skopt's and the GP's random
  states) from `rng_for(k)`; no skopt object is kept on `self`, so the optimizer pickles cheaply
  and `ask()` leaves it unchanged.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from app.optimizers.base import Optimizer
from app.optimizers.settings import BayesianSettings
from app.space import CategoricalParam, Config, NumericParam, config_key

DEFAULT_CUBE_SIZE = 1000  # random candidate points for the acquisition when cube_size is unset
N_RESTARTS = 2  # lbfgs restarts from the best candidates
NOISELESS_NOISE = 1e-10


class Bayesian(Optimizer):
    name = "bayesian"
    blocking = True

    # --- encoding ------------------------------------------------------------------------
    def _active(self) -> list[int]:
        """Indices of the parameters that can vary (more than one value)."""
        out = []
        for i, p in enumerate(self.space.params):
            if isinstance(p, CategoricalParam):
                if p.size > 1:
                    out.append(i)
            elif isinstance(p, NumericParam) and p.high > p.low and (p.size is None or p.size > 1):
                out.append(i)
        return out

    def _point(self, config: Config, active: list[int]) -> list[Any]:
        """The skopt point of a configuration: unit values, or choice indices for categoricals."""
        point: list[Any] = []
        for i in active:
            p = self.space.params[i]
            value = config[p.name]
            if isinstance(p, CategoricalParam):
                point.append(p.index(value))
            else:
                point.append(min(max(float(p.to_unit(value)), 0.0), 1.0))
        return point

    def _config(self, point: Sequence[Any], active: list[int]) -> Config:
        u = np.full(len(self.space), 0.5)
        for i, x in zip(active, point, strict=True):
            p = self.space.params[i]
            u[i] = (int(x) + 0.5) / p.size if isinstance(p, CategoricalParam) else float(x)
        return self.space.from_unit(u)

    def _dimensions(self, active: list[int]) -> list[Any]:
        from skopt.space import Categorical, Real

        dims: list[Any] = []
        for i in active:
            p = self.space.params[i]
            if isinstance(p, CategoricalParam):
                dims.append(Categorical(list(range(p.size)), name=p.name))
            else:
                dims.append(Real(0.0, 1.0, name=p.name))
        return dims

    # --- one proposal --------------------------------------------------------------------
    def _propose(
        self,
        rng: np.random.Generator,
        active: list[int],
        X: list[list[Any]],
        y: list[float],
        taken: set[tuple],
    ) -> Config:
        from skopt import Optimizer as SkOptimizer
        from skopt.acquisition import _gaussian_acquisition
        from skopt.utils import cook_estimator

        s: BayesianSettings = self.settings  # type: ignore[assignment]
        seeds = rng.integers(0, 2**31 - 1, size=3)
        dims = self._dimensions(active)
        all_real = all(not isinstance(self.space.params[i], CategoricalParam) for i in active)
        n_points = int(s.cube_size or DEFAULT_CUBE_SIZE)
        estimator = cook_estimator(
            "GP",
            space=dims,
            random_state=int(seeds[0]),
            noise=NOISELESS_NOISE if s.noiseless else "gaussian",
        )
        opt = SkOptimizer(
            dims,
            base_estimator=estimator,
            n_initial_points=1,
            acq_func="gp_hedge",
            acq_optimizer="lbfgs" if all_real else "sampling",
            acq_optimizer_kwargs={"n_points": n_points, "n_restarts_optimizer": N_RESTARTS},
            random_state=int(seeds[1]),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt.tell(X, y)
            config = self._config(opt.ask(), active)
        if not self.is_seen(config, taken):
            return config
        # The optimum is taken: best unseen among random candidates, by EI under the fitted GP.
        cand_rng = np.random.default_rng(int(seeds[2]))
        points = [
            self._point(self.space.from_unit(u), active) for u in cand_rng.random((n_points, len(self.space)))
        ]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scores = _gaussian_acquisition(
                opt.space.transform(points), opt.models[-1], y_opt=float(np.min(y)), acq_func="EI"
            )
        for j in np.argsort(scores, kind="stable"):  # skopt acquisitions are minimised
            config = self._config(points[j], active)
            if not self.is_seen(config, taken):
                return config
        return self.random_unseen(rng, taken)

    # --- the interface -------------------------------------------------------------------
    def ask(self, n: int, running: Sequence[Config] = ()) -> list[Config]:
        s: BayesianSettings = self.settings  # type: ignore[assignment]
        taken = {config_key(c) for c in running}
        active = self._active()
        good = [
            (o.config, float(o.loss)) for o in self.history if o.loss is not None and math.isfinite(o.loss)
        ]
        worst = max((loss for _, loss in good), default=0.0)
        X = [self._point(c, active) for c, _ in good]
        y = [loss for _, loss in good]
        failed = [o.config for o in self.history if o.loss is None or not math.isfinite(o.loss)]
        X += [self._point(c, active) for c in [*failed, *running]]
        y += [worst] * (len(failed) + len(running))
        out: list[Config] = []
        for i in range(n):
            if self.all_taken(taken):
                break  # every configuration is proposed or running
            k = len(self.proposed) + i
            rng = self.rng_for(k)
            if k < s.init_points or not good or not active:
                config = self.random_unseen(rng, taken)
            else:
                config = self._propose(rng, active, X, y, taken)
            taken.add(config_key(config))
            X.append(self._point(config, active))
            y.append(worst)
            out.append(config)
        return out
