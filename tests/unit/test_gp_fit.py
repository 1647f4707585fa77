"""The GP's budgeted kernel-hyperparameter search (app.optimizers.gp_fit) and its use by Bayesian:
the search matches scikit-learn's without a deadline, stops at the deadline with the best point so
far, the fit budget is a setting that parses and validates, and proposals past FIT_POINTS
observations (hyperparameters fitted on a subset) stay valid and repeat."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern

from app.optimizers import bayesian as bayesian_module
from app.optimizers.base import Observation
from app.optimizers.bayesian import Bayesian
from app.optimizers.gp_fit import BudgetedLBFGS, FixedTheta, log_prior_penalty
from app.optimizers.settings import BayesianSettings, parse_settings
from app.space import NumericParam, SearchSpace


def _data(n: int = 60, d: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.random((n, d))
    y = np.sin(6 * X[:, 0]) + X[:, 1] ** 2 + 0.1 * rng.standard_normal(n)
    return X, y


def _gp(optimizer: object) -> GaussianProcessRegressor:
    kernel = ConstantKernel(1.0) * Matern(length_scale=np.ones(3), nu=2.5)
    return GaussianProcessRegressor(kernel=kernel, optimizer=optimizer, normalize_y=True, alpha=1e-2)


def test_without_deadline_it_finds_what_sklearn_finds() -> None:
    X, y = _data()
    ours = _gp(BudgetedLBFGS(None)).fit(X, y)
    ref = _gp("fmin_l_bfgs_b").fit(X, y)
    assert ours.log_marginal_likelihood_value_ == pytest.approx(ref.log_marginal_likelihood_value_, abs=1e-3)
    assert ours.log_marginal_likelihood_value_ > _gp(None).fit(X, y).log_marginal_likelihood_value_ + 1


def test_a_past_deadline_stops_after_one_evaluation_with_the_best_point() -> None:
    X, y = _data()
    calls: list[int] = []
    fit = BudgetedLBFGS(time.monotonic() - 1)
    gp = _gp(None)
    gp.fit(X, y)  # kernel_ set; now search with a counting objective
    kernel = gp.kernel_

    def obj(theta: np.ndarray) -> tuple[float, np.ndarray]:
        calls.append(1)
        lml, grad = gp.log_marginal_likelihood(theta, eval_gradient=True)
        return -lml, -grad

    theta, value = fit(obj, kernel.theta, kernel.bounds)
    assert fit.cut and len(calls) == 1
    assert np.array_equal(theta, kernel.theta) and value == pytest.approx(obj(kernel.theta)[0])
    # A restart after the deadline returns at once and loses to the first optimum.
    _, value2 = fit(obj, kernel.theta + 1, kernel.bounds)
    assert value2 == np.inf and len(calls) == 2  # the approx check above made the second call
    assert fit.best_theta is not None and np.array_equal(fit.best_theta, theta)


def test_fixed_theta_keeps_the_hyperparameters() -> None:
    X, y = _data()
    fitted = _gp("fmin_l_bfgs_b").fit(X, y).kernel_.theta
    again = _gp(FixedTheta(fitted)).fit(X, y)
    assert np.allclose(again.kernel_.theta, fitted)


def test_fit_budget_setting_parses_and_validates() -> None:
    settings, problems, unused = parse_settings("bayesian", {"fit_budget_s": "0.25", "InitPoints": "5"})
    assert problems == [] and unused == []
    assert isinstance(settings, BayesianSettings)
    assert settings.fit_budget_s == 0.25 and settings.init_points == 5
    assert BayesianSettings().fit_budget_s == 0.5
    _, problems, _ = parse_settings("bayesian", {"fit_budget_s": "-1"})
    assert problems and problems[0][0] == "fit_budget_s"


def test_many_observations_use_a_subset_fit_and_repeat(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bayesian_module, "FIT_POINTS", 25)
    space = SearchSpace(
        params=tuple(NumericParam(type="float", name=f"x{i}", low=0.0, high=1.0) for i in range(3))
    )
    rng = np.random.default_rng(1)
    configs = [space.sample(rng) for _ in range(40)]
    opt = Bayesian(space, BayesianSettings(init_points=3, cube_size=200, fit_budget_s=0), seed=3)
    opt.mark_proposed(configs)
    opt.tell([Observation(c, float(sum((v - 0.3) ** 2 for v in c.values()))) for c in configs])
    first = opt.ask(2)
    assert len(first) == 2 and all(space.problems(c) == [] for c in first)
    assert opt.ask(2) == first


# --- MAP priors (log_prior_penalty) -------------------------------------------------------------


def _skopt_kernel() -> object:
    from skopt.learning.gaussian_process.kernels import ConstantKernel as SkConstant
    from skopt.learning.gaussian_process.kernels import Matern as SkMatern
    from skopt.learning.gaussian_process.kernels import WhiteKernel

    return SkConstant(1.0, (0.01, 1000.0)) * SkMatern(
        length_scale=np.ones(2), length_scale_bounds=[(0.01, 100)] * 2, nu=2.5
    ) + WhiteKernel(noise_level_bounds=(1e-9, 1e5))


def test_prior_penalty_gradient_matches_finite_differences() -> None:
    kernel = _skopt_kernel()
    penalty = log_prior_penalty(kernel)
    theta = np.array([0.3, -1.0, 2.0, -5.0])  # log amplitude, 2 log length scales, log noise
    value, grad = penalty(theta)
    h = 1e-6
    fd = [(penalty(theta + h * e)[0] - penalty(theta - h * e)[0]) / (2 * h) for e in np.eye(4)]
    assert np.isfinite(value) and np.allclose(grad, fd, rtol=1e-5, atol=1e-6)
    # Every hyperparameter is penalised: moving any of them away changes the value.
    assert all(penalty(theta + e)[0] != value for e in np.eye(4))


def test_prior_keeps_an_irrelevant_length_scale_off_its_upper_bound() -> None:
    from skopt.learning import GaussianProcessRegressor as SkGPR

    rng = np.random.default_rng(0)
    X = rng.random((40, 2))
    y = np.sin(5 * X[:, 0]) + 0.1 * X[:, 1]  # x1 has a weak but real effect
    kernel = _skopt_kernel()
    ml = SkGPR(kernel=kernel, normalize_y=True, noise="gaussian", optimizer=BudgetedLBFGS(None)).fit(X, y)
    fit = BudgetedLBFGS(None, log_prior_penalty(kernel))
    mapped = SkGPR(kernel=kernel, normalize_y=True, noise="gaussian", optimizer=fit).fit(X, y)
    ls_ml = ml.kernel_.k1.k2.length_scale
    ls_map = mapped.kernel_.k1.k2.length_scale
    assert ls_ml[1] > 20  # maximum likelihood all but switches x1 off
    assert ls_map[1] < ls_ml[1] / 2 and ls_map[1] < 20
