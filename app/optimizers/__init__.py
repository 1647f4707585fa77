"""Searchers behind one interface (`base.Optimizer`), looked up by canonical algorithm name.

Modules are imported on first use: scikit-optimize costs a second to import and only the
Bayesian searcher needs it.
"""

from __future__ import annotations

import importlib

from app.optimizers.base import Observation, Optimizer
from app.optimizers.settings import RandomSettings, parse_settings
from app.spec.model import ExperimentSpec

_REGISTRY: dict[str, str] = {
    "random": "app.optimizers.random_search:RandomSearch",
    "tpe": "app.optimizers.tpe:TPE",
    "bayesian": "app.optimizers.bayesian:Bayesian",
    "grid": "app.optimizers.grid:GridSearch",
    "hyperband": "app.optimizers.hyperband:Hyperband",
}

__all__ = ["Observation", "Optimizer", "available", "create_optimizer", "optimizer_class", "register"]


def register(name: str, target: str) -> None:
    """Make `name` resolve to "module:Class" (used by plugins and tests)."""
    _REGISTRY[name] = target


def available() -> list[str]:
    return list(_REGISTRY)


def optimizer_class(name: str) -> type[Optimizer]:
    try:
        module, attr = _REGISTRY[name].split(":")
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r}; available: {', '.join(available())}") from None
    return getattr(importlib.import_module(module), attr)


def create_optimizer(spec: ExperimentSpec, seed: int) -> Optimizer:
    """A fresh optimizer for `spec`; settings were validated when the spec was parsed."""
    cls = optimizer_class(spec.algorithm.name)
    settings, problems, _ = parse_settings(
        spec.algorithm.name, spec.algorithm.params, spec.limits.max_trials, eta=spec.algorithm.eta
    )
    if problems:
        raise ValueError(f"invalid algoParams: {problems}")
    return cls(
        spec.space,
        settings or RandomSettings(),
        seed=seed,
        max_trials=spec.limits.max_trials,
        experiments=spec.experiments,
    )
