"""Typed settings of the built-in searchers, parsed from WMLA `algoParams` (string values).

Pure: no numpy, no scikit-optimize, so the spec layer can validate a payload cheaply (Hyperband's
bracket arithmetic, `hyperband_math`, is pure too). Defaults are ours, chosen with
`scripts/bench/quality.py` (WMLA's own defaults are listed beside them).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict

from app.optimizers.hyperband_math import MAX_BRACKETS, max_bracket

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
    "ResourceName": "resource_name",
    "ResourceValue": "resource_value",
    "eta": "eta",
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
    # Seconds per suggestion for the GP's kernel-hyperparameter search (not a WMLA parameter);
    # past it the best hyperparameters found so far are used. 0: no limit.
    fit_budget_s: float = 0.5


class HyperbandSettings(BaseModel):
    """Hyperband: `resource_name` is the config.json key that carries each trial's budget (1..R),
    `resource_value` is R, `eta` the reduction factor (algoParams `eta`, else WMLA `hyperbandEta`)."""

    model_config = ConfigDict(frozen=True)
    seed: int | None = None
    resource_name: str
    resource_value: int
    eta: float = 3.0  # WMLA default 3


INT_MAX = 2**31 - 1
KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")
KEY_RULE = "1-128 letters, digits, '_', '.' or '-', starting with a letter or '_'"
# Settings without a default, reported by their WMLA name when absent.
REQUIRED: dict[str, tuple[str, ...]] = {"hyperband": ("resource_name", "resource_value")}
REQUIRED_FOR = {"hyperband": "Hyperband"}


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


def _key(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    if not KEY_RE.fullmatch(text):
        raise ValueError(f"must be a plain key ({KEY_RULE}), got {text!r}")
    return text


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


def _check_resource_value(v: int, m: int | None) -> None:
    _check(v >= 1, f"must be an integer >= 1, got {v}")
    _check(v <= INT_MAX, f"must be at most {INT_MAX}, got {v}")


def _check_eta(v: float, m: int | None) -> None:
    _check(math.isfinite(v) and v > 1, "must be greater than 1")


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
    "fit_budget_s": (
        _float,
        lambda v, m: _check(math.isfinite(v) and 0 <= v <= 3600, "must be in [0, 3600]"),
    ),
    "resource_name": (_key, lambda v, m: None),
    "resource_value": (_int, _check_resource_value),
    "eta": (_float, _check_eta),
}

SETTINGS_CLASSES: dict[str, type[BaseModel]] = {
    "random": RandomSettings,
    "grid": GridSettings,
    "tpe": TPESettings,
    "bayesian": BayesianSettings,
    "hyperband": HyperbandSettings,
}


_LOWERED = {k.lower(): v for k, v in WMLA_PARAM_NAMES.items()}


def setting_field(name: str) -> str | None:
    """The settings field an algoParams name sets: WMLA names (case-insensitive) or field names."""
    return WMLA_PARAM_NAMES.get(name) or _LOWERED.get(name.lower()) or (name if name in _FIELDS else None)


def parse_settings(
    algorithm: str, params: dict[str, str], max_trials: int | None = None, *, eta: float | None = None
) -> tuple[BaseModel | None, list[tuple[str, str]], list[str]]:
    """Parse WMLA-named string params for a built-in algorithm.

    Returns (settings or None when there were problems, problems as (param name, message),
    names of params this algorithm does not use (to warn about)). `eta` is WMLA's top-level
    `hyperbandEta`: Hyperband uses it when the algoParams have no `eta` (algoParams win); its
    problems are named "hyperbandEta". A missing required setting is named by its WMLA name
    ("ResourceName", "required for Hyperband").
    """
    cls = SETTINGS_CLASSES.get(algorithm)
    if cls is None:
        return None, [], []
    values: dict[str, Any] = {}
    given: dict[str, str] = {}  # field -> the param name it was given as
    problems: list[tuple[str, str]] = []
    unused: list[str] = []
    for name, text in params.items():
        field = setting_field(name)
        if field is None or field not in cls.model_fields:
            unused.append(name)
            continue
        given[field] = name
        parse, validate = _FIELDS[field]
        try:
            value = parse(str(text))
            validate(value, max_trials)
        except ValueError as exc:
            problems.append((name, str(exc)))
            continue
        values[field] = value
    if "eta" in cls.model_fields and "eta" not in given and eta is not None:
        try:
            _check_eta(float(eta), max_trials)
            values["eta"] = float(eta)
        except ValueError as exc:
            problems.append(("hyperbandEta", str(exc)))
    for field in REQUIRED.get(algorithm, ()):
        if field not in given:
            problems.append((NATIVE_TO_WMLA[field], f"required for {REQUIRED_FOR[algorithm]}"))
    if not problems and cls is HyperbandSettings:
        problems.extend(_hyperband_problems(values, given))
    if problems:
        return None, problems, unused
    return cls(**values), [], unused


def _hyperband_problems(values: dict[str, Any], given: dict[str, str]) -> list[tuple[str, str]]:
    """R and eta together must give a sane number of brackets (eta close to 1 gives thousands)."""
    eta = values.get("eta", HyperbandSettings.model_fields["eta"].default)
    try:
        max_bracket(values["resource_value"], eta)
    except ValueError:
        name = given.get("eta", given["resource_value"])
        return [
            (
                name,
                f"eta {eta:g} with ResourceValue {values['resource_value']} gives more than "
                f"{MAX_BRACKETS} brackets; raise eta or lower ResourceValue",
            )
        ]
    return []
