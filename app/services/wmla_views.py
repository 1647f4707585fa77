"""WMLA response shapes (reference/wmla-hpo.md §1.7), built from rows. Pure: no I/O.

HpoTaskState: hpoName, state, running, complete (failed included), failed, progress
("complete/maxJobNum" or "n/-"), createtime, creator, duration, experiments (every trial, by id),
best, and for WMLA-submitted tasks the echoed algoDef and hyperParams (as CPD 3.5 answers).
HpoExperiment: id, state, metricVal (9999.99 for FAILED), metrics, maxiteration, hyperParams
(lower-case dataType, string fixedVal), appId, startTime, endTime.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from app.space import CategoricalParam, NumericParam
from app.spec.model import ExperimentSpec
from app.store.models import Experiment, Trial, TrialState

FAILED_METRIC = 9999.99
# Our trial states as WMLA execution states (QUEUED is WMLA's WAITING).
EXEC_STATE = {
    TrialState.QUEUED: "WAITING",
    TrialState.RUNNING: "RUNNING",
    TrialState.FINISHED: "FINISHED",
    TrialState.FAILED: "FAILED",
    TrialState.EARLY_STOPPED: "FINISHED",
    TrialState.CANCELLED: "CANCELLED",
}


_LOCAL = datetime.now().astimezone().tzinfo  # the server's zone, as WMLA prints times


def wmla_time(value: datetime | None) -> str | None:
    if value is None:
        return None
    t = value.astimezone(_LOCAL)
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d} {t.hour:02d}:{t.minute:02d}:{t.second:02d}"


def wmla_duration(start: datetime | None, end: datetime | None, now: datetime) -> str:
    if start is None:
        return "00:00:00"
    seconds = max(int(((end or now) - start).total_seconds()), 0)
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _space_types(spec: ExperimentSpec) -> dict[str, str]:
    """WMLA dataType of each parameter of the space (looked up once per experiment)."""
    out = {}
    resource = spec.algorithm.params.get("ResourceName") if spec.algorithm.name == "hyperband" else None
    if resource:
        out[resource] = "str"  # WMLA lists the Hyperband budget as a string hyperparameter
    for p in spec.space.params:
        if isinstance(p, CategoricalParam):
            out[p.name] = p.value_type
        elif isinstance(p, NumericParam):
            out[p.name] = "int" if p.integer else "double"
    return out


def _value_type(value: Any) -> str:
    if isinstance(value, bool | str):
        return "str"
    return "int" if isinstance(value, int) else "double"


def _fixed(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value) if isinstance(value, int) else json.dumps(value)


def experiment_view(trial: Any, spec: ExperimentSpec, types: dict[str, str] | None = None) -> dict[str, Any]:
    """One trial (a Trial or a light row with the same fields) as a WMLA HpoExperiment."""
    types = _space_types(spec) if types is None else types
    grid = spec.algorithm.name == "grid"
    params = []
    for name, value in trial.params.items():
        entry = {
            "name": name,
            "dataType": types.get(name) or _value_type(value),
            "fixedVal": _fixed(value),
            "userDefined": False,
        }
        if grid:
            entry["type"] = "fix"
        params.append(entry)
    if trial.state == TrialState.FINISHED:
        metric: float | None = trial.objective
    elif trial.state in (TrialState.FAILED, TrialState.CANCELLED):
        metric = FAILED_METRIC
    else:
        metric = None
    view: dict[str, Any] = {
        "id": trial.number,
        "state": EXEC_STATE.get(trial.state, trial.state),
        "metricVal": metric,
        "metrics": [{"name": k, **v} for k, v in (trial.metrics_summary or {}).items()],
        "maxiteration": 0,
        "hyperParams": params,
        "appId": trial.exec_id,
    }
    if trial.started_at is not None:
        view["startTime"] = wmla_time(trial.started_at)
    if trial.ended_at is not None:
        view["endTime"] = wmla_time(trial.ended_at)
    return view


def _echo(raw: dict[str, Any]) -> dict[str, Any]:
    """algoDef and search space as CPD 3.5 echoes them (lower-case type/dataType, userDefined)."""
    out: dict[str, Any] = {}
    if isinstance(raw.get("algoDef"), dict):
        out["algoDef"] = raw["algoDef"]
    if isinstance(raw.get("hyperParams"), list):
        out["hyperParams"] = [
            {
                **p,
                "type": str(p.get("type", "")).lower(),
                "dataType": str(p.get("dataType", "")).lower(),
                "userDefined": False,
            }
            for p in raw["hyperParams"]
            if isinstance(p, dict)
        ]
    return out


def task_view(exp: Experiment, trials: Sequence[Any], now: datetime) -> dict[str, Any]:
    """The task and all its trials (Trial objects or `Store.trial_rows`)."""
    spec = ExperimentSpec.model_validate(exp.spec)
    types = _space_types(spec)
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state] = counts.get(t.state, 0) + 1
    failed = counts.get(TrialState.FAILED, 0)
    complete = counts.get(TrialState.FINISHED, 0) + counts.get(TrialState.EARLY_STOPPED, 0) + failed
    experiments = [experiment_view(t, spec, types) for t in trials]
    best = next((e for e, t in zip(experiments, trials, strict=True) if t.id == exp.best_trial_id), None)
    view: dict[str, Any] = {
        "hpoName": exp.name,
        "state": exp.state,
        "running": counts.get(TrialState.RUNNING, 0),
        "complete": complete,
        "failed": failed,
        "progress": f"{complete}/{exp.max_trials if exp.max_trials is not None else '-'}",
        "createtime": wmla_time(exp.created_at),
        "creator": exp.owner,
        "duration": wmla_duration(exp.started_at, exp.finished_at, now),
        "experiments": experiments,
        "best": best,
    }
    if spec.source == "wmla":
        view.update(_echo(spec.raw))
    return view


def exec_view(exp: Experiment, trial: Trial) -> dict[str, Any]:
    """GET /execs/{execId}: the trial as a BYOF execution."""
    spec = ExperimentSpec.model_validate(exp.spec)
    args = [
        "--model-main",
        spec.model.main,
        *(["--model-dir", spec.model.model_dir] if spec.model.model_dir else []),
    ]
    return {
        "id": trial.exec_id,
        "appId": trial.exec_id,
        "submissionId": trial.exec_id,
        "hpoName": exp.name,
        "state": EXEC_STATE.get(trial.state, trial.state),
        "args": " ".join([*args, *spec.model.args]),
        "creator": exp.owner,
        "createTime": wmla_time(trial.created_at),
        "startTime": wmla_time(trial.started_at),
        "endTime": wmla_time(trial.ended_at),
        "worker": trial.worker,
        "attempt": trial.attempt,
        "exitCode": trial.exit_code,
        "reason": trial.reason,
    }
