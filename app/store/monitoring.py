"""SQL aggregates for /metrics: counts by state, active queues, and time histograms.

Every number is computed by the database (GROUP BY, SUM(CASE ...)); no trial rows are loaded.
Durations come from timestamp differences in SQL: strftime('%s') plus the stored fraction on SQLite,
EXTRACT(EPOCH ...) on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Float, and_, case, cast, func, literal
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import select

from app.histogram import HistogramData
from app.store.models import Experiment, ExperimentState, Trial, TrialState
from app.store.repository import Store

# Seconds from a trial's enqueueing to its start, and from its start to its end.
QUEUE_WAIT_BOUNDS: tuple[float, ...] = (
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 86400.0,
)  # fmt: skip
DURATION_BOUNDS: tuple[float, ...] = (
    1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 4 * 3600.0, 12 * 3600.0, 86400.0,
    3 * 86400.0,
)  # fmt: skip


def trial_states(store: Store) -> dict[str, int]:
    """Trials by state, every state present (0 when none)."""
    out = dict.fromkeys((*TrialState.IN_FLIGHT, *TrialState.DONE), 0)
    with store.session() as s:
        for state, n in s.exec(select(Trial.state, func.count()).group_by(Trial.state)):
            out[state] = int(n)
    return out


def experiment_states(store: Store) -> dict[str, int]:
    """Experiments by state, every state present (0 when none)."""
    out = dict.fromkeys((*ExperimentState.ACTIVE, *ExperimentState.DONE), 0)
    with store.session() as s:
        for state, n in s.exec(select(Experiment.state, func.count()).group_by(Experiment.state)):
            out[state] = int(n)
    return out


def active_queues(store: Store) -> set[str]:
    """The queues of experiments that are submitted or running."""
    with store.session() as s:
        rows = s.exec(
            select(Experiment.queue).where(Experiment.state.in_(ExperimentState.ACTIVE)).distinct()  # type: ignore[attr-defined]
        )
        return {str(q) for q in rows}


def queue_wait(store: Store) -> HistogramData:
    """Enqueue (trial recorded) to start, over every trial that started."""
    started = Trial.started_at.is_not(None)  # type: ignore[union-attr]
    return _histogram(store, Trial.created_at, Trial.started_at, started, QUEUE_WAIT_BOUNDS)


def trial_duration(store: Store) -> HistogramData:
    """Start to end, over every trial that ended after it started."""
    ended = and_(
        Trial.state.in_(TrialState.DONE),  # type: ignore[attr-defined]
        Trial.started_at.is_not(None),  # type: ignore[union-attr]
        Trial.ended_at.is_not(None),  # type: ignore[union-attr]
    )
    return _histogram(store, Trial.started_at, Trial.ended_at, ended, DURATION_BOUNDS)


def _sqlite_epoch(column: Any) -> ColumnElement[Any]:
    """'YYYY-MM-DD HH:MM:SS.ffffff' as epoch seconds to the microsecond: SQLite's date functions
    keep only milliseconds, so whole seconds and the fraction are read apart."""
    whole = cast(func.strftime("%s", func.substr(column, 1, 19)), Float)
    return whole + cast(func.substr(column, 20), Float)


def _seconds(dialect: str, start: Any, end: Any) -> ColumnElement[Any]:
    if dialect == "sqlite":
        diff = _sqlite_epoch(end) - _sqlite_epoch(start)
    else:
        diff = cast(func.extract("epoch", end - start), Float)
    return case((diff < 0, literal(0.0)), else_=diff)  # clocks of two machines may disagree a little


def _histogram(store: Store, start: Any, end: Any, where: Any, bounds: Sequence[float]) -> HistogramData:
    seconds = _seconds(store.engine.dialect.name, start, end)
    columns = [func.count(), func.coalesce(func.sum(seconds), 0.0)]
    columns += [func.coalesce(func.sum(case((seconds <= b, 1), else_=0)), 0) for b in bounds]
    with store.session() as s:
        row = s.execute(select(*columns).where(where)).one()
    count, total, *cumulative = row
    return HistogramData(tuple(bounds), tuple(int(c) for c in cumulative), int(count), float(total))
