"""Search space: typed parameters, their unit-cube encoding, sampling and validation.

Every optimizer works in the same encoding: a configuration maps to a point in [0, 1]^d
(`to_unit`) and back (`from_unit`). Decoding applies log scale, integer rounding, `step`
quantisation (value = low + k*step) and WMLA `power` (value = power ** x), so whatever an
optimizer proposes lands exactly on a legal value. Pure logic, no I/O.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

Value = float | int | str
Config = dict[str, Value]


def _tidy(x: float) -> float:
    """Drop float noise such as 0.001 + 48*0.002 = 0.09700000000000002."""
    return float(f"{x:.12g}")


class NumericParam(BaseModel):
    """A float or int parameter on [low, high], optionally log-scaled, stepped or powered.

    With `power` set, `low`/`high`/`step` describe the exponent x and the value is power ** x
    (WMLA's `power`); the optimizers then search the exponent, i.e. the value on a log scale.
    """

    model_config = ConfigDict(frozen=True)

    type: Literal["float", "int"]
    name: str
    low: float
    high: float
    log: bool = False
    step: float | None = None
    power: float | None = None

    # --- structure -------------------------------------------------------------------
    @property
    def integer(self) -> bool:
        return self.type == "int"

    @property
    def grid_step(self) -> float | None:
        """Step of the exponent/value grid, or None when the parameter is continuous."""
        if self.step is not None:
            return self.step
        if self.integer and not self.log:
            return 1.0
        if self.power is not None and self.integer:
            return 1.0
        return None

    @property
    def size(self) -> int | None:
        """Number of distinct values, None when continuous."""
        step = self.grid_step
        if step is not None:
            return math.floor((self.high - self.low) / step + 1e-9) + 1
        if self.integer:  # integer on a log scale
            return int(self.high) - int(self.low) + 1
        return None

    # --- encoding --------------------------------------------------------------------
    def _exponent_from_unit(self, u: float) -> float:
        u = min(max(float(u), 0.0), 1.0)
        step = self.grid_step
        if step is not None and not self.log:
            n = self.size or 1
            k = min(int(u * n), n - 1)
            return _tidy(self.low + k * step)
        if self.log:
            x = math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
            if self.integer:
                return float(min(max(round(x), int(self.low)), int(self.high)))
            return min(max(x, self.low), self.high)
        return self.low + u * (self.high - self.low)

    def from_unit(self, u: float) -> Value:
        x = self._exponent_from_unit(u)
        if self.power is not None:
            value = self.power**x
            return round(value) if self.integer else _tidy(value)
        return round(x) if self.integer else x

    def _exponent_of(self, value: Value) -> float:
        v = float(value)  # type: ignore[arg-type]
        if self.power is None:
            return v
        x = math.log(v) / math.log(self.power)
        step = self.grid_step
        if step is not None:  # undo the float error of log()
            x = self.low + round((x - self.low) / step) * step
        return x

    def to_unit(self, value: Value) -> float:
        x = self._exponent_of(value)
        step = self.grid_step
        if step is not None and not self.log:
            n = self.size or 1
            k = min(max(round((x - self.low) / step), 0), n - 1)
            return (k + 0.5) / n
        if self.log:
            return (math.log(x) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return (x - self.low) / (self.high - self.low)

    # --- checks ----------------------------------------------------------------------
    def in_range(self, value: float) -> bool:
        """Within [low, high] (of the exponent, for power), whatever the grid."""
        if self.power is not None:
            if value <= 0:
                return False
            value = math.log(value) / math.log(self.power)
        tol = 1e-9 * max(1.0, abs(self.low), abs(self.high))
        return self.low - tol <= value <= self.high + tol

    def snap(self, value: float) -> Value:
        """The legal value nearest to an in-range `value` (int rounding, step grid, power)."""
        return self.from_unit(min(max(self.to_unit(value), 0.0), 1.0))

    def contains(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.power is not None and value <= 0:
            return False
        x = self._exponent_of(value) if self.power is None else math.log(value) / math.log(self.power)
        tol = 1e-9 * max(1.0, abs(self.low), abs(self.high))
        if x < self.low - tol or x > self.high + tol:
            return False
        step = self.grid_step
        if step is not None:
            k = (x - self.low) / step
            if abs(k - round(k)) > 1e-6:
                return False
        return True

    def values(self) -> list[Value] | None:
        n = self.size
        if n is None:
            return None
        if self.grid_step is None:  # integer on a log scale: every integer in range
            return list(range(int(self.low), int(self.high) + 1))
        return [self.from_unit((k + 0.5) / n) for k in range(n)]


class CategoricalParam(BaseModel):
    """A choice among listed values (WMLA `Discrete`); `value_type` keeps the WMLA dataType."""

    model_config = ConfigDict(frozen=True)

    type: Literal["categorical"] = "categorical"
    name: str
    choices: tuple[Value, ...]
    value_type: Literal["double", "int", "str"] = "str"

    @property
    def size(self) -> int:
        return len(self.choices)

    def from_unit(self, u: float) -> Value:
        n = len(self.choices)
        return self.choices[min(max(int(float(u) * n), 0), n - 1)]

    def index(self, value: Value) -> int:
        for i, c in enumerate(self.choices):
            if c == value and type(c) is type(value):
                return i
        for i, c in enumerate(self.choices):
            if c == value:
                return i
        raise ValueError(f"{value!r} is not one of {list(self.choices)}")

    def to_unit(self, value: Value) -> float:
        return (self.index(value) + 0.5) / len(self.choices)

    def contains(self, value: Any) -> bool:
        return any(c == value and not isinstance(value, bool) for c in self.choices)

    def values(self) -> list[Value]:
        return list(self.choices)


Param = Annotated[NumericParam | CategoricalParam, Field(discriminator="type")]


class SearchSpace(BaseModel):
    """An ordered list of parameters."""

    model_config = ConfigDict(frozen=True)

    params: tuple[Param, ...] = ()

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def __len__(self) -> int:
        return len(self.params)

    def __getitem__(self, name: str) -> NumericParam | CategoricalParam:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def size(self) -> int | None:
        """Number of distinct configurations, None when any parameter is continuous."""
        total = 1
        for p in self.params:
            if p.size is None:
                return None
            total *= p.size
        return total

    def from_unit(self, u: Sequence[float]) -> Config:
        return {p.name: p.from_unit(x) for p, x in zip(self.params, u, strict=True)}

    def to_unit(self, config: Config) -> np.ndarray:
        return np.array([p.to_unit(config[p.name]) for p in self.params], dtype=float)

    def sample(self, rng: np.random.Generator) -> Config:
        return self.from_unit(rng.random(len(self.params)))

    def problems(self, config: Config) -> list[str]:
        """Why `config` is not a legal point of this space (empty when it is)."""
        out = [f"{p.name}: missing" for p in self.params if p.name not in config]
        out += [
            f"{p.name}: {config[p.name]!r} is not a legal value"
            for p in self.params
            if p.name in config and not p.contains(config[p.name])
        ]
        return out

    def grid(self) -> Iterator[Config]:
        """Every configuration of a finite space, in row-major order."""
        lists = [p.values() for p in self.params]
        if any(v is None for v in lists):
            raise ValueError("the space has continuous parameters and no finite grid")
        for combo in itertools.product(*lists):  # type: ignore[arg-type]
            yield dict(zip(self.names, combo, strict=True))


def config_key(config: Config) -> tuple:
    """A hashable identity for a configuration (for duplicate detection)."""
    return tuple(sorted((k, type(v).__name__, v) for k, v in config.items()))
