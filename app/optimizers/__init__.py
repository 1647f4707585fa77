"""Searchers behind one interface (`base.Optimizer`), looked up by canonical algorithm name.

Modules are imported on first use: scikit-optimize costs a second to import and only the
Bayesian searcher needs it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

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

__all__ = [
    "Observation",
    "Optimizer",
    "OptimizerContext",
    "available",
    "create_optimizer",
    "optimizer_class",
    "register",
]


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


@dataclass
class OptimizerContext:
    """What user algorithms need beyond the spec; the coordinator provides it."""

    plugin_archive: Callable[[str], bytes | None]
    saved_state: bytes | None = None
    persist: Callable[[bytes], None] = lambda blob: None
    timeout_s: float = 60.0
    memory_mb: int = 2048
    log_path: Path = Path("plugin.log")
    secrets: list[str] = field(default_factory=list)


def create_optimizer(spec: ExperimentSpec, seed: int, context: OptimizerContext | None = None) -> Optimizer:
    """A fresh optimizer for `spec`; settings were validated when the spec was parsed.
    Names that are not built in are Optuna samplers (`optuna:...`) or installed WMLA plugins."""
    name = spec.algorithm.name
    if name.startswith("optuna:"):
        from app.plugins.optuna_search import OptunaSearch

        return OptunaSearch.for_spec(spec, seed)
    if name not in _REGISTRY:
        archive = context.plugin_archive(name) if context is not None else None
        if context is None or archive is None:
            raise ValueError(f"no installed plugin named {name!r}")
        from app.plugins.wmla_plugin import PluginSearch, space_as_wmla

        return PluginSearch(
            spec.space,
            RandomSettings(),
            seed=seed,
            max_trials=spec.limits.max_trials,
            plugin_name=name,
            archive=archive,
            hyper_parameters=list(spec.raw.get("hyperParams") or space_as_wmla(spec.space)),
            params=dict(spec.algorithm.params),
            direction=spec.objective.direction,
            saved=context.saved_state,
            persist=context.persist,
            timeout_s=context.timeout_s,
            memory_mb=context.memory_mb,
            log_path=context.log_path,
            secrets=context.secrets,
        )
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
