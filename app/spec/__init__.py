"""Experiment spec: the WMLA `data` payload and the native YAML/JSON form -> one validated model.

Public API: `parse_spec(data)`, `load_spec(path)`, `ExperimentSpec`, `SpecError`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from app.spec.errors import Problem, SpecError
from app.spec.model import ExperimentSpec
from app.spec.native import parse_native
from app.spec.wmla import parse_wmla

__all__ = ["ExperimentSpec", "Problem", "SpecError", "is_wmla", "load_spec", "parse_spec"]

WMLA_KEYS = ("modelSpec", "algoDef", "hyperParams")
NATIVE_KEYS = ("model", "algorithm", "space")


def is_wmla(data: Any) -> bool:
    """True for a WMLA payload: it has modelSpec, algoDef or hyperParams, or `experiments` and none
    of the native keys (`experiments` exists in both forms)."""
    if not isinstance(data, dict):
        return False
    if any(key in data for key in WMLA_KEYS):
        return True
    return "experiments" in data and not any(key in data for key in NATIVE_KEYS)


def parse_spec(data: Any, *, source: str | None = None) -> ExperimentSpec:
    """Validate a decoded WMLA payload or native spec; SpecError lists every problem found."""
    try:
        return parse_wmla(data) if is_wmla(data) else parse_native(data)
    except SpecError as exc:
        raise SpecError(exc.problems, source) from None
    except (RecursionError, MemoryError):
        raise SpecError([Problem("", "the spec is nested too deeply or too large")], source) from None
    except Exception as exc:  # a last line of defence: users get a SpecError, never a traceback
        message = f"could not be read ({type(exc).__name__}: {exc})"
        raise SpecError([Problem("", message)], source) from exc


def _decode(text: str, path: Path) -> Any:
    where = path.name
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            message = f"not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}"
            raise SpecError([Problem(where, message)], str(path)) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"line {mark.line + 1} column {mark.column + 1}: " if mark is not None else ""
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError([Problem(where, f"not valid YAML: {at}{reason}")], str(path)) from None


def load_spec(path: str | Path) -> ExperimentSpec:
    """Read and validate a .json, .yaml or .yml spec file (other suffixes are read as YAML,
    which also reads JSON). Unreadable or malformed files raise SpecError naming the file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SpecError([Problem(p.name, "not UTF-8 text")], str(p)) from None
    except OSError as exc:
        raise SpecError([Problem(p.name, f"cannot read the file: {exc.strerror or exc}")], str(p)) from None
    data = _decode(text, p)
    return parse_spec(data, source=str(p))
