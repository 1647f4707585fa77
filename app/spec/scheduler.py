"""Early stopping in specs: the native `scheduler:` mapping and WMLA algoParams (`EarlyStop`).

Native:  scheduler: {type: asha, resource: epochs, max: 27, eta: 3, grace: 1, brackets: 1}
         scheduler: {type: median, resource: epochs, max: 27, grace: 2, min_samples: 3}
WMLA:    algoParams EarlyStop=ASHA|Median, ResourceName, ResourceValue (max), eta, GracePeriod,
         Brackets, MinSamples — with any searcher but Hyperband (which has its own rungs).
`resource` names the config.json key every trial gets set to `max`, so the script trains that far
unless it is stopped; the resource of a reported point is its steps/step/epoch, else its position.
"""

from __future__ import annotations

import math
import re
from typing import Any

from app.spec.model import SchedulerSpec
from app.spec.reader import Reader, show

FIELDS = ("type", "resource", "max", "eta", "grace", "brackets", "min_samples")
WMLA_NAMES = {
    "earlystop": "type",
    "resourcename": "resource",
    "resourcevalue": "max",
    "eta": "eta",
    "graceperiod": "grace",
    "brackets": "brackets",
    "minsamples": "min_samples",
}
KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def scheduler_from(values: dict[str, Any]) -> tuple[SchedulerSpec | None, list[tuple[str, str]]]:
    """Validate raw field values; (spec or None, problems as (field, message))."""
    problems: list[tuple[str, str]] = []
    kind = str(values.get("type", "")).strip().lower()
    if kind not in ("asha", "median"):
        problems.append(("type", f"must be asha or median, got {show(values.get('type'))}"))
    fields: dict[str, Any] = {"type": kind}
    resource = values.get("resource")
    if resource is not None:
        if not isinstance(resource, str) or not KEY_RE.match(resource):
            problems.append(
                ("resource", f"must be a config.json key (letters, digits, _ . -), got {show(resource)}")
            )
        else:
            fields["resource"] = resource
    rules = {
        "max": (lambda v: v > 0, "a number > 0"),
        "eta": (lambda v: v > 1, "a number > 1"),
        "grace": (lambda v: v > 0, "a number > 0"),
        "brackets": (lambda v: v.is_integer() and 1 <= v <= 16, "an integer from 1 to 16"),
        "min_samples": (lambda v: v.is_integer() and 1 <= v <= 100_000, "an integer >= 1"),
    }
    for name, (ok, expected) in rules.items():
        if name not in values or values[name] is None:
            continue
        number = _number(values[name])
        if number is None or not ok(number) or number > 2**31:
            problems.append((name, f"must be {expected}, got {show(values[name])}"))
        else:
            fields[name] = int(number) if name in ("brackets", "min_samples") else number
    if problems:
        return None, problems
    from app.schedulers.asha import rung_levels  # here: app.schedulers imports the spec model

    spec = SchedulerSpec(**fields)
    if spec.grace >= spec.max:
        return None, [("grace", f"must be smaller than max ({spec.max:g})")]
    if spec.type == "asha" and not rung_levels(spec.grace, spec.max, spec.eta, spec.brackets - 1):
        return None, [
            ("brackets", f"at most {len(rung_levels(spec.grace, spec.max, spec.eta))} for these rungs")
        ]
    return spec, []


def native_scheduler(root: Reader) -> SchedulerSpec | None:
    child = root.child("scheduler")
    if child is None:
        return None
    child.check_known(FIELDS)
    values = {k: child.get(k) for k in FIELDS if child.get(k) is not None}
    spec, problems = scheduler_from(values)
    for key, message in problems:
        child.problem(message, key)
    return spec


def wmla_scheduler(params: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The algoParams that configure early stopping ({field: value}, {field: algoParams name})."""
    values: dict[str, Any] = {}
    names: dict[str, str] = {}
    if not any(name.lower() == "earlystop" for name in params):
        return values, names
    for name, value in params.items():
        field = WMLA_NAMES.get(name.lower())
        if field is not None:
            values[field], names[field] = value, name
    return values, names
