"""Optuna samplers as the benchmarks' peer, behind our optimizer interface (one live study).

Unlike `app.plugins.optuna_search` (which rebuilds a study per ask so the searcher pickles), the
peer keeps one in-memory study for the whole run and uses Optuna the way its users do: `ask()` is
`study.ask()` with Optuna's native distributions (log floats, stepped / log ints, categoricals),
`tell()` is `study.tell()`. Sampler defaults are the library's; only the seed is set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from app.optimizers.base import Observation, Optimizer
from app.space import CategoricalParam, Config, NumericParam, SearchSpace, config_key

SAMPLERS = {"optuna-random": "RandomSampler", "optuna-tpe": "TPESampler", "optuna-gp": "GPSampler"}


def distributions(space: SearchSpace) -> dict[str, Any]:
    """Optuna's native distribution for each parameter of `space`."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out: dict[str, Any] = {}
    for p in space.params:
        if isinstance(p, CategoricalParam):
            out[p.name] = CategoricalDistribution(list(p.choices))
            continue
        assert isinstance(p, NumericParam) and p.power is None
        if p.integer:
            step = 1 if p.log else int(p.step or 1)
            out[p.name] = IntDistribution(int(p.low), int(p.high), log=p.log, step=step)
        else:
            out[p.name] = FloatDistribution(p.low, p.high, log=p.log, step=None if p.log else p.step)
    return out


def make_sampler(name: str, seed: int) -> Any:
    import optuna

    return getattr(optuna.samplers, SAMPLERS[name])(seed=seed)


class OptunaPeer(Optimizer):
    """`name` is one of SAMPLERS; ask() returns Optuna's proposals, tell() reports their losses."""

    def __init__(
        self, space: SearchSpace, settings: BaseModel, *, seed: int, sampler: str, **kw: Any
    ) -> None:
        import optuna

        super().__init__(space, settings, seed=seed, **kw)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.name = sampler  # type: ignore[misc]
        self.study = optuna.create_study(sampler=make_sampler(sampler, seed), direction="minimize")
        self.dists = distributions(space)
        self.pending: dict[tuple, list[Any]] = {}

    def ask(self, n: int, running: Sequence[Config] = ()) -> list[Config]:
        out: list[Config] = []
        for _ in range(n):
            trial = self.study.ask(self.dists)
            config = dict(trial.params)
            self.pending.setdefault(config_key(config), []).append(trial)
            out.append(config)
        return out

    def tell(self, observations: Sequence[Observation]) -> None:
        super().tell(observations)
        for o in observations:
            trial = self.pending[config_key(o.config)].pop()
            self.study.tell(trial, o.loss)
