"""Test problems for the searcher benchmarks (quality.py, suggest.py): objective, space, optimum.

- branin:    2-D continuous, f* = 0.397887 (reference/benchmarks.md §1).
- hartmann6: 6-D continuous on [0, 1]^6, f* = -3.32237.
- mixed:     a synthetic training-like problem with log floats, a log int, a stepped int and two
             categoricals that interact (the best learning rate depends on the optimizer, the
             best width on the depth); f* = 0 by construction at lr = 10^-3 (adam), width 128,
             depth 4, dropout 0.3, act relu.
- digits:    a real training task: the final validation error of sklearn's MLP on load_digits for
             the 240 configurations of scripts/bench/data/digits_curves.json
             (make_digits_curves.py). A proposal scores the error of the table row with the same
             activation that is nearest in the unit encoding of the 4 numeric parameters
             (a nearest-neighbour surrogate); f* is the table's best error.

Pure functions of a configuration; the digits table is read once per process.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from app.space import CategoricalParam, Config, NumericParam, SearchSpace

TABLE = Path(__file__).resolve().parent / "data" / "digits_curves.json"


@dataclass(frozen=True)
class Problem:
    fn: Callable[[Config], float]
    space: SearchSpace
    optimum: float


def branin(c: Config) -> float:
    x1, x2 = float(c["x1"]), float(c["x2"])
    a, b, cc, r, s, t = 1.0, 5.1 / (4 * np.pi**2), 5 / np.pi, 6.0, 10.0, 1 / (8 * np.pi)
    return float(a * (x2 - b * x1**2 + cc * x1 - r) ** 2 + s * (1 - t) * np.cos(x1) + s)


H6_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
H6_A = np.array(
    [
        [10, 3, 17, 3.5, 1.7, 8],
        [0.05, 10, 17, 0.1, 8, 14],
        [3, 3.5, 1.7, 10, 17, 8],
        [17, 8, 0.05, 10, 0.1, 14],
    ]
)
H6_OPTIMUM = -3.32237
H6_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)


def hartmann6(c: Config) -> float:
    x = np.array([float(c[f"x{i}"]) for i in range(1, 7)])
    return float(-np.sum(H6_ALPHA * np.exp(-np.sum(H6_A * (x - H6_P) ** 2, axis=1))))


# --- mixed ------------------------------------------------------------------------------------
_LR_TARGET = {"sgd": -1.5, "adam": -3.0, "rmsprop": -2.5}  # log10 of the best lr per optimizer
_OPT_COST = {"sgd": 0.15, "adam": 0.0, "rmsprop": 0.05}
_ACT_COST = {"relu": 0.0, "tanh": 0.1, "sigmoid": 0.4, "elu": 0.03}


def mixed(c: Config) -> float:
    opt, act = str(c["optimizer"]), str(c["activation"])
    lr = math.log10(float(c["lr"]))
    depth = int(c["depth"])
    width = math.log2(int(c["width"]))
    return float(
        (lr - _LR_TARGET[opt]) ** 2 / 2.0
        + 0.5 * (width - 5.0 - 0.5 * depth) ** 2 / 4.0
        + 0.05 * (depth - 4) ** 2
        + 2.0 * (float(c["dropout"]) - 0.3) ** 2
        + _OPT_COST[opt]
        + _ACT_COST[act]
    )


MIXED_SPACE = SearchSpace(
    params=(
        NumericParam(type="float", name="lr", low=1e-5, high=1.0, log=True),
        NumericParam(type="int", name="width", low=8, high=1024, log=True),
        NumericParam(type="int", name="depth", low=1, high=8),
        NumericParam(type="float", name="dropout", low=0.0, high=0.8, step=0.05),
        CategoricalParam(name="optimizer", choices=("sgd", "adam", "rmsprop")),
        CategoricalParam(name="activation", choices=("relu", "tanh", "sigmoid", "elu")),
    )
)


# --- digits -----------------------------------------------------------------------------------
DIGITS_SPACE = SearchSpace(
    params=(
        NumericParam(type="float", name="lr", low=1e-4, high=10**-0.5, log=True),
        NumericParam(type="int", name="hidden", low=16, high=256, log=True),
        NumericParam(type="float", name="alpha", low=1e-6, high=0.1, log=True),
        NumericParam(type="int", name="batch", low=16, high=256, log=True),
        CategoricalParam(name="activation", choices=("relu", "tanh")),
    )
)
_DIGITS_NUMERIC = ("lr", "hidden", "alpha", "batch")


@cache
def _digits_table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unit coordinates of the numeric params (n, 4), activation per row (n,), final error (n,))."""
    doc = json.loads(TABLE.read_text())
    units = np.array(
        [[DIGITS_SPACE[name].to_unit(row[name]) for name in _DIGITS_NUMERIC] for row in doc["configs"]]
    )
    acts = np.array([row["activation"] for row in doc["configs"]])
    final = np.array([curve[-1] for curve in doc["curves"]], dtype=float)
    return units, acts, final


def digits(c: Config) -> float:
    units, acts, final = _digits_table()
    u = np.array([DIGITS_SPACE[name].to_unit(c[name]) for name in _DIGITS_NUMERIC])
    d2 = np.sum((units - u) ** 2, axis=1)
    d2[acts != c["activation"]] = np.inf
    return float(final[int(np.argmin(d2))])


def digits_optimum() -> float:
    return float(_digits_table()[2].min())


PROBLEMS: dict[str, Callable[[], Problem]] = {
    "branin": lambda: Problem(branin, _floats([(-5.0, 10.0), (0.0, 15.0)]), 0.397887),
    "hartmann6": lambda: Problem(hartmann6, _floats([(0.0, 1.0)] * 6), H6_OPTIMUM),
    "mixed": lambda: Problem(mixed, MIXED_SPACE, 0.0),
    "digits": lambda: Problem(digits, DIGITS_SPACE, digits_optimum()),
}


def _floats(bounds: Sequence[tuple[float, float]]) -> SearchSpace:
    return SearchSpace(
        params=tuple(
            NumericParam(type="float", name=f"x{i}", low=lo, high=hi) for i, (lo, hi) in enumerate(bounds, 1)
        )
    )


@cache
def problem(name: str) -> Problem:
    return PROBLEMS[name]()
