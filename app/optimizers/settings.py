"""Typed settings of the built-in searchers, parsed from WMLA `algoParams` (string values).

Pure: no numpy, no scikit-optimize, so the spec layer can validate a payload cheaply. Defaults
are ours, chosen with `scripts/bench/quality.py` (WMLA's own defaults are listed beside them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict

# WMLA algoParams name -> our field name. Native specs use the field names directly.
WMLA_PARAM_NAMES: dict[str, str] = {
    "RandomSeed": "seed",
    "WarmUp": "warm_up",
    "EICandidate": "ei_candidates",
    "GoodRatio": "good_ratio",
    "GoodMax": "good_max",
    "InitPoints": "init_points",
    "CubeSize": "cube_size",
    "Noiseless": "noiseless",
}
NATIVE_TO_WMLA = {v: k for k, v in WMLA_PARAM_NAMES.items()}


class RandomSettings(BaseModel):
    model_config = ConfigDict(frozen=True)
    seed: int | None = None


class GridSettings(BaseModel):
    model_config = ConfigDict(frozen=True)
    seed: int | None = None


class TPESettings(BaseModel):
    model_config = ConfigDict(frozen=True)
    seed: int | None = None
    warm_up: int = 10  # WMLA default 20
    ei_candidates: int = 24  # WMLA default 24
    good_ratio: float = 0.2  # WMLA default 0.25
    good_max: int = 25  # WMLA default 25


class BayesianSettings(BaseModel):
    model_config = ConfigDict(frozen=True)
    seed: int | None = None
    init_points: int = 10  # WMLA default 10
    noiseless: bool = False  # WMLA default true
    cube_size: int | None = None  # candidate points for the acquisition; WMLA: maxJobNum*100


def _int(text: str) -> int:
    try:
        f = float(text)
    except ValueError:
        raise ValueError(f"must be an integer, got {text!r}") from None
    if f != int(f):
        raise ValueError(f"must be an integer, got {text!r}")
    return int(f)


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"must be a number, got {text!r}") from None


def _bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("true", "1", "yes"):
        return True
    if low in ("false", "0", "no"):
        return False
    raise ValueError(f"must be true or false, got {text!r}")


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


# field -> (parser, validator(value, max_trials))
_FIELDS: dict[str, tuple[Callable[[str], Any], Callable[[Any, int | None], None]]] = {
    "seed": (_int, lambda v, m: _check(0 <= v < 2**31, "must be in [0, 2**31)")),
    "warm_up": (_int, lambda v, m: _check(2 < v < 2**31, "must be greater than 2")),
    "ei_candidates": (_int, lambda v, m: _check(1 < v <= 100_000, "must be in (1, 100000]")),
    "good_ratio": (_float, lambda v, m: _check(0 < v <= 1, "must be in (0, 1]")),
    "good_max": (_int, lambda v, m: _check(1 < v < 2**31, "must be greater than 1")),
    "init_points": (_int, lambda v, m: _check(1 <= v < 2**31, "must be at least 1")),
    "noiseless": (_bool, lambda v, m: None),
    "cube_size": (
        _int,
        lambda v, m: _check(
            v >= max(m or 1, 1), f"must be at least maxJobNum ({m})" if m else "must be >= 1"
        ),
    ),
}

SETTINGS_CLASSES: dict[str, type[BaseModel]] = {
    "random": RandomSettings,
    "grid": GridSettings,
    "tpe": TPESettings,
    "bayesian": BayesianSettings,
}


def parse_settings(
    algorithm: str, params: dict[str, str], max_trials: int | None = None
) -> tuple[BaseModel | None, list[tuple[str, str]], list[str]]:
    """Parse WMLA-named string params for a built-in algorithm.

    Returns (settings or None when there were problems, problems as (param name, message),
    names of params this algorithm does not use (to warn about)).
    """
    cls = SETTINGS_CLASSES.get(algorithm)
    if cls is None:
        return None, [], []
    lowered = {k.lower(): v for k, v in WMLA_PARAM_NAMES.items()}
    values: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    unused: list[str] = []
    for name, text in params.items():
        field = WMLA_PARAM_NAMES.get(name) or lowered.get(name.lower()) or (name if name in _FIELDS else None)
        if field is None or field not in cls.model_fields:
            unused.append(name)
            continue
        parse, validate = _FIELDS[field]
        try:
            value = parse(str(text))
            validate(value, max_trials)
        except ValueError as exc:
            problems.append((name, str(exc)))
            continue
        values[field] = value
    if problems:
        return None, problems, unused
    return cls(**values), [], unused
