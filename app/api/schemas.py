"""Response models of the native API (they make its OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from app.store.models import Experiment, MetricPoint, Trial, TrialState

T = TypeVar("T")


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None
    problems: list[dict[str, str]] | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class Counts(BaseModel):
    queued: int = 0
    running: int = 0
    finished: int = 0
    failed: int = 0
    early_stopped: int = 0
    cancelled: int = 0

    @classmethod
    def of(cls, counts: dict[str, int]) -> Counts:
        return cls(
            queued=counts.get(TrialState.QUEUED, 0),
            running=counts.get(TrialState.RUNNING, 0),
            finished=counts.get(TrialState.FINISHED, 0),
            failed=counts.get(TrialState.FAILED, 0),
            early_stopped=counts.get(TrialState.EARLY_STOPPED, 0),
            cancelled=counts.get(TrialState.CANCELLED, 0),
        )


class ExperimentOut(BaseModel):
    name: str
    owner: str | None
    state: str
    algorithm: str
    metric: str
    direction: str
    queue: str
    max_trials: int | None
    max_parallel: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    best_trial: int | None
    best_value: float | None
    message: str | None
    warnings: list[str]
    counts: Counts

    @classmethod
    def of(cls, exp: Experiment, counts: dict[str, int], best_number: int | None) -> ExperimentOut:
        return cls(
            name=exp.name,
            owner=exp.owner,
            state=exp.state,
            algorithm=exp.algorithm,
            metric=exp.objective_metric,
            direction=exp.direction,
            queue=exp.queue,
            max_trials=exp.max_trials,
            max_parallel=exp.max_parallel,
            created_at=exp.created_at,
            started_at=exp.started_at,
            finished_at=exp.finished_at,
            best_trial=best_number,
            best_value=exp.best_value,
            message=exp.message,
            warnings=list(exp.spec.get("warnings", [])),
            counts=Counts.of(counts),
        )


class TrialOut(BaseModel):
    number: int
    exec_id: str
    state: str
    attempt: int
    params: dict[str, Any]
    objective: float | None
    metrics: dict[str, Any] | None
    reason: str | None
    worker: str | None
    gpus: str | None = None  # CUDA_VISIBLE_DEVICES of the current attempt
    exit_code: int | None
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None

    @classmethod
    def of(cls, t: Trial) -> TrialOut:
        return cls(
            number=t.number,
            exec_id=t.exec_id,
            state=t.state,
            attempt=t.attempt,
            params=t.params,
            objective=t.objective,
            metrics=t.metrics_summary,
            reason=t.reason,
            worker=t.worker,
            gpus=t.gpus,
            exit_code=t.exit_code,
            created_at=t.created_at,
            started_at=t.started_at,
            ended_at=t.ended_at,
        )


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_after: int | None  # pass as `after` for the next page; null on the last page


class BestOut(BaseModel):
    trial: int
    exec_id: str
    value: float
    params: dict[str, Any]


class MetricPointOut(BaseModel):
    seq: int
    step: float | None
    values: dict[str, Any]

    @classmethod
    def of(cls, p: MetricPoint) -> MetricPointOut:
        return cls(seq=p.seq, step=p.step, values=p.values)


class TokenOut(BaseModel):
    token: str
    user: str
    expires_at: datetime


class UserOut(BaseModel):
    name: str
    is_admin: bool
