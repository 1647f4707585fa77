"""A WMLA search plugin behind the Optimizer interface.

`ask(n)` calls the plugin's `search(n, last_exp_results)` in its host process, passing the trials
that ended since the previous call (see plugins/core/base_plugin_opt.py for their shape), then
checks the answer against the space: a list of at most n dicts naming exactly the space's
hyperparameters with legal values, snapped to their grid. Anything else fails the experiment with
the reason. The plugin's `get_state()` is saved with the experiment once the proposals are
recorded; a coordinator that rebuilds the plugin calls `set_state` and does not hand it results
it already had. A plugin without state gets every past result again instead.

Unlike the built-in searchers, ask() has effects (the plugin's own history moves on), so the
coordinator runs it in a thread and records what it returns.
"""

from __future__ import annotations

import math
import pickle
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from app.codepack import unpack
from app.optimizers.base import Observation, Optimizer
from app.plugins.process import HostProcess, PluginError
from app.space import CategoricalParam, Config, SearchSpace

FAILED_METRIC = 9999.99  # what WMLA reports for a failed trial


class PluginSearch(Optimizer):
    name = "plugin"
    in_thread = True

    def __init__(
        self,
        space: SearchSpace,
        settings: BaseModel,
        *,
        seed: int,
        max_trials: int | None = None,
        experiments: Sequence[Config] = (),
        plugin_name: str,
        archive: bytes,
        hyper_parameters: list[dict[str, Any]],
        params: dict[str, str],
        direction: str,
        saved: bytes | None,
        persist: Callable[[bytes], None],
        timeout_s: float,
        memory_mb: int,
        log_path: Path,
        secrets: list[str],
    ) -> None:
        super().__init__(space, settings, seed=seed, max_trials=max_trials, experiments=experiments)
        self.plugin_name = plugin_name
        self.archive = archive
        self.hyper_parameters = hyper_parameters
        self.params = params
        self.direction = direction
        self.persist = persist
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.log_path = log_path
        self.secrets = secrets
        saved_state = pickle.loads(saved) if saved else {}
        self.plugin_state: str | None = saved_state.get("plugin")
        self.fed: set[int] = set(saved_state.get("fed", [])) if self.plugin_state else set()
        self._pending: tuple[str | None, set[int]] | None = None
        self._host: HostProcess | None = None
        self._folder: Path | None = None

    # --- the host ----------------------------------------------------------------------
    def _start(self) -> HostProcess:
        if self._host is not None and self._host.proc.poll() is None:
            return self._host
        self.close()
        self._folder = Path(tempfile.mkdtemp(prefix="hpo-plugin-"))
        unpack(self.archive, f"{self.plugin_name}.tar", self._folder)
        entries = list(self._folder.iterdir())
        folder = entries[0] if len(entries) == 1 and entries[0].is_dir() else self._folder
        if not (folder / "optimizer.py").is_file():
            raise PluginError(f"plugin {self.plugin_name!r} has no optimizer.py")
        host = HostProcess(folder, memory_mb=self.memory_mb, log_path=self.log_path, secrets=self.secrets)
        self._host = host
        host.call({"op": "init", "name": self.plugin_name, "hyper_parameters": self.hyper_parameters,
                   "kwargs": self.params}, self.timeout_s)  # fmt: skip
        if self.plugin_state:
            host.call({"op": "set_state", "state": self.plugin_state}, self.timeout_s)
        return host

    def close(self) -> None:
        if self._host is not None:
            self._host.close()
            self._host = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    # --- the interface -------------------------------------------------------------------
    def _result(self, o: Observation) -> dict[str, Any]:
        ok = o.state in ("FINISHED", "EARLY_STOPPED") and o.value is not None
        return {
            "id": o.trial,
            "hyperParameters": dict(o.config),
            "metricVal": o.value if ok else FAILED_METRIC,
            "state": o.state or "FAILED",
            "objective": self.direction,
        }

    def ask(self, n: int, running: Sequence[Config] = ()) -> list[Config]:
        last = [
            o
            for o in self.history
            if o.trial is not None and o.trial not in self.fed and o.state != "CANCELLED"
        ]
        host = self._start()
        reply = host.call({"op": "search", "n": n, "last": [self._result(o) for o in last]}, self.timeout_s)
        configs = self._check(reply.get("result"), n)
        self.fed |= {o.trial for o in last if o.trial is not None}
        self._pending = (reply.get("state"), set(self.fed))
        return configs

    def mark_proposed(self, configs: Sequence[Config]) -> None:
        super().mark_proposed(configs)
        if self._pending is not None:  # recorded: now the plugin's state may be kept
            state, fed = self._pending
            self._pending = None
            self.plugin_state = state
            if state is not None:
                self.persist(pickle.dumps({"plugin": state, "fed": sorted(fed)}))

    # --- checking what the plugin says ---------------------------------------------------------
    def _check(self, result: Any, n: int) -> list[Config]:
        who = f"plugin {self.plugin_name!r}"
        if not isinstance(result, list):
            raise PluginError(f"{who}: search() must return a list of dicts, got {type(result).__name__}")
        if len(result) > n:
            raise PluginError(
                f"{who}: search() returned {len(result)} configurations, at most {n} were asked for"
            )
        return [self._config(item, i, who) for i, item in enumerate(result)]

    def _config(self, item: Any, i: int, who: str) -> Config:
        if not isinstance(item, dict):
            raise PluginError(f"{who}: configuration {i} is a {type(item).__name__}, not a dict")
        names = set(self.space.names)
        unknown, missing = sorted(set(map(str, item)) - names), sorted(names - set(map(str, item)))
        if unknown or missing:
            detail = "; ".join(
                filter(None, [unknown and f"unknown {unknown}", missing and f"missing {missing}"])
            )
            raise PluginError(f"{who}: configuration {i} does not match the hyperparameters: {detail}")
        config: Config = {}
        for p in self.space.params:
            value = item[p.name]
            if isinstance(p, CategoricalParam):
                if not p.contains(value):
                    raise PluginError(
                        f"{who}: configuration {i}: {p.name}={value!r} is not one of {list(p.choices)}"
                    )
                config[p.name] = p.choices[p.index(value)]
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise PluginError(f"{who}: configuration {i}: {p.name}={value!r} is not a number")
            if not p.in_range(float(value)):
                raise PluginError(f"{who}: configuration {i}: {p.name}={value!r} is outside its range")
            config[p.name] = p.snap(float(value))  # onto the int/step/power grid
        return config


def space_as_wmla(space: SearchSpace) -> list[dict[str, Any]]:
    """A native search space as WMLA `hyperParams` (what plugins are given)."""
    out: list[dict[str, Any]] = []
    for p in space.params:
        if isinstance(p, CategoricalParam):
            key = {"double": "discreteDbVal", "int": "discreteIntVal", "str": "discreateStrVal"}[p.value_type]
            data_type = {"double": "DOUBLE", "int": "INT", "str": "STR"}[p.value_type]
            out.append({"name": p.name, "type": "Discrete", "dataType": data_type, key: list(p.choices)})
            continue
        bounds = ("minIntVal", "maxIntVal") if p.integer else ("minDbVal", "maxDbVal")
        data_type = "INT" if p.integer else "DOUBLE"
        entry: dict[str, Any] = {"name": p.name, "type": "Range", "dataType": data_type}
        entry[bounds[0]], entry[bounds[1]] = p.low, p.high
        if p.step is not None:
            entry["step"] = str(p.step)
        if p.power is not None:
            entry["power"] = str(p.power)
        out.append(entry)
    return out
