"""Any Optuna sampler as an algorithm: `optuna:CmaEsSampler`, `optuna:TPESampler`, `optuna:GPSampler`...

algoParams become the sampler's keyword arguments (values parsed as JSON when they can be, so
"10" is 10 and "true" is True; `RandomSeed` is `seed`). The sampler works in our unit encoding
(a FloatDistribution(0, 1) per numeric parameter, a CategoricalDistribution per categorical one),
so its proposals decode exactly like ours. Each ask rebuilds an in-memory study from the history
(finished trials with their losses, running ones as RUNNING), as Optuna's samplers expect from
storage, so nothing live is kept between calls: it pickles, runs in the optimizer process pool,
and a restarted coordinator continues from SQL. Optuna is an optional extra (`pip install optuna`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from app.optimizers.base import Optimizer
from app.optimizers.settings import RandomSettings
from app.space import CategoricalParam, Config, config_key
from app.spec.model import ExperimentSpec


def _kwarg(value: str) -> Any:
    try:
        return json.loads(value)
    except (json.JSONDecodeError, TypeError):
        return value


class OptunaSearch(Optimizer):
    name = "optuna"
    blocking = True  # some samplers (GP) take seconds: run off the coordinator loop

    def __init__(self, *args: Any, sampler: str, kwargs: dict[str, Any], **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.sampler_name = sampler
        self.sampler_kwargs = kwargs

    @classmethod
    def for_spec(cls, spec: ExperimentSpec, seed: int) -> OptunaSearch:
        kwargs = {k: _kwarg(v) for k, v in spec.algorithm.params.items() if k != "RandomSeed"}
        settings: BaseModel = RandomSettings()
        search = cls(spec.space, settings, seed=seed, max_trials=spec.limits.max_trials,
                     sampler=spec.algorithm.name.split(":", 1)[1], kwargs=kwargs)  # fmt: skip
        search._sampler_class()  # fail at start, with the reason, on an unknown sampler or no Optuna
        return search

    def _sampler_class(self) -> Any:
        try:
            import optuna
        except ImportError:
            raise ValueError("algorithm optuna:* needs Optuna: pip install optuna") from None
        cls = getattr(optuna.samplers, self.sampler_name, None)
        if not isinstance(cls, type) or not issubclass(cls, optuna.samplers.BaseSampler):
            raise ValueError(f"optuna.samplers has no sampler {self.sampler_name!r}")
        return cls

    def _distributions(self) -> dict[str, Any]:
        from optuna.distributions import CategoricalDistribution, FloatDistribution

        return {
            p.name: CategoricalDistribution(list(range(p.size)))
            if isinstance(p, CategoricalParam)
            else FloatDistribution(0.0, 1.0)
            for p in self.space.params
        }

    def _encode(self, config: Config) -> dict[str, Any]:
        return {
            p.name: p.index(config[p.name])
            if isinstance(p, CategoricalParam)
            else float(p.to_unit(config[p.name]))
            for p in self.space.params
        }

    def ask(self, n: int, running: Sequence[Config] = ()) -> list[Config]:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        k = len(self.proposed)
        kwargs = dict(self.sampler_kwargs)
        kwargs.setdefault("seed", int(self.rng_for(k).integers(2**31)))
        sampler = self._sampler_class()(**kwargs)
        study = optuna.create_study(sampler=sampler, direction="minimize")
        dists = self._distributions()
        for o in self.history:
            state = optuna.trial.TrialState.COMPLETE if o.loss is not None else optuna.trial.TrialState.FAIL
            study.add_trial(optuna.trial.create_trial(params=self._encode(o.config), distributions=dists,
                                                      value=o.loss, state=state))  # fmt: skip
        taken = {config_key(c) for c in running}
        for config in running:
            study.add_trial(optuna.trial.create_trial(params=self._encode(config), distributions=dists,
                                                      state=optuna.trial.TrialState.RUNNING))  # fmt: skip
        out: list[Config] = []
        for _ in range(n):
            if self.all_taken(taken):
                break
            trial = study.ask(dists)
            config = {
                p.name: p.choices[int(trial.params[p.name])] if isinstance(p, CategoricalParam)
                else p.from_unit(float(trial.params[p.name]))
                for p in self.space.params
            }  # fmt: skip
            taken.add(config_key(config))
            out.append(config)
        return out
