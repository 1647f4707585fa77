"""Record many worker events in one SQL transaction, with prebuilt Core statements.

The coordinator reads events from Redis in batches; each batch becomes one transaction here
(started, streamed points, finished outcomes), committed before any of its events is acked. Every
write is the same compare-and-set as in `Store` (a state change applies only to the attempt it
names, and only while that attempt is in flight; a point is stored once per (trial, attempt, seq)),
so replaying a batch after a crash changes nothing. New trials are inserted in one statement that
returns their ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.engine import Connection, Engine

from app.store.models import Experiment, MetricPoint, Trial, TrialState, utcnow
from app.store.repository import TrialOutcome

TRIAL: Table = Trial.__table__  # type: ignore[attr-defined]
POINT: Table = MetricPoint.__table__  # type: ignore[attr-defined]
EXPERIMENT: Table = Experiment.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class StartOp:
    trial_id: int
    attempt: int
    worker: str | None
    started_at: datetime | None
    gpus: str | None = None


@dataclass(frozen=True)
class PointsOp:
    trial_id: int
    attempt: int
    points: list[dict[str, Any]]


@dataclass(frozen=True)
class FinishOp:
    trial_id: int
    attempt: int
    outcome: TrialOutcome


Op = StartOp | PointsOp | FinishOp

_START = (
    update(TRIAL)
    .where(
        TRIAL.c.id == bindparam("b_id"),
        TRIAL.c.attempt == bindparam("b_attempt"),
        TRIAL.c.state == TrialState.QUEUED,
    )
    .values(
        state=TrialState.RUNNING,
        worker=bindparam("b_worker"),
        started_at=bindparam("b_started_at"),
        gpus=bindparam("b_gpus"),
    )
)

_FINISH = (
    update(TRIAL)
    .where(
        TRIAL.c.id == bindparam("b_id"),
        TRIAL.c.attempt == bindparam("b_attempt"),
        TRIAL.c.state.in_(TrialState.IN_FLIGHT),
    )
    .values(
        state=bindparam("b_state"),
        objective=bindparam("b_objective"),
        reason=bindparam("b_reason"),
        exit_code=bindparam("b_exit_code"),
        ended_at=bindparam("b_ended_at"),
        stdout_tail=bindparam("b_stdout_tail"),
        stderr_tail=bindparam("b_stderr_tail"),
        result_path=bindparam("b_result_path"),
        metrics_summary=bindparam("b_metrics_summary", type_=TRIAL.c.metrics_summary.type),
        notes=bindparam("b_notes", type_=TRIAL.c.notes.type),
        worker=func.coalesce(bindparam("b_worker", type_=TRIAL.c.worker.type), TRIAL.c.worker),
        started_at=func.coalesce(
            bindparam("b_started_at", type_=TRIAL.c.started_at.type), TRIAL.c.started_at
        ),
    )
)

_LAST_SEQ = select(func.max(POINT.c.seq)).where(
    POINT.c.trial_id == bindparam("b_id"), POINT.c.attempt == bindparam("b_attempt")
)

_INSERT_POINTS = insert(POINT)


def _finish_params(op: FinishOp) -> dict[str, Any]:
    o = op.outcome
    return {
        "b_id": op.trial_id,
        "b_attempt": op.attempt,
        "b_state": o.state,
        "b_objective": o.objective,
        "b_reason": o.reason,
        "b_exit_code": o.exit_code,
        "b_ended_at": o.ended_at or utcnow(),
        "b_stdout_tail": o.stdout_tail,
        "b_stderr_tail": o.stderr_tail,
        "b_result_path": o.result_path,
        "b_metrics_summary": o.metrics_summary,
        "b_notes": o.notes,
        "b_worker": o.worker,
        "b_started_at": o.started_at,
    }


class TrialWriter:
    """Applies batches of trial writes; one transaction per call."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def apply(self, ops: Sequence[Op]) -> list[bool]:
        """Apply `ops` in order and commit once. Per op: did it change anything (a started or
        finished CAS that held; points that were new)."""
        if not ops:
            return []
        with self.engine.begin() as conn:
            return [self._one(conn, op) for op in ops]

    def _one(self, conn: Connection, op: Op) -> bool:
        if isinstance(op, StartOp):
            res = conn.execute(
                _START,
                {
                    "b_id": op.trial_id,
                    "b_attempt": op.attempt,
                    "b_worker": op.worker,
                    "b_started_at": op.started_at or utcnow(),
                    "b_gpus": op.gpus,
                },
            )
            return res.rowcount == 1
        if isinstance(op, PointsOp):
            return _add_points(conn, op.trial_id, op.attempt, op.points) > 0
        res = conn.execute(_FINISH, _finish_params(op))
        if res.rowcount != 1:
            return False  # a duplicate, or an attempt that no longer counts: nothing else changes
        _add_points(conn, op.trial_id, op.attempt, op.outcome.points)
        return True

    def add_trials(
        self, experiment: Experiment, configs: Sequence[dict[str, Any]], first_number: int
    ) -> list[Trial]:
        """Record new trials (QUEUED) in one statement and transaction; the ids come back with it."""
        if not configs:
            return []
        now = utcnow()
        rows = [
            {
                "experiment_id": experiment.id,
                "number": first_number + i,
                "exec_id": f"{experiment.name}-{first_number + i}",
                "state": TrialState.QUEUED,
                "attempt": 1,
                "params": dict(config),
                "queue": experiment.queue,
                "retry_requested": False,
                "created_at": now,
            }
            for i, config in enumerate(configs)
        ]
        stmt = insert(TRIAL).returning(TRIAL.c.id, sort_by_parameter_order=True)
        with self.engine.begin() as conn:
            ids = [int(r[0]) for r in conn.execute(stmt, rows)]
        return [Trial(id=i, **row) for i, row in zip(ids, rows, strict=True)]

    def set_best(self, experiment_id: int, trial_id: int | None, value: float | None) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(EXPERIMENT)
                .where(EXPERIMENT.c.id == experiment_id)
                .values(best_trial_id=trial_id, best_value=value)
            )


def _add_points(conn: Connection, trial_id: int, attempt: int, points: Sequence[dict[str, Any]]) -> int:
    """Points with a seq above the last stored one for this attempt (the same rule as Store)."""
    if not points:
        return 0
    last = conn.execute(_LAST_SEQ, {"b_id": trial_id, "b_attempt": attempt}).scalar()
    fresh = [
        {
            "trial_id": trial_id,
            "attempt": attempt,
            "seq": p["seq"],
            "step": p.get("step"),
            "values": p["values"],
        }
        for p in points
        if last is None or p["seq"] > last
    ]
    if fresh:
        conn.execute(_INSERT_POINTS, fresh)
    return len(fresh)
