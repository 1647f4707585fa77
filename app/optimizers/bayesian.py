"""Bayesian optimisation: scikit-optimize's Gaussian process over the unit encoding.

The first `init_points` proposals (and any proposal made before a trial has finished) are
random (`random_unseen`). After that every proposal fits skopt's GP (`cook_estimator`: constant *
Matern 5/2 with a length scale per dim, plus white noise) on every observation at once, in the
encoding skopt would use (numeric -> unit value, categorical -> one-hot; constant dims left out;
`acquisition.Encoder`), and maximises log expected improvement over candidates
(`acquisition.maximise`); the best one not yet proposed is decoded with `space.from_unit`.

Choices:
- The GP sees `space.to_unit(config)` of the configuration that actually ran (snapped to its
  step/int/power grid), not the continuous point the acquisition found.
- Failed trials (loss None) and non-finite losses are told with the worst finite loss
  observed, so the model steers away from where trials crash without distorting the scale.
- Constant liar: running configurations and the ones already chosen earlier in the same ask()
  call are told with the worst observed loss too ("cl_max"), so parallel asks spread out.
  Later proposals of one call reuse the kernel hyperparameters fitted for the first (the GP is
  only re-conditioned on the lie: one Cholesky, no hyperparameter search).
- Kernel hyperparameters are searched as skopt does (L-BFGS-B from the current kernel and
  `N_KERNEL_RESTARTS` random starts) but for the posterior mode rather than the likelihood's
  maximum: Optuna GPSampler's priors on length scales, amplitude and noise are added
  (`gp_fit.log_prior_penalty`). Maximum likelihood sent the length scale of a weak but real
  effect to its upper bound (100), after which the acquisition never varied that parameter
  (a run of the mixed problem of scripts/bench/quality.py stuck at dropout 0, regret 0.18).
- Noise: `noiseless=True`: a fixed, tiny white noise (1e-10, plus scikit-learn's jitter); False:
  the noise variance is fitted, with a floor of `NOISE_FLOOR` instead of skopt's 1e-5 (in units
  of the normalised targets): a noise sd of 0.3 % of the targets' spread blurs the last digits
  of a deterministic objective (mixed problem, seeds 0..2, 100 evaluations: floor 1e-6 ended at
  regrets 1.6e-05 / 3.9e-06 / 1.8e-07, floor 1e-9 at 1.3e-08 / 2.8e-08 / 5.4e-08).
- Time budget: the hyperparameter search runs under `fit_budget_s` per suggestion (default
  0.5 s; 0 = none): past it the search stops and the best hyperparameters found so far are used
  (`gp_fit.BudgetedLBFGS`; the first likelihood evaluation always completes). Above
  `FIT_POINTS` observations they are fitted on that many rows drawn at random (from the
  proposal's stream), then the GP is conditioned on every observation with them. Profile at 200
  observations: nearly all of skopt's seconds were this search (about 150 likelihood
  evaluations, each a Cholesky and an (n, n, d) kernel gradient). Warm starts across ask()
  calls are not possible here: ask() must not change the optimizer and runs on a pickled copy
  (coordinator/asker.py). With the budget hit, a proposal depends on the machine's speed; below
  it, seeded runs repeat exactly.
- BLAS runs single-threaded during a proposal (threadpoolctl): on these small matrices extra
  threads only contend (3x slower Cholesky at 200 points on a loaded 2-core machine).
- Acquisition (app/optimizers/acquisition.py): log EI with xi = 0 instead of skopt's gp_hedge,
  whose xi / kappa are absolute in the objective's units (xi = 0.01 hardly rewards a smaller
  improvement, whatever the objective's scale); candidates are `cube_size` random points
  (default `DEFAULT_CUBE_SIZE`), Gaussian perturbations of the best observed points at several
  scales (categoricals kept or one redrawn), and local searches (L-BFGS-B over numeric dims
  with categoricals fixed, alternated with trying each choice of each categorical and nearby
  values of each int / stepped dim, `_grids`) from the incumbent and the best candidates, all
  snapped to the parameter grids (`_snap`) before they are scored.
- Duplicates: candidates are tried best first and the first one not yet proposed, running or
  chosen in this call is taken; if none is left, a random unseen configuration. In a finite
  space ask() returns fewer configurations (none once every configuration has been proposed).
- Determinism and pickling: proposal k draws all its randomness (the GP's random state and the
  candidates) from `rng_for(k)`; no skopt object is kept on `self`, so the optimizer pickles
  cheaply and `ask()` leaves it unchanged.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from app.optimizers.acquisition import Acquisition, Encoder, Posterior, maximise
from app.optimizers.base import Optimizer
from app.optimizers.gp_fit import BudgetedLBFGS, FixedTheta, log_prior_penalty
from app.optimizers.settings import BayesianSettings
from app.space import CategoricalParam, Config, NumericParam, config_key

DEFAULT_CUBE_SIZE = 1000  # random candidate points for the acquisition when cube_size is unset
N_KERNEL_RESTARTS = 2  # extra random starts of the kernel-hyperparameter search (skopt's default)
FIT_POINTS = 300  # above this many observations, hyperparameters are fitted on a random subset
NOISELESS_NOISE = 1e-10
NOISE_FLOOR = 1e-9  # lower bound of the fitted white-noise variance (normalised units)


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
    def _estimator(self, dims: list[Any], seed: int, deadline: float | None, theta: np.ndarray | None) -> Any:
        """skopt's GP for `dims` (cook_estimator: constant * Matern 5/2, + white noise whose floor
        is NOISE_FLOOR) whose hyperparameters are `theta`, or else searched (MAP, see gp_fit)
        until `deadline`. The fitter is the estimator's `optimizer`."""
        from skopt.learning.gaussian_process.kernels import WhiteKernel
        from skopt.utils import cook_estimator

        s: BayesianSettings = self.settings  # type: ignore[assignment]
        est = cook_estimator(
            "GP", space=dims, random_state=seed, noise=NOISELESS_NOISE if s.noiseless else "gaussian"
        )
        if not s.noiseless:  # skopt would add WhiteKernel() itself, with a floor of 1e-5
            est.set_params(kernel=est.kernel + WhiteKernel(noise_level_bounds=(NOISE_FLOOR, 1e5)))
        if theta is not None:
            return est.set_params(optimizer=FixedTheta(theta), n_restarts_optimizer=0)
        fit = BudgetedLBFGS(deadline, log_prior_penalty(est.kernel))
        return est.set_params(optimizer=fit, n_restarts_optimizer=N_KERNEL_RESTARTS)

    def _subset_theta(
        self,
        dims: list[Any],
        encode: Encoder,
        X: np.ndarray,
        y: np.ndarray,
        seed: int,
        deadline: float | None,
    ) -> np.ndarray:
        """Kernel hyperparameters fitted on FIT_POINTS rows drawn at random (budget fallback)."""
        rows = np.random.default_rng(seed).choice(len(X), size=FIT_POINTS, replace=False)
        est = self._estimator(dims, seed, deadline, None)
        est.fit(encode(X[rows]), y[rows])
        assert est.optimizer.best_theta is not None
        return est.optimizer.best_theta

    def _sizes(self, active: list[int]) -> list[int | None]:
        """Per active parameter: None for numeric, else the number of choices."""
        return [p.size if isinstance(p := self.space.params[i], CategoricalParam) else None for i in active]

    def _snap(self, z: np.ndarray, active: list[int]) -> np.ndarray:
        """z rows moved onto the grids of int / stepped numeric parameters (unit of the value
        from_unit gives), categoricals rounded."""
        z = z.copy()
        for j, i in enumerate(active):
            p = self.space.params[i]
            if isinstance(p, CategoricalParam):
                z[:, j] = np.clip(np.round(z[:, j]), 0, p.size - 1)
            elif p.size is not None or p.integer:
                z[:, j] = [p.to_unit(p.from_unit(u)) for u in z[:, j]]
        return z

    def _grids(self, active: list[int]) -> dict[int, np.ndarray]:
        """Column -> sorted unit values of each discrete numeric parameter (int, step)."""
        out: dict[int, np.ndarray] = {}
        for j, i in enumerate(active):
            p = self.space.params[i]
            if isinstance(p, NumericParam) and (values := p.values()) is not None:
                out[j] = np.sort([p.to_unit(v) for v in values])
        return out

    def _fit(
        self,
        active: list[int],
        X: list[list[Any]],
        y: list[float],
        seed: int,
        theta: np.ndarray | None,
    ) -> tuple[Any, np.ndarray]:
        """skopt's GP fitted on every observation (and lie), and its kernel hyperparameters."""
        s: BayesianSettings = self.settings  # type: ignore[assignment]
        dims = self._dimensions(active)
        deadline = time.monotonic() + s.fit_budget_s if s.fit_budget_s > 0 else None
        encode = Encoder(self._sizes(active))
        Xa, ya = np.asarray(X, dtype=float), np.asarray(y, dtype=float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if theta is None and len(X) > FIT_POINTS:
                theta = self._subset_theta(dims, encode, Xa, ya, seed, deadline)
            model = self._estimator(dims, seed, deadline, theta)
            model.fit(encode(Xa), ya)
        fit = model.optimizer
        used = fit.theta if isinstance(fit, FixedTheta) else fit.best_theta
        assert used is not None
        return model, used

    def _propose(
        self,
        rng: np.random.Generator,
        active: list[int],
        X: list[list[Any]],
        y: list[float],
        n_good: int,
        taken: set[tuple],
        theta: np.ndarray | None,
    ) -> tuple[Config, np.ndarray]:
        """One proposal and the kernel hyperparameters it used (reused for the rest of the call).
        The first `n_good` rows of X / y are real observations, the rest lies."""
        s: BayesianSettings = self.settings  # type: ignore[assignment]
        seeds = rng.integers(0, 2**31 - 1, size=2)
        model, theta = self._fit(active, X, y, int(seeds[0]), theta)
        good = np.asarray(y[:n_good], dtype=float)
        observed = np.asarray(X[:n_good], dtype=float)[np.argsort(good, kind="stable")]
        acq = Acquisition(Posterior(model), Encoder(self._sizes(active)), float(good.min()))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            candidates, _ = maximise(
                acq,
                observed,
                int(s.cube_size or DEFAULT_CUBE_SIZE),
                lambda z: self._snap(z, active),
                self._grids(active),
                np.random.default_rng(int(seeds[1])),
            )
        for z in candidates:
            config = self._config(z, active)
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
                    config, theta = self._propose(rng, active, X, y, len(good), taken, theta)
            taken.add(config_key(config))
            X.append(self._point(config, active))
            y.append(worst)
            out.append(config)
        return out
