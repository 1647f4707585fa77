"""Kernel-hyperparameter search for scikit-learn / scikit-optimize GPs under a wall-clock budget.

`BudgetedLBFGS` is a GaussianProcessRegressor `optimizer` callable: L-BFGS-B on the negative log
marginal likelihood, as scikit-learn's default, except that once the deadline has passed it stops
and returns the best hyperparameters evaluated so far (the first evaluation of the first search, at
the kernel's starting point, always completes). Restarts called after the deadline return at once
with an infinite loss, so the regressor keeps an earlier optimum. Given a `penalty` (a negative log
prior of the hyperparameters, e.g. `log_prior_penalty`), it searches for the posterior mode
instead: the penalty is added to the objective and its gradient. `FixedTheta` skips the search
and returns given hyperparameters (the kernel is only conditioned on the data: one Cholesky).

Pure numpy/scipy, no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.optimize import minimize

ObjFunc = Callable[..., tuple[float, np.ndarray]]


Penalty = Callable[[np.ndarray], tuple[float, np.ndarray]]


def log_prior_penalty(kernel: Any) -> Penalty:
    """Negative log prior of a kernel's (log) hyperparameters and its gradient, Optuna GPSampler's
    priors: on each length scale l, 0.1 / l^2 + 0.1 * l^2 (keeps l away from both bounds, so a
    weak but real effect is not switched off by a length scale at its upper bound); on the
    amplitude (constant_value) a Gamma(2, 1); on the noise variance (noise_level) a Gamma(1.1, 30).
    Hyperparameters of other names are not penalised."""
    ls: list[int] = []
    amp: list[int] = []
    noise: list[int] = []
    i = 0
    for hp in kernel.hyperparameters:
        if hp.fixed:
            continue
        idx = list(range(i, i + hp.n_elements))
        i += hp.n_elements
        name = hp.name.rsplit("__", 1)[-1]
        {"length_scale": ls, "constant_value": amp, "noise_level": noise}.get(name, []).extend(idx)

    def penalty(theta: np.ndarray) -> tuple[float, np.ndarray]:
        grad = np.zeros_like(theta)
        t = theta[ls]
        value = float(np.sum(0.1 * np.exp(2 * t) + 0.1 * np.exp(-2 * t)))
        grad[ls] = 0.2 * np.exp(2 * t) - 0.2 * np.exp(-2 * t)
        for idx, shape, rate in ((amp, 2.0, 1.0), (noise, 1.1, 30.0)):
            t = theta[idx]  # -log Gamma(shape, rate) density of x = e^t, constants dropped
            value += float(np.sum(rate * np.exp(t) - (shape - 1) * t))
            grad[idx] = rate * np.exp(t) - (shape - 1)
        return value, grad

    return penalty


class _Deadline(Exception):
    pass


class BudgetedLBFGS:
    """L-BFGS-B that gives up at `deadline` (a `time.monotonic()` value); None: no limit.

    `cut` tells afterwards whether the deadline stopped a search; `best_theta` is the best
    point of the last search (log-transformed hyperparameters, as scikit-learn passes them).
    """

    def __init__(self, deadline: float | None, penalty: Penalty | None = None) -> None:
        self.deadline = deadline
        self.penalty = penalty
        self.cut = False
        self.best_theta: np.ndarray | None = None
        self.best_value = np.inf

    def _late(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline

    def __call__(
        self, obj_func: ObjFunc, initial_theta: np.ndarray, bounds: np.ndarray
    ) -> tuple[np.ndarray, float]:
        if self._late() and self.best_theta is not None:  # a restart after the deadline
            self.cut = True
            return initial_theta, np.inf
        best: list[tuple[float, np.ndarray]] = []

        def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
            value, grad = obj_func(theta)
            if self.penalty is not None:
                extra, extra_grad = self.penalty(theta)
                value, grad = value + extra, grad + extra_grad
            if not best or value < best[0][0]:
                best[:] = [(float(value), np.array(theta, dtype=float))]
            if self._late():
                raise _Deadline
            return value, grad

        try:
            result = minimize(fun, initial_theta, method="L-BFGS-B", jac=True, bounds=bounds)
            theta, value = np.asarray(result.x, dtype=float), float(result.fun)
        except _Deadline:
            self.cut = True
            value, theta = best[0]
        if value < self.best_value:
            self.best_value, self.best_theta = value, theta
        return theta, value


class FixedTheta:
    """An `optimizer` that keeps the given (log) hyperparameters: no search."""

    def __init__(self, theta: np.ndarray) -> None:
        self.theta = np.asarray(theta, dtype=float)

    def __call__(
        self, obj_func: ObjFunc, initial_theta: np.ndarray, bounds: np.ndarray
    ) -> tuple[np.ndarray, float]:
        return np.clip(self.theta, bounds[:, 0], bounds[:, 1]), 0.0
