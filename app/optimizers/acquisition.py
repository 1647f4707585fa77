"""Acquisition for the Bayesian searcher: log expected improvement under a fitted GP, maximised
over a candidate pool and refined by local search.

Points are rows of a "z" matrix: one column per active parameter, the unit value of a numeric
parameter or the choice index of a categorical one. `Encoder` turns them into the GP's input
(scikit-optimize's transform: numeric columns as they are, a categorical one-hot, or one 0/1
column when it has two choices). `Posterior` predicts mean and standard deviation from a fitted
scikit-optimize / scikit-learn GaussianProcessRegressor (its kernel_, alpha_, L_ and target
normalisation), with one triangular solve per batch instead of the regressor's (m, n, n) einsum.

`maximise` scores candidates by log EI with no exploration offset (xi = 0, as Optuna's
GPSampler): skopt's EI/PI/LCB take xi/kappa in the objective's units, so a fixed xi = 0.01
hardly rewards an improvement smaller than it, whatever the objective's scale. The log keeps the
ranking informative where EI underflows. Candidates:
- uniform random points (`n_random`);
- Gaussian perturbations of the best observed points at several scales, with categoricals kept
  or one of them redrawn, so the incumbent's neighbourhood is sampled finely (random points
  alone cannot converge in a space with categoricals);
- local searches from the incumbent, the best perturbations and the best random points:
  L-BFGS-B over the numeric columns (central-difference gradients, one batched prediction per
  step) with categoricals fixed, alternated with trying every choice of each categorical and,
  for int / stepped numeric columns, every grid value (at most `SMALL_GRID` of them) or the
  `GRID_NEIGHBOURS` nearest on each side, as Optuna's GPSampler does, until nothing changes.
Every candidate is snapped to the parameter grids (`snap`) before it is scored, so scores are
those of configurations that can run. The result is every candidate with its score, best first;
the caller takes the first one not yet proposed.

Pure numpy/scipy, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.linalg import solve_triangular
from scipy.optimize import minimize
from scipy.special import erfcx, log_ndtr

Snap = Callable[[np.ndarray], np.ndarray]
Grids = dict[int, np.ndarray]

SCALES = (0.2, 0.05, 0.01, 0.002)  # standard deviations of the perturbations, in unit coordinates
N_PER_SCALE = 40  # perturbations per observed point and scale
N_LOCAL_BEST = 5  # best observed points that are perturbed
N_NEAR_STARTS = 2  # local searches from the best perturbations
N_WIDE_STARTS = 3  # and from the best random points (plus the incumbent)
MAX_ROUNDS = 4  # continuous / discrete alternations per local search
SMALL_GRID = 16  # discrete numeric columns with at most this many values are searched whole
GRID_NEIGHBOURS = 2  # else the nearest grid values on each side
FD_STEP = 1e-6  # central-difference step for the acquisition's gradient
_SQRT_HALF_PI = math.sqrt(math.pi / 2)
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class Encoder:
    """z rows -> GP input rows. `sizes[j]` is None for a numeric column, else the choice count."""

    def __init__(self, sizes: Sequence[int | None]) -> None:
        self.sizes = list(sizes)
        self.numeric = np.array([j for j, k in enumerate(self.sizes) if k is None], dtype=int)
        self.categorical = [(j, k) for j, k in enumerate(self.sizes) if k is not None]

    def __call__(self, z: np.ndarray) -> np.ndarray:
        cols: list[np.ndarray] = []
        for j, k in enumerate(self.sizes):
            if k is None:
                cols.append(z[:, j : j + 1])
            elif k == 2:
                cols.append(z[:, j : j + 1].round())
            else:
                cols.append(np.eye(k)[z[:, j].round().astype(int)])
        return np.hstack(cols)


class Posterior:
    """Mean and standard deviation (objective units) of a fitted GaussianProcessRegressor whose
    kernel_ predicts the latent function (scikit-optimize zeroes the white noise after fit)."""

    def __init__(self, model: Any) -> None:
        self.kernel = model.kernel_
        self.X = model.X_train_
        self.alpha = np.ravel(model.alpha_)
        self.L = model.L_
        self.scale = float(np.ravel(model.y_train_std_)[0])
        self.offset = float(np.ravel(model.y_train_mean_)[0])

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = self.kernel(x, self.X)
        mu = k @ self.alpha
        v = solve_triangular(self.L, k.T, lower=True, check_finite=False)
        var = np.maximum(self.kernel.diag(x) - np.einsum("ij,ij->j", v, v), 1e-20)
        return self.scale * mu + self.offset, self.scale * np.sqrt(var)


def log_ei(mu: np.ndarray, sd: np.ndarray, best: float) -> np.ndarray:
    """log E[max(best - f, 0)] for f ~ N(mu, sd^2) (minimisation), stable for very negative z."""
    z = (best - mu) / sd
    out = np.empty_like(z)
    pos = z >= 0
    zp = z[pos]
    out[pos] = np.log(zp * np.exp(log_ndtr(zp)) + np.exp(-0.5 * zp * zp - _LOG_SQRT_2PI))
    zn = z[~pos]
    # h(z) = phi(z) * (1 + z * Phi(z) / phi(z)), with Phi / phi = sqrt(pi/2) * erfcx(-z / sqrt 2)
    ratio = np.maximum(1.0 + zn * _SQRT_HALF_PI * erfcx(-zn / math.sqrt(2)), 1e-300)
    out[~pos] = -0.5 * zn * zn - _LOG_SQRT_2PI + np.log(ratio)
    return out + np.log(sd)


class Acquisition:
    """log EI of z rows, snapped or not, under `posterior` against the best observed loss."""

    def __init__(self, posterior: Posterior, encoder: Encoder, best: float) -> None:
        self.posterior, self.encoder, self.best = posterior, encoder, best

    def __call__(self, z: np.ndarray) -> np.ndarray:
        mu, sd = self.posterior(self.encoder(z))
        return log_ei(mu, sd, self.best)


def random_points(sizes: Sequence[int | None], n: int, rng: np.random.Generator) -> np.ndarray:
    z = rng.random((n, len(sizes)))
    for j, k in enumerate(sizes):
        if k is not None:
            z[:, j] = rng.integers(k, size=n)
    return z


def perturbations(centres: np.ndarray, sizes: Sequence[int | None], rng: np.random.Generator) -> np.ndarray:
    """N_PER_SCALE Gaussian perturbations of each centre per scale; in half of them one
    categorical column (if any) is redrawn."""
    numeric = [j for j, k in enumerate(sizes) if k is None]
    cats = [j for j, k in enumerate(sizes) if k is not None]
    z = np.repeat(centres, N_PER_SCALE * len(SCALES), axis=0)
    scale = np.tile(np.repeat(SCALES, N_PER_SCALE), len(centres))
    if numeric:
        u = z[:, numeric] + rng.normal(size=(len(z), len(numeric))) * scale[:, None]
        # reflected at the bounds: clipping would pile half the mass of a step exactly on a bound
        z[:, numeric] = 1.0 - np.abs(1.0 - np.abs(u) % 2.0)
    if cats:
        flip = np.flatnonzero(rng.random(len(z)) < 0.5)
        col = np.array(cats)[rng.integers(len(cats), size=len(flip))]
        for j in cats:
            rows = flip[col == j]
            z[rows, j] = rng.integers(sizes[j], size=len(rows))  # type: ignore[arg-type]
    return z


def _polish_numeric(acq: Acquisition, z0: np.ndarray, numeric: np.ndarray) -> np.ndarray:
    """L-BFGS-B on -log EI over the numeric columns of one point, categoricals fixed."""
    if len(numeric) == 0:
        return z0
    d = len(numeric)
    steps = np.vstack([np.zeros(d), FD_STEP * np.eye(d), -FD_STEP * np.eye(d)])

    def fun(u: np.ndarray) -> tuple[float, np.ndarray]:
        z = np.repeat(z0[None, :], 2 * d + 1, axis=0)
        z[:, numeric] = u + steps  # the bounds may be crossed by FD_STEP; the GP is defined there
        v = -acq(z)
        return float(v[0]), (v[1 : d + 1] - v[d + 1 :]) / (2 * FD_STEP)

    res = minimize(fun, z0[numeric], jac=True, method="L-BFGS-B", bounds=[(0.0, 1.0)] * d)
    z = z0.copy()
    z[numeric] = np.clip(res.x, 0.0, 1.0)
    return z


def _best_choices(acq: Acquisition, z: np.ndarray, value: float, j: int, k: int) -> tuple[np.ndarray, float]:
    """The point with column j set to its best choice (ties keep the current one)."""
    trial = np.repeat(z[None, :], k, axis=0)
    trial[:, j] = np.arange(k)
    scores = acq(trial)
    i = int(np.argmax(scores))
    if scores[i] > value:
        return trial[i], float(scores[i])
    return z, value


def _best_on_grid(
    acq: Acquisition, z: np.ndarray, value: float, j: int, grid: np.ndarray
) -> tuple[np.ndarray, float]:
    """The point with numeric column j moved to its best grid value: every value of a small
    grid, else the GRID_NEIGHBOURS nearest on each side (ties keep the current one)."""
    i = int(np.argmin(np.abs(grid - z[j])))
    if len(grid) > SMALL_GRID:
        grid = grid[max(i - GRID_NEIGHBOURS, 0) : i + GRID_NEIGHBOURS + 1]
    trial = np.repeat(z[None, :], len(grid), axis=0)
    trial[:, j] = grid
    scores = acq(trial)
    b = int(np.argmax(scores))
    if scores[b] > value:
        return trial[b], float(scores[b])
    return z, value


def local_search(acq: Acquisition, z0: np.ndarray, snap: Snap, grids: Grids) -> np.ndarray:
    """Alternate numeric L-BFGS-B and sweeps over the categoricals and the grids of discrete
    numeric columns (`grids`: column -> sorted unit values) from z0; returns the visited
    (snapped) points, the last being the local optimum."""
    enc = acq.encoder
    visited = [z0]
    z, value = z0, float(acq(z0[None, :])[0])
    for _ in range(MAX_ROUNDS):
        z = _polish_numeric(acq, z, enc.numeric)
        z = snap(z[None, :])[0]
        value = float(acq(z[None, :])[0])
        visited.append(z)
        changed = False
        for j, k in enc.categorical:
            nz, value = _best_choices(acq, z, value, j, k)
            changed = changed or not np.array_equal(nz, z)
            z = nz
        for j, grid in grids.items():
            nz, value = _best_on_grid(acq, z, value, j, grid)
            changed = changed or not np.array_equal(nz, z)
            z = nz
        visited.append(z)
        if not changed:
            break
    return np.array(visited)


def _top(z: np.ndarray, scores: np.ndarray, n: int, avoid: list[np.ndarray]) -> list[np.ndarray]:
    """The n best-scored rows of z not in `avoid` (nor repeated)."""
    out: list[np.ndarray] = []
    for i in np.argsort(-scores, kind="stable"):
        if len(out) >= n:
            break
        if not any(np.array_equal(z[i], a) for a in [*avoid, *out]):
            out.append(z[i])
    return out


def maximise(
    acq: Acquisition,
    observed: np.ndarray,
    n_random: int,
    snap: Snap,
    grids: Grids,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Candidates (rows of z) and their log EI, best first. `observed`: z rows of the real
    observations, best loss first."""
    sizes = acq.encoder.sizes
    wide = snap(random_points(sizes, n_random, rng))
    near = snap(perturbations(observed[:N_LOCAL_BEST], sizes, rng))
    pool = np.vstack([wide, near])
    scores = acq(pool)
    starts = [observed[0]]
    starts += _top(near, scores[len(wide) :], N_NEAR_STARTS, starts)
    starts += _top(wide, scores[: len(wide)], N_WIDE_STARTS, starts)
    found = np.vstack([local_search(acq, s, snap, grids) for s in starts])
    z = np.vstack([found, pool])
    scores = np.concatenate([acq(found), scores])
    order = np.argsort(-scores, kind="stable")
    return z[order], scores[order]
