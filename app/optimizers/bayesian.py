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
  Later proposals of one call reuse the kernel hyperparameters fitted for the first (the GP is
  only re-conditioned on the lie: one Cholesky, no hyperparameter search).
- Kernel hyperparameters (skopt's GP: constant * Matern 5/2 with a length scale per dim, plus
  white noise) are searched as skopt does (L-BFGS-B from the current kernel and
  `N_KERNEL_RESTARTS` random starts), under a time budget per suggestion, `fit_budget_s`
  (default 0.5 s; 0 = none): past it the search stops and the best hyperparameters found so far
  are used (`gp_fit.BudgetedLBFGS`; the first likelihood evaluation always completes). Above
  `FIT_POINTS` observations they are fitted on that many rows drawn at random (from the
  proposal's stream), then the GP is conditioned on every observation with them. Profile at 200
  observations: nearly all of skopt's seconds were this search (about 150 likelihood
  evaluations, each a Cholesky and an (n, n, d) kernel gradient), the rest the acquisition.
  Warm starts across ask() calls are not possible here: ask() must not change the optimizer and
  runs on a pickled copy (coordinator/asker.py). With the budget hit, a proposal depends on the
  machine's speed; below it, seeded runs repeat exactly.
- BLAS runs single-threaded during a proposal (threadpoolctl): on these small matrices extra
  threads only contend (3x slower Cholesky at 200 points on a loaded 2-core machine).
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
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from app.optimizers.base import Optimizer
from app.optimizers.gp_fit import BudgetedLBFGS, FixedTheta
from app.optimizers.settings import BayesianSettings
from app.space import CategoricalParam, Config, NumericParam, config_key

DEFAULT_CUBE_SIZE = 1000  # random candidate points for the acquisition when cube_size is unset
N_RESTARTS = 2  # lbfgs restarts of the acquisition from the best candidates
ACQ_FUNC = "gp_hedge"  # skopt's portfolio of EI, PI and LCB
N_KERNEL_RESTARTS = 2  # extra random starts of the kernel-hyperparameter search (skopt's default)
FIT_POINTS = 300  # above this many observations, hyperparameters are fitted on a random subset
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
    def _estimator(self, dims: list[Any], seed: int, optimizer: Any, restarts: int) -> Any:
        """skopt's GP for `dims` (cook_estimator: constant * Matern 5/2, + white noise) with our
        kernel-hyperparameter `optimizer`."""
        from skopt.utils import cook_estimator

        s: BayesianSettings = self.settings  # type: ignore[assignment]
        est = cook_estimator(
            "GP", space=dims, random_state=seed, noise=NOISELESS_NOISE if s.noiseless else "gaussian"
        )
        return est.set_params(optimizer=optimizer, n_restarts_optimizer=restarts)

    def _subset_theta(
        self, dims: list[Any], X: list[list[Any]], y: list[float], seed: int, deadline: float | None
    ) -> np.ndarray:
        """Kernel hyperparameters fitted on FIT_POINTS rows drawn at random (budget fallback)."""
        from skopt.space import Space
        from skopt.utils import normalize_dimensions

        rows = np.random.default_rng(seed).choice(len(X), size=FIT_POINTS, replace=False)
        fit = BudgetedLBFGS(deadline)
        est = self._estimator(dims, seed, fit, N_KERNEL_RESTARTS)
        space = Space(normalize_dimensions(dims))
        est.fit(space.transform([X[r] for r in rows]), np.asarray(y, dtype=float)[rows])
        assert fit.best_theta is not None
        return fit.best_theta

    def _propose(
        self,
        rng: np.random.Generator,
        active: list[int],
        X: list[list[Any]],
        y: list[float],
        taken: set[tuple],
        theta: np.ndarray | None,
    ) -> tuple[Config, np.ndarray]:
        """One proposal and the kernel hyperparameters it used (reused for the rest of the call)."""
        from skopt import Optimizer as SkOptimizer
        from skopt.acquisition import _gaussian_acquisition

        s: BayesianSettings = self.settings  # type: ignore[assignment]
        seeds = rng.integers(0, 2**31 - 1, size=3)
        dims = self._dimensions(active)
        all_real = all(not isinstance(self.space.params[i], CategoricalParam) for i in active)
        n_points = int(s.cube_size or DEFAULT_CUBE_SIZE)
        deadline = time.monotonic() + s.fit_budget_s if s.fit_budget_s > 0 else None
        if theta is None and len(X) > FIT_POINTS:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                theta = self._subset_theta(dims, X, y, int(seeds[0]), deadline)
        fit: BudgetedLBFGS | FixedTheta = BudgetedLBFGS(deadline) if theta is None else FixedTheta(theta)
        estimator = self._estimator(dims, int(seeds[0]), fit, N_KERNEL_RESTARTS if theta is None else 0)
        opt = SkOptimizer(
            dims,
            base_estimator=estimator,
            n_initial_points=1,
            acq_func=ACQ_FUNC,
            acq_optimizer="lbfgs" if all_real else "sampling",
            acq_optimizer_kwargs={"n_points": n_points, "n_restarts_optimizer": N_RESTARTS},
            random_state=int(seeds[1]),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt.tell(X, y)
            config = self._config(opt.ask(), active)
        used = opt.models[-1].optimizer  # the fitted copy (skopt clones the estimator)
        theta = used.theta if isinstance(used, FixedTheta) else used.best_theta
        if not self.is_seen(config, taken):
            return config, theta
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
                return config, theta
        return self.random_unseen(rng, taken), theta

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
        theta: np.ndarray | None = None  # kernel hyperparameters fitted by this call's first proposal
        for i in range(n):
            if self.all_taken(taken):
                break  # every configuration is proposed or running
            k = len(self.proposed) + i
            rng = self.rng_for(k)
            if k < s.init_points or not good or not active:
                config = self.random_unseen(rng, taken)
            else:
                with threadpool_limits(1):  # BLAS threads only contend on these small matrices
                    config, theta = self._propose(rng, active, X, y, taken, theta)
            taken.add(config_key(config))
            X.append(self._point(config, active))
            y.append(worst)
            out.append(config)
        return out
