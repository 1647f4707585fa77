"""Path-tracking field reader shared by the WMLA and native spec parsers.

A `Reader` wraps one JSON-ish value and the path that leads to it (`algoDef`, `hyperParams[1]`,
`space.lr`). Its getters fetch typed fields and, instead of raising, record a `Problem` naming the
field and return None, so a parser can carry on and report every mistake at once. The messages are
uniform: "required", "must be a string, got 5", "must be an integer >= 1, got 0", ...

Nothing here raises for any input: bools are never numbers, NaN and infinities are rejected, and
values are shown in messages without walking into nested containers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from app.spec.errors import Problem

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
NAME_RULE = "must be 1-128 letters, digits, '_', '.' or '-', starting with a letter or digit"


def show(value: Any) -> str:
    """A short, safe rendering of a value for messages (never recurses into containers)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple | set | frozenset):
        return "a list"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return repr(text)
    return f"a {type(value).__name__}"


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def fmt(x: float) -> str:
    """A number as a user wrote it: 3, 0.1, 1e-05 (integral floats without the .0)."""
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(x)


def _bound(op: str, bound: float | None) -> str:
    return f" {op} {fmt(bound)}" if bound is not None else ""


def to_number(value: Any, *, allow_str: bool = True) -> float | int:
    """A finite int/float (numeric strings too when allowed); ValueError with a reason otherwise."""
    if isinstance(value, bool) or value is None:
        raise ValueError
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError
        return value
    if isinstance(value, str) and allow_str:
        text = value.strip()
        try:
            number: float | int = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                raise ValueError from None
        if isinstance(number, float) and not math.isfinite(number):
            raise ValueError
        return number
    raise ValueError


def to_int(value: Any, *, allow_str: bool = True) -> int:
    """An integer (integral floats like 2.0 and numeric strings allowed); ValueError otherwise."""
    number = to_number(value, allow_str=allow_str)
    if isinstance(number, float):
        if not number.is_integer():
            raise ValueError
        return int(number)
    return number


# Integers are stored in 32-bit SQL columns (PostgreSQL `integer`); limits and counts stay below.
INT_MAX = 2**31 - 1
NUMBER_MAX = 1e12  # minutes or seconds: more than 30,000 years


class Reader:
    """One JSON-ish value at `path`, plus the shared problem and warning lists."""

    def __init__(
        self,
        data: Any,
        path: str = "",
        problems: list[Problem] | None = None,
        warnings: list[str] | None = None,
    ) -> None:
        self.data = data
        self.path = path
        self.problems: list[Problem] = problems if problems is not None else []
        self.warnings: list[str] = warnings if warnings is not None else []

    # --- plumbing --------------------------------------------------------------------
    def path_of(self, key: str | int | None = None) -> str:
        return self.path if key is None else join(self.path, key)

    def at(self, key: str | int, data: Any) -> Reader:
        """A reader for `data` found under `key` (no type check), sharing the lists."""
        return Reader(data, self.path_of(key), self.problems, self.warnings)

    def problem(self, message: str, key: str | int | None = None) -> None:
        self.problems.append(Problem(self.path_of(key), message))

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    @property
    def is_dict(self) -> bool:
        return isinstance(self.data, dict)

    def get(self, key: str) -> Any:
        """The raw value, None when absent (null counts as absent)."""
        if not isinstance(self.data, dict):
            return None
        return self.data.get(key)

    def has(self, key: str) -> bool:
        return self.get(key) is not None

    def fields(self) -> list[Any]:
        return list(self.data) if isinstance(self.data, dict) else []

    def check_known(self, known: Iterable[str]) -> None:
        """Warn about keys this reader's object does not know (they are ignored)."""
        allowed = set(known)
        for key in self.fields():
            if key not in allowed:
                self.warn(f"ignored unknown key {self.path_of(str(key))}")

    def _required(self, key: str, required: bool) -> None:
        if required:
            self.problem("required", key)

    # --- typed getters: a problem is recorded and None returned when the value is bad ----
    def str(
        self,
        key: str,
        *,
        required: bool = False,
        allow_empty: bool = False,
        pattern: re.Pattern[str] | None = None,
        rule: str = "",
    ) -> str | None:
        value = self.get(key)
        if value is None:
            self._required(key, required)
            return None
        if not isinstance(value, str):
            self.problem(f"must be a string, got {show(value)}", key)
            return None
        if not allow_empty and not value.strip():
            self.problem("must not be empty", key)
            return None
        if pattern is not None and not pattern.fullmatch(value):
            self.problem(f"{rule or 'has an invalid form'}, got {show(value)}", key)
            return None
        return value

    def choice(self, key: str, options: dict[str, str], *, required: bool = False) -> str | None:
        """A case-insensitive string among `options` (lower-case spelling -> canonical value)."""
        value = self.str(key, required=required)
        if value is None:
            return None
        canonical = options.get(value.strip().lower())
        if canonical is None:
            names = sorted(set(options.values()))
            self.problem(f"must be one of {', '.join(names)}, got {show(value)}", key)
        return canonical

    def int(
        self,
        key: str,
        *,
        required: bool = False,
        default: int | None = None,
        minimum: int | None = None,
        maximum: int = INT_MAX,
        unlimited: bool = False,
        allow_str: bool = True,
    ) -> int | None:
        """An integer in [minimum, maximum]; with `unlimited`, -1 is accepted and read as None."""
        value = self.get(key)
        if value is None:
            self._required(key, required)
            return default
        expected = f"an integer{_bound('>=', minimum)}" + (" or -1 (unlimited)" if unlimited else "")
        try:
            number = to_int(value, allow_str=allow_str)
        except ValueError:
            self.problem(f"must be {expected}, got {show(value)}", key)
            return None
        if unlimited and number == -1:
            return None
        if minimum is not None and number < minimum:
            self.problem(f"must be {expected}, got {show(value)}", key)
            return None
        if number > maximum:
            self.problem(f"must be at most {maximum}, got {show(value)}", key)
            return None
        return number

    def number(
        self,
        key: str,
        *,
        required: bool = False,
        default: float | None = None,
        gt: float | None = None,
        ge: float | None = None,
        le: float = NUMBER_MAX,
        unlimited: bool = False,
        allow_str: bool = True,
    ) -> float | None:
        """A finite number (> gt, >= ge); with `unlimited`, -1 is accepted and read as None."""
        value = self.get(key)
        if value is None:
            self._required(key, required)
            return default
        expected = (
            "a number" + _bound(">", gt) + _bound(">=", ge) + (" or -1 (unlimited)" if unlimited else "")
        )
        try:
            number = float(to_number(value, allow_str=allow_str))
        except ValueError:
            self.problem(f"must be {expected}, got {show(value)}", key)
            return None
        if unlimited and number == -1:
            return None
        if (gt is not None and not number > gt) or (ge is not None and not number >= ge):
            self.problem(f"must be {expected}, got {show(value)}", key)
            return None
        if number > le:
            self.problem(f"must be at most {fmt(le)}, got {show(value)}", key)
            return None
        return number

    def bool(self, key: str, *, default: bool = False, allow_str: bool = False) -> bool | None:
        value = self.get(key)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if allow_str and isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        self.problem(f"must be true or false, got {show(value)}", key)
        return None

    def child(self, key: str, *, required: bool = False) -> Reader | None:
        """The object under `key` as a Reader, None when absent or not an object."""
        value = self.get(key)
        if value is None:
            self._required(key, required)
            return None
        if not isinstance(value, dict):
            self.problem(f"must be an object, got {show(value)}", key)
            return None
        return self.at(key, value)

    def list(self, key: str, *, required: bool = False, nonempty: bool = False) -> list[Reader] | None:
        """Readers for the items of the list under `key`, None when absent or not a list."""
        value = self.get(key)
        if value is None:
            self._required(key, required)
            return None
        if not isinstance(value, list):
            self.problem(f"must be a list, got {show(value)}", key)
            return None
        if nonempty and not value:
            self.problem("must not be empty", key)
            return None
        base = self.path_of(key)
        return [Reader(item, join(base, i), self.problems, self.warnings) for i, item in enumerate(value)]


def validation_problems(exc: ValidationError, prefix: str = "") -> list[Problem]:
    """Problems for a pydantic error raised while building the model (a last line of defence)."""
    out = []
    for err in exc.errors():
        path = prefix
        for part in err.get("loc", ()):
            path = join(path, part if isinstance(part, int) else str(part))
        out.append(Problem(path, str(err.get("msg", "invalid value"))))
    return out or [Problem(prefix, "invalid value")]
