"""SearchSpace encoding: every decoded value is legal (bounds, int type, step grid, power grid,
categorical choices) for uniform unit vectors and for what Random, TPE and Bayesian propose;
to_unit/from_unit round trips; grid enumeration and size of a finite space."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from app.optimizers.base import Observation, Optimizer
from app.optimizers.bayesian import Bayesian
from app.optimizers.random_search import RandomSearch
from app.optimizers.settings import BayesianSettings, RandomSettings, TPESettings
from app.optimizers.tpe import TPE
from app.space import CategoricalParam, Config, NumericParam, SearchSpace


def _num(name: str, type_: str, low: float, high: float, **kw: object) -> NumericParam:
    return NumericParam(type=type_, name=name, low=low, high=high, **kw)  # type: ignore[arg-type]


MIXED = SearchSpace(
    params=(
        _num("f_plain", "float", -2.0, 3.0),
        _num("f_log", "float", 1e-5, 1e-1, log=True),
        _num("f_step", "float", 0.001, 0.1, step=0.002),  # WMLA example: 50 values 0.001 .. 0.099
        _num("f_pow", "float", -4.0, -1.0, power=10.0),
        _num("f_pow_step", "float", -4.0, -1.0, power=10.0, step=0.5),
        _num("i_plain", "int", 1, 10),
        _num("i_step", "int", 16, 256, step=16),
        _num("i_log", "int", 16, 256, log=True),
        _num("i_pow", "int", 0, 8, power=2.0),
        CategoricalParam(name="c_str", choices=("adam", "sgd", "rmsprop"), value_type="str"),
        CategoricalParam(name="c_double", choices=(0.1, 0.5, 0.9), value_type="double"),
        CategoricalParam(name="c_int", choices=(32, 64, 128), value_type="int"),
    )
)


def _on_grid(x: float, low: float, step: float) -> bool:
    k = round((x - low) / step)
    return math.isclose(x, low + k * step, rel_tol=1e-9, abs_tol=1e-12)


def check_value(p: NumericParam | CategoricalParam, v: object) -> None:
    """Assert that v is a legal value of p, with the right Python type."""
    if isinstance(p, CategoricalParam):
        assert any(v == c and type(v) is type(c) for c in p.choices), (p.name, v)
        return
    if p.integer:
        assert type(v) is int, (p.name, v, type(v))
    else:
        assert type(v) is float, (p.name, v, type(v))
    assert isinstance(v, int | float)
    tol = 1e-9 * max(1.0, abs(p.low), abs(p.high))
    if p.power is None:
        assert p.low - tol <= v <= p.high + tol, (p.name, v)
        if p.step is not None:
            assert _on_grid(float(v), p.low, p.step), (p.name, v)
        return
    assert v > 0, (p.name, v)
    x = math.log(v) / math.log(p.power)
    assert p.low - 1e-9 <= x <= p.high + 1e-9, (p.name, v, x)
    step = p.step if p.step is not None else (1.0 if p.integer else None)
    if step is not None:
        k = round((x - p.low) / step)
        assert math.isclose(v, p.power ** (p.low + k * step), rel_tol=1e-9), (p.name, v)
    else:
        assert math.isclose(v, p.power**x, rel_tol=1e-9)


def check_config(space: SearchSpace, config: Config) -> None:
    assert set(config) == set(space.names)
    for p in space.params:
        check_value(p, config[p.name])
    assert space.problems(config) == []


def _loss(space: SearchSpace, config: Config) -> float:
    u = space.to_unit(config)
    return float(np.sum((u - 0.3) ** 2))


def _drive(opt: Optimizer, total: int, batch: int) -> list[Config]:
    """Ask in batches, mark and tell every batch (a cheap objective), return all proposals."""
    out: list[Config] = []
    while len(out) < total:
        configs = opt.ask(min(batch, total - len(out)))
        assert configs
        opt.mark_proposed(configs)
        opt.tell([Observation(c, _loss(opt.space, c)) for c in configs])
        out.extend(configs)
    return out


# --- legality of decoded values -----------------------------------------------------------


def test_mixed_space_basics() -> None:
    assert MIXED.size is None  # continuous params
    assert MIXED["f_step"].size == 50
    assert MIXED["f_step"].values()[-1] == pytest.approx(0.099)
    assert MIXED["i_step"].size == 16
    assert MIXED["i_pow"].values() == [2**k for k in range(9)]
    expected = [1e-4, 10**-3.5, 1e-3, 10**-2.5, 1e-2, 10**-1.5, 1e-1]
    assert MIXED["f_pow_step"].values() == pytest.approx(expected, rel=1e-9)


def test_uniform_unit_vectors_decode_to_legal_values() -> None:
    rng = np.random.default_rng(1)
    U = rng.random((10_000, len(MIXED)))
    U[0] = 0.0
    U[1] = 1.0
    U[2] = 1.0 - 1e-16
    for u in U:
        check_config(MIXED, MIXED.from_unit(u))


def test_random_search_proposals_are_legal() -> None:
    opt = RandomSearch(MIXED, RandomSettings(), seed=3)
    configs = _drive(opt, 10_000, 500)
    for c in configs:
        check_config(MIXED, c)
    assert len({c["f_plain"] for c in configs}) == 10_000


def test_tpe_proposals_are_legal() -> None:
    configs: list[Config] = []
    for seed in range(40):  # fresh searchers keep the histories (and the run time) small
        opt = TPE(MIXED, TPESettings(warm_up=10), seed=seed)
        configs += _drive(opt, 250, 50)
    assert len(configs) == 10_000
    for c in configs:
        check_config(MIXED, c)
    # the model-based part covers every value of the small discrete dims
    assert {c["c_str"] for c in configs} == {"adam", "sgd", "rmsprop"}
    assert {c["i_pow"] for c in configs} == {2**k for k in range(9)}


def test_bayesian_proposals_are_legal() -> None:
    opt = Bayesian(MIXED, BayesianSettings(init_points=5, cube_size=300), seed=0)
    configs = _drive(opt, 30, 5)
    for c in configs:
        check_config(MIXED, c)


# --- encoding round trips -----------------------------------------------------------------


def _same(p: NumericParam | CategoricalParam, a: object, b: object) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and isinstance(p, NumericParam) and p.size is None:
        return math.isclose(a, b, rel_tol=1e-9)  # type: ignore[arg-type]
    return a == b


def test_to_unit_from_unit_round_trip() -> None:
    rng = np.random.default_rng(2)
    for u in rng.random((2_000, len(MIXED))):
        config = MIXED.from_unit(u)
        back = MIXED.from_unit(MIXED.to_unit(config))
        for p in MIXED.params:
            assert _same(p, config[p.name], back[p.name]), (p.name, config[p.name], back[p.name])
        v = MIXED.to_unit(config)
        assert np.all(v >= -1e-12) and np.all(v <= 1 + 1e-12)


def test_every_grid_value_round_trips() -> None:
    for p in MIXED.params:
        values = p.values()
        if values is None:
            continue
        for v in values:
            assert p.from_unit(p.to_unit(v)) == v, (p.name, v)
            check_value(p, v)


# --- finite spaces --------------------------------------------------------------------------


SMALL = SearchSpace(
    params=(
        _num("lr", "float", 0.01, 0.05, step=0.02),
        _num("layers", "int", 1, 2),
        CategoricalParam(name="opt", choices=("adam", "sgd")),
        _num("batch", "int", 4, 5, power=2.0),
    )
)


def test_grid_enumeration_and_size() -> None:
    grid = list(SMALL.grid())
    assert SMALL.size == 3 * 2 * 2 * 2 == len(grid)
    assert grid[0] == {"lr": 0.01, "layers": 1, "opt": "adam", "batch": 16}
    assert grid[1] == {"lr": 0.01, "layers": 1, "opt": "adam", "batch": 32}
    assert grid[-1] == {"lr": 0.05, "layers": 2, "opt": "sgd", "batch": 32}
    assert len({tuple(sorted(c.items())) for c in grid}) == len(grid)
    for c in grid:
        check_config(SMALL, c)
        assert SMALL.from_unit(SMALL.to_unit(c)) == c


def test_grid_of_continuous_space_is_an_error() -> None:
    with pytest.raises(ValueError):
        next(MIXED.grid())


def test_int_log_param_size_and_values() -> None:
    p = _num("units", "int", 16, 256, log=True)
    assert p.size == 241
    seen: Sequence[object] = {p.from_unit(u) for u in np.linspace(0, 1, 2001)}
    assert min(seen) == 16 and max(seen) == 256  # type: ignore[type-var]
