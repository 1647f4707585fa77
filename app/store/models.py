"""SQLModel tables: experiments, trials, metric points, code archives.

SQL is the source of truth: the coordinator can rebuild all its state from these rows.
Timestamps are timezone-aware UTC (SQLModel's UTCDateTime; SQLite stores them without offset).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class ExperimentState:
    SUBMITTED = "SUBMITTED"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"
    ACTIVE = (SUBMITTED, RUNNING)
    DONE = (FINISHED, FAILED, STOPPED)


class TrialState:
    QUEUED = "QUEUED"  # recorded and published, not started yet
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    EARLY_STOPPED = "EARLY_STOPPED"
    CANCELLED = "CANCELLED"  # never started (experiment ended or stopped first)
    IN_FLIGHT = (QUEUED, RUNNING)
    DONE = (FINISHED, FAILED, EARLY_STOPPED, CANCELLED)


class Experiment(SQLModel, table=True):
    __tablename__ = "experiment"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=128)
    owner: str | None = Field(default=None, index=True, max_length=128)
    state: str = Field(default=ExperimentState.SUBMITTED, index=True, max_length=16)
    algorithm: str = Field(max_length=64)
    spec: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    queue: str = Field(max_length=128)
    objective_metric: str = Field(max_length=256)
    direction: str = Field(max_length=8)
    max_trials: int | None = None
    max_parallel: int = 1
    seed: int = 0
    code_hash: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    best_trial_id: int | None = None
    best_value: float | None = None
    message: str | None = None  # why it failed or stopped, or why it waits
    stop_requested: str | None = Field(default=None, max_length=16)  # "stop" | "force"
    lease_owner: str | None = Field(default=None, max_length=256)
    lease_expires: datetime | None = None
    optimizer_state: bytes | None = Field(default=None, sa_column=Column(LargeBinary))  # plugins' get_state


class Trial(SQLModel, table=True):
    __tablename__ = "trial"
    __table_args__ = (
        UniqueConstraint("experiment_id", "number", name="uq_trial_experiment_number"),
        Index("ix_trial_experiment_state", "experiment_id", "state"),
    )

    id: int | None = Field(default=None, primary_key=True)
    experiment_id: int = Field(foreign_key="experiment.id", index=True)
    number: int  # 0-based, in submission order (WMLA experiment id)
    exec_id: str = Field(index=True, unique=True, max_length=160)  # WMLA appId
    state: str = Field(default=TrialState.QUEUED, max_length=16)
    attempt: int = 1
    params: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    queue: str = Field(max_length=128)
    objective: float | None = None  # reduced objective metric as reported (not sign-flipped)
    metrics_summary: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    reason: str | None = None
    worker: str | None = Field(default=None, max_length=256)
    gpus: str | None = Field(default=None, max_length=128)  # "0,1": CUDA_VISIBLE_DEVICES of the attempt
    exit_code: int | None = None
    stdout_tail: str | None = None
    stderr_tail: str | None = None
    result_path: str | None = None
    notes: list[str] | None = Field(default=None, sa_column=Column(JSON))  # e.g. checkpoint not shipped
    stop_requested: str | None = Field(default=None, max_length=16)  # set by the API; the coordinator acts
    retry_requested: bool = False  # `hpo retry`: run a FAILED trial again (the coordinator acts)
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    ended_at: datetime | None = None


class AttemptRecord(SQLModel, table=True):
    """What became of an attempt that is no longer current: lost (its worker stopped heartbeating),
    or a result that arrived after it was superseded (recorded, not counted)."""

    __tablename__ = "attempt_record"

    id: int | None = Field(default=None, primary_key=True)
    trial_id: int = Field(foreign_key="trial.id", index=True)
    attempt: int
    state: str = Field(max_length=16)  # LOST | LATE_RESULT | RETRIED
    worker: str | None = Field(default=None, max_length=256)
    objective: float | None = None
    reason: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


class MetricPoint(SQLModel, table=True):
    """One evaluation point (an entry of val_dict_list.json), every metric it carries."""

    __tablename__ = "metric_point"
    __table_args__ = (
        UniqueConstraint("trial_id", "attempt", "seq", name="uq_metric_point_trial_attempt_seq"),
    )

    id: int | None = Field(default=None, primary_key=True)
    trial_id: int = Field(foreign_key="trial.id", index=True)
    attempt: int = 1
    seq: int  # position in the trial's list
    step: float | None = None  # its steps/step/epoch value, when given
    values: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))


class CodeArchive(SQLModel, table=True):
    """Uploaded model code, by content hash; workers receive it through Redis."""

    __tablename__ = "code_archive"

    sha256: str = Field(primary_key=True, max_length=64)
    filename: str = Field(max_length=256)
    size: int
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class User(SQLModel, table=True):
    __tablename__ = "app_user"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=128)
    password_hash: str = Field(max_length=512)
    is_admin: bool = False
    created_at: datetime = Field(default_factory=utcnow)


class ApiToken(SQLModel, table=True):
    """A bearer/X-Auth-Token or session token; only its SHA-256 is stored."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(index=True, unique=True, max_length=64)
    user_id: int = Field(foreign_key="app_user.id", index=True)
    kind: str = Field(default="token", max_length=16)  # "token" | "session"
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    revoked_at: datetime | None = None


class Plugin(SQLModel, table=True):
    """A user's search algorithm (WMLA plugin): its files, as an archive, and how it was installed."""

    __tablename__ = "plugin"

    name: str = Field(primary_key=True, max_length=128)
    archive: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    meta: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))  # path, condaHome, logLevel, ...
    creator: str | None = Field(default=None, max_length=128)
    created_at: datetime = Field(default_factory=utcnow)
