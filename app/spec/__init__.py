"""Experiment spec: the WMLA `data` payload and the native YAML/JSON form -> one validated model.

Public API: `parse_spec(data)`, `load_spec(path)`, `ExperimentSpec`, `SpecError`.
"""

from __future__ import annotations

from app.spec.errors import Problem, SpecError
from app.spec.model import ExperimentSpec

__all__ = ["ExperimentSpec", "Problem", "SpecError"]
