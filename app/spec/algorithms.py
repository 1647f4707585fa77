"""Algorithm names and settings checks shared by both spec forms.

Built-in names are matched case-insensitively (`ExperimentGridSearch` -> `grid`). Installed
plugins are known inside `installed_plugins(names)` (the API wraps parsing in it); `optuna:<Sampler>`
names an Optuna sampler. Their `algoParams` are passed through unchecked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from app.optimizers.settings import SETTINGS_CLASSES, parse_settings, setting_field
from app.spec.errors import Problem
from app.spec.model import ALGORITHM_DISPLAY

# lower-case spelling -> canonical name
ALGORITHM_ALIASES: dict[str, str] = {
    "random": "random",
    "tpe": "tpe",
    "bayesian": "bayesian",
    "experimentgridsearch": "grid",
    "grid": "grid",
    "hyperband": "hyperband",
}

# Installed plugins, as the caller knows them (the API sets this from the database around parsing).
INSTALLED: ContextVar[frozenset[str]] = ContextVar("installed_plugins", default=frozenset())
OPTUNA_RE = re.compile(r"^optuna:[A-Za-z_][A-Za-z0-9_]*$")


@contextmanager
def installed_plugins(names: Iterable[str]) -> Iterator[None]:
    token = INSTALLED.set(frozenset(names))
    try:
        yield
    finally:
        INSTALLED.reset(token)


def canonical_algorithm(name: str) -> str | None:
    """The canonical name of a built-in or installed algorithm, None when unknown.
    `optuna:<Sampler>` names an Optuna sampler (checked when the experiment starts)."""
    key = name.strip().lower()
    if key in ALGORITHM_ALIASES:
        return ALGORITHM_ALIASES[key]
    if OPTUNA_RE.match(name.strip()):
        return name.strip()
    for extra in INSTALLED.get():
        if extra.lower() == key:
            return extra
    return None


def unknown_algorithm(name: str) -> str:
    builtin = "Random, TPE, Bayesian, Hyperband, ExperimentGridSearch, optuna:<Sampler>"
    installed = INSTALLED.get()
    extra = f"; installed plugins: {', '.join(sorted(installed))}" if installed else ""
    return f"unknown algorithm {name!r}; built-in: {builtin}{extra}"


def display(algorithm: str) -> str:
    return ALGORITHM_DISPLAY.get(algorithm, algorithm)


def check_params(
    algorithm: str,
    params: dict[str, str],
    max_trials: int | None,
    locate: Callable[[str], str],
    problems: list[Problem],
    warnings: list[str],
    label: Callable[[str], str] | None = None,
    *,
    eta: float | None = None,
    missing: Callable[[str, str], Problem] | None = None,
) -> None:
    """Validate the settings of a built-in searcher; `locate(name)` gives a param's problem path,
    `label(name)` how a warning names it (default: the same path). `eta` is WMLA's hyperbandEta
    (Hyperband uses it when the params have no eta); `missing(name, message)` makes the problem
    for a required setting that was not given, or for a bad `eta` ("hyperbandEta").

    Unused params become warnings (IBM's own payloads carry leftovers). Plugin params are not
    checked here.
    """
    if algorithm not in SETTINGS_CLASSES:
        return
    _, bad, unused = parse_settings(algorithm, params, max_trials, eta=eta)
    for name, message in bad:
        if name not in params and missing is not None:
            problems.append(missing(name, message))
        else:
            problems.append(Problem(locate(name), message))
    for name in unused:
        warnings.append(f"ignored {(label or locate)(name)}: not used by {display(algorithm)}")


def resource_param(algorithm: str, params: dict[str, str]) -> tuple[str, str] | None:
    """Hyperband's budget key as (the params entry that names it, the key), None otherwise."""
    if algorithm != "hyperband":
        return None
    for name, value in params.items():
        if setting_field(name) == "resource_name":
            return name, value
    return None


def resource_conflict(value: str, hyper_params: str) -> str:
    """The problem when Hyperband's budget key is also a searched parameter."""
    return (
        f"{value!r} is also a {hyper_params} name; Hyperband sets it to each trial's budget, "
        "so it cannot be searched too"
    )
