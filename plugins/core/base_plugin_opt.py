"""`BasePluginOptimizer`, the base class of WMLA search plugins (reference/wmla-hpo.md §4.1).

A plugin's `optimizer.py` defines `class PluginOptimizer(BasePluginOptimizer)` with:
- `__init__(self, name, hyper_parameters, **kwargs)`: `name` is the algorithm name, and
  `hyper_parameters` the experiment's `hyperParams` exactly as submitted (list of dicts with
  name, type "Range"/"Discrete", dataType, minDbVal, maxDbVal, ..., step, power); `kwargs` are
  the experiment's `algoParams` as {name: value}, values as strings. Call `super().__init__`.
- `search(self, number_samples, last_exp_results)`: return at most `number_samples` dicts
  {hyperparameter name: value}. `last_exp_results` lists the trials that ended since the previous
  call, each {"id": trial number, "hyperParameters": {name: value}, "metricVal": objective value
  as reported (9999.99 when the trial failed, as in WMLA), "state": "FINISHED" | "FAILED" |
  "EARLY_STOPPED", "objective": "minimize" | "maximize"}. Returning [] says the plugin is exhausted.
- optionally `get_state()` -> any picklable value, and `set_state(state)`: the state is saved after
  every call and handed back when a restarted coordinator rebuilds the plugin.
"""

from __future__ import annotations

from typing import Any


class BasePluginOptimizer:
    def __init__(self, name: str, hyper_parameters: list[dict[str, Any]], **kwargs: Any) -> None:
        self.name = name
        self.hyper_parameters = hyper_parameters
        self.kwargs = kwargs

    def search(self, number_samples: int, last_exp_results: list[dict[str, Any]]) -> list[dict[str, Any]]:
        raise NotImplementedError("a plugin must implement search(number_samples, last_exp_results)")

    def get_state(self) -> Any:
        return None

    def set_state(self, state_dict: Any) -> None:
        return None
