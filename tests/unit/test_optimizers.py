"""Optimizer contract: seeded runs repeat, ask() does not mutate, no duplicates in finite spaces,
running configurations are avoided, grid order, failed trials, pickling, and TPE / Bayesian
beating Random on Branin with a small budget."""

from __future__ import annotations

import copy
import math
import pickle
import statistics
from collections.abc import Callable, Sequence

import numpy as np
import pytest
from pydantic import BaseModel

from app.optimizers import optimizer_class
from app.optimizers.base import Observation, Optimizer
from app.optimizers.bayesian import Bayesian
from app.optimizers.grid import GridSearch
from app.optimizers.random_search import RandomSearch
from app.optimizers.settings import BayesianSettings, GridSettings, RandomSettings, TPESettings
from app.optimizers.tpe import TPE
from app.space import CategoricalParam, Config, NumericParam, SearchSpace, config_key

PLANE = SearchSpace(
    params=(
        NumericParam(type="float", name="x", low=-5.0, high=10.0),
        NumericParam(type="float", name="y", low=0.0, high=15.0),
    )
)
TWELVE = SearchSpace(  # 3 x 4 = 12 configurations
    params=(
        NumericParam(type="int", name="depth", low=1, high=3),
        CategoricalParam(name="act", choices=("relu", "tanh", "gelu", "silu")),
    )
)


def branin(c: Config) -> float:
    x, y = float(c["x"]), float(c["y"])
    b, cc, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (y - b * x**2 + cc * x - 6) ** 2 + 10 * (1 - t) * math.cos(x) + 10


def twelve_loss(c: Config) -> float:
    return abs(int(c["depth"]) - 2) + ("relu", "tanh", "gelu", "silu").index(str(c["act"])) * 0.3


# Small settings keep the model-based phases short and cheap.
FAST: dict[str, Callable[[], BaseModel]] = {
    "random": lambda: RandomSettings(),
    "tpe": lambda: TPESettings(warm_up=4),
    "bayesian": lambda: BayesianSettings(init_points=3, cube_size=200),
    "grid": lambda: GridSettings(),
}


def make(name: str, space: SearchSpace, seed: int, **kw: object) -> Optimizer:
    return optimizer_class(name)(space, FAST[name](), seed=seed, **kw)  # type: ignore[arg-type]


def run(opt: Optimizer, fn: Callable[[Config], float], evals: int, batch: int = 1) -> list[Config]:
    """Ask/mark/tell loop; returns every proposal in order."""
    out: list[Config] = []
    while len(out) < evals:
        configs = opt.ask(min(batch, evals - len(out)))
        if not configs:
            break
        opt.mark_proposed(configs)
        opt.tell([Observation(c, fn(c)) for c in configs])
        out.extend(configs)
    return out


def keys(configs: Sequence[Config]) -> list[tuple]:
    return [config_key(c) for c in configs]


def test_registry_names_and_blocking_flags() -> None:
    assert optimizer_class("tpe") is TPE and TPE.name == "tpe"
    assert optimizer_class("bayesian") is Bayesian and Bayesian.name == "bayesian"
    assert Bayesian.blocking is True
    assert TPE.blocking is False and RandomSearch.blocking is False and GridSearch.blocking is False


# --- determinism --------------------------------------------------------------------------

EVALS = {"random": 12, "tpe": 12, "bayesian": 6, "grid": 12}


@pytest.mark.parametrize("name", ["random", "tpe", "bayesian"])
def test_seeded_runs_repeat_and_seeds_differ(name: str) -> None:
    a = run(make(name, PLANE, seed=7), branin, EVALS[name], batch=2)
    b = run(make(name, PLANE, seed=7), branin, EVALS[name], batch=2)
    c = run(make(name, PLANE, seed=8), branin, EVALS[name], batch=2)
    assert len(a) == EVALS[name]
    assert a == b
    assert a != c
    # the model-based proposals (after the random start) differ too
    assert a[-1] != c[-1]


def test_grid_runs_repeat() -> None:
    first = run(make("grid", TWELVE, seed=1), twelve_loss, 12)
    assert first == run(make("grid", TWELVE, seed=2), twelve_loss, 12)
    assert first == list(TWELVE.grid())


# --- ask() leaves the optimizer unchanged -----------------------------------------------------


def _state(opt: Optimizer) -> bytes:
    return pickle.dumps({k: v for k, v in vars(opt).items()})


@pytest.mark.parametrize("name", ["random", "tpe", "bayesian", "grid"])
def test_ask_does_not_mutate(name: str) -> None:
    opt = make(name, PLANE if name != "grid" else TWELVE, seed=3)
    run(opt, branin if name != "grid" else twelve_loss, 5)  # past the random start
    running = opt.ask(1)
    opt.mark_proposed(running)
    before = _state(opt)
    proposed, history = copy.deepcopy(opt.proposed), copy.deepcopy(opt.history)
    first = opt.ask(2, running=running)
    assert _state(opt) == before
    assert opt.proposed == proposed and opt.history == history
    assert opt.ask(2, running=running) == first


# --- finite spaces: no duplicates, exhaustion, running configurations -----------------------


@pytest.mark.parametrize("name", ["random", "tpe", "bayesian"])
def test_no_duplicates_in_a_space_of_twelve(name: str) -> None:
    opt = make(name, TWELVE, seed=5)
    configs = run(opt, twelve_loss, 12)
    assert len(configs) == 12
    assert sorted(keys(configs)) == sorted(keys(list(TWELVE.grid())))
    assert opt.space_left == 0
    assert opt.ask(3) == []  # exhausted: no repeats, so the experiment can end


@pytest.mark.parametrize("name", ["random", "tpe", "bayesian"])
def test_parallel_ask_in_a_space_of_twelve(name: str) -> None:
    opt = make(name, TWELVE, seed=6)
    run(opt, twelve_loss, 5)
    batch = opt.ask(7)
    assert len(batch) == 7 and len(set(keys(batch))) == 7
    assert not set(keys(batch)) & set(keys(opt.proposed))
    assert len(opt.ask(20)) == 7  # only what is left


@pytest.mark.parametrize("name", ["random", "tpe", "bayesian"])
@pytest.mark.parametrize("told", [1, 6])  # random start, model phase
def test_running_configs_are_not_reproposed(name: str, told: int) -> None:
    grid = list(TWELVE.grid())
    opt = make(name, TWELVE, seed=9)
    done = grid[:told]
    opt.mark_proposed(done)
    opt.tell([Observation(c, twelve_loss(c)) for c in done])
    # running trials, e.g. seen by a searcher rebuilt after a restart: not in `proposed`
    running = grid[told:11]
    got = opt.ask(1, running=running)
    assert got == [grid[11]]


# --- grid ---------------------------------------------------------------------------------------


def test_grid_returns_the_experiments_in_order_then_nothing() -> None:
    experiments: list[Config] = [{"x": 1.0, "y": 2.0}, {"x": 3.0, "y": 4.0}, {"x": -1.0, "y": 0.5}]
    opt = GridSearch(PLANE, GridSettings(), seed=0, experiments=experiments)
    first = opt.ask(2)
    assert first == experiments[:2]
    opt.mark_proposed(first)
    rest = opt.ask(5)
    assert rest == experiments[2:]
    opt.mark_proposed(rest)
    assert opt.ask(1) == []


def test_grid_without_experiments_enumerates_the_space() -> None:
    opt = GridSearch(TWELVE, GridSettings(), seed=0)
    assert run(opt, twelve_loss, 100) == list(TWELVE.grid())
    assert opt.ask(1) == []


# --- failed trials, pickling -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tpe", "bayesian"])
def test_failed_trials(name: str) -> None:
    opt = make(name, PLANE, seed=2)
    configs = opt.ask(4)
    opt.mark_proposed(configs)
    opt.tell([Observation(c, None) for c in configs])  # all failed: still proposes
    more = opt.ask(2)
    assert len(more) == 2 and all(PLANE.problems(c) == [] for c in more)
    opt.mark_proposed(more)
    opt.tell([Observation(more[0], branin(more[0])), Observation(more[1], float("nan"))])
    last = opt.ask(2)
    assert len(last) == 2 and all(PLANE.problems(c) == [] for c in last)


def test_bayesian_is_picklable() -> None:
    opt = make("bayesian", PLANE, seed=4)
    run(opt, branin, 4)
    clone = pickle.loads(pickle.dumps(opt))
    assert clone.ask(1) == opt.ask(1)
    assert len(pickle.dumps(opt)) < 20_000


# --- quality: beat Random on Branin ----------------------------------------------------------


def _median_best(name: str, settings: BaseModel, seeds: Sequence[int], evals: int) -> float:
    bests = []
    for seed in seeds:
        opt = optimizer_class(name)(PLANE, settings, seed=seed)
        bests.append(min(branin(c) for c in run(opt, branin, evals)))
    return statistics.median(bests)


def test_tpe_beats_random_on_branin() -> None:
    seeds = range(5)
    rnd = _median_best("random", RandomSettings(), seeds, 30)
    tpe = _median_best("tpe", TPESettings(), seeds, 30)
    assert tpe < rnd, (tpe, rnd)


def test_bayesian_beats_random_on_branin() -> None:
    seeds = range(3)
    rnd = _median_best("random", RandomSettings(), seeds, 20)
    gp = _median_best("bayesian", BayesianSettings(init_points=8, cube_size=500), seeds, 20)
    assert gp < rnd, (gp, rnd)


def test_tpe_model_phase_concentrates_near_good_points() -> None:
    # 1-D sanity check of the density ratio: after a warm-up, proposals move to the minimum.
    space = SearchSpace(params=(NumericParam(type="float", name="x", low=0.0, high=1.0),))
    opt = TPE(space, TPESettings(warm_up=5), seed=0)
    configs = run(opt, lambda c: (float(c["x"]) - 0.7) ** 2, 40)
    late = np.array([float(c["x"]) for c in configs[-10:]])
    assert np.median(np.abs(late - 0.7)) < 0.1


def test_tpe_incremental_arrays_match_a_history_set_directly() -> None:
    # tell() appends to growing arrays; a history assigned directly is re-encoded on ask().
    told = TPE(PLANE, TPESettings(warm_up=4), seed=5)
    configs = run(told, branin, 40)  # grows the buffers past their initial 16 rows
    direct = TPE(PLANE, TPESettings(warm_up=4), seed=5)
    direct.mark_proposed(configs)
    direct.history = list(told.history)
    assert direct.ask(3) == told.ask(3)
    assert told._n == 40 and direct._n == 0  # ask() stored nothing


# --- Bayesian acquisition (app.optimizers.acquisition) -----------------------------------------


def test_encoder_matches_skopt_transform() -> None:
    from skopt.space import Categorical, Real, Space
    from skopt.utils import normalize_dimensions

    from app.optimizers.acquisition import Encoder

    dims = [Real(0, 1), Categorical([0, 1, 2]), Categorical([0, 1]), Real(0, 1), Categorical([0, 1, 2, 3])]
    rng = np.random.default_rng(0)
    points = [[rng.random(), int(rng.integers(3)), int(rng.integers(2)), rng.random(), int(rng.integers(4))]]
    points += [[rng.random(), 2, 1, rng.random(), 3], [0.0, 0, 0, 1.0, 0]]
    ours = Encoder([None, 3, 2, None, 4])(np.array(points, dtype=float))
    assert np.array_equal(ours, np.asarray(Space(normalize_dimensions(dims)).transform(points)))


def test_posterior_and_log_ei_match_skopt() -> None:
    from skopt.acquisition import gaussian_ei
    from skopt.space import Real
    from skopt.utils import cook_estimator

    from app.optimizers.acquisition import Posterior, log_ei

    rng = np.random.default_rng(1)
    X = rng.random((30, 2))
    y = np.sin(4 * X[:, 0]) + X[:, 1] + 0.05 * rng.standard_normal(30)  # noise: variances well above 0
    model = cook_estimator("GP", space=[Real(0, 1), Real(0, 1)], random_state=0).fit(X, y)
    Q = rng.random((50, 2))
    mu, sd = Posterior(model)(Q)
    ref_mu, ref_sd = model.predict(Q, return_std=True)
    assert np.allclose(mu, ref_mu) and np.allclose(sd, ref_sd, rtol=1e-4)  # skopt inverts K
    ei = gaussian_ei(Q, model, y_opt=float(y.min()), xi=0.0)
    ok = ei > 1e-200
    assert np.allclose(log_ei(mu, sd, float(y.min()))[ok], np.log(ei[ok]), rtol=1e-4, atol=1e-4)
    # Far below the best, EI underflows but its log stays finite and ordered.
    far = log_ei(np.array([10.0, 20.0, 40.0]), np.ones(3), 0.0)
    assert np.all(np.isfinite(far)) and far[0] > far[1] > far[2]


def test_bayesian_refines_to_the_optimum_of_a_mixed_function() -> None:
    # Candidates around the incumbent and the local search (L-BFGS-B on the numeric dims, every
    # choice of the categorical) must pin the minimum far below what 200 random candidates resolve.
    space = SearchSpace(
        params=(
            NumericParam(type="float", name="x", low=0.0, high=1.0),
            NumericParam(type="float", name="y", low=0.0, high=1.0),
            CategoricalParam(name="c", choices=("a", "b", "c")),
        )
    )

    def loss(c: Config) -> float:
        shift = {"a": 0.5, "b": 0.0, "c": 0.3}[str(c["c"])]
        return (float(c["x"]) - 0.737) ** 2 + (float(c["y"]) - 0.214) ** 2 + shift

    opt = Bayesian(space, BayesianSettings(init_points=5, cube_size=200), seed=0)
    configs = run(opt, loss, 30)
    best = min(configs, key=loss)
    assert best["c"] == "b" and loss(best) < 1e-6, best
    late = configs[-10:]
    assert sum(loss(c) < 1e-3 for c in late) >= 5  # proposals concentrate at the optimum


def test_local_search_steps_along_a_discrete_grid() -> None:
    # A numeric column on a grid of 100 values and an acquisition that is flat between grid
    # values (no gradient for L-BFGS-B): the grid sweeps alone walk to the best value.
    from app.optimizers.acquisition import Encoder, local_search

    grid = (np.arange(100) + 0.5) / 100
    target = grid[61]

    class Quadratic:  # an "acquisition": higher is better, best at (target, choice 2)
        encoder = Encoder([None, 3])

        def __call__(self, z: np.ndarray) -> np.ndarray:
            return -((snap(z)[:, 0] - target) ** 2) - (z[:, 1] != 2)

    def snap(z: np.ndarray) -> np.ndarray:
        z = z.copy()
        z[:, 0] = grid[np.abs(grid[None, :] - z[:, :1]).argmin(axis=1)]
        return z

    found = local_search(Quadratic(), np.array([grid[55], 0.0]), snap, {0: grid})  # type: ignore[arg-type]
    assert found[-1][0] == target and found[-1][1] == 2
