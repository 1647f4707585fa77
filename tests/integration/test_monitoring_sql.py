"""The SQL aggregates behind /metrics (app/store/monitoring.py) on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from app.store import monitoring
from app.store.db import ensure_schema, make_engine
from app.store.models import Experiment, ExperimentState, Trial, TrialState, utcnow
from app.store.repository import Store
from tests.integration.test_store import _postgres_engine


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    engine: Engine
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
        ensure_schema(engine, auto_upgrade=True)
        yield Store(engine)
        engine.dispose()
    else:
        for engine in _postgres_engine():
            ensure_schema(engine, auto_upgrade=True)
            yield Store(engine)


def _experiment(store: Store, name: str, state: str, queue: str) -> Experiment:
    return store.add_experiment(
        Experiment(name=name, algorithm="random", spec={}, queue=queue, objective_metric="loss",
                   direction="minimize", state=state)
    )  # fmt: skip


def test_counts_queues_and_histograms_are_computed_in_sql(db: Store) -> None:
    exp = _experiment(db, "a", ExperimentState.RUNNING, "trials.cpu")
    _experiment(db, "b", ExperimentState.SUBMITTED, "trials.a100.x2")
    _experiment(db, "c", ExperimentState.FINISHED, "trials.h100.x1")
    t0 = utcnow()
    s = timedelta(seconds=1)
    rows = [  # started, ended, state
        (None, None, TrialState.QUEUED),
        (t0 + 0.3 * s, None, TrialState.RUNNING),
        (t0 + 2.000001 * s, t0 + 9.5 * s, TrialState.FINISHED),
        (t0 + 40 * s, t0 + 400 * s, TrialState.FAILED),
        (t0 - 1 * s, t0 + 2 * s, TrialState.EARLY_STOPPED),  # a worker's clock behind the coordinator's
        (None, None, TrialState.CANCELLED),
    ]
    with db.session() as session:
        for i, (start, end, state) in enumerate(rows):
            session.add(Trial(experiment_id=exp.id, number=i, exec_id=f"a-{i}", state=state, params={},
                              queue="trials.cpu", created_at=t0, started_at=start, ended_at=end))  # fmt: skip
        session.commit()

    assert monitoring.trial_states(db) == {
        "QUEUED": 1, "RUNNING": 1, "FINISHED": 1, "FAILED": 1, "EARLY_STOPPED": 1, "CANCELLED": 1,
    }  # fmt: skip
    assert monitoring.experiment_states(db) == {
        "SUBMITTED": 1, "RUNNING": 1, "FINISHED": 1, "FAILED": 0, "STOPPED": 0,
    }  # fmt: skip
    assert monitoring.active_queues(db) == {"trials.cpu", "trials.a100.x2"}

    wait = monitoring.queue_wait(db)  # started trials: 0.3, 2.000001, 40 and a skew clamped to 0
    assert wait.count == 4 and wait.total == pytest.approx(42.300001, abs=1e-6)
    assert dict(zip(wait.bounds, wait.cumulative, strict=True))[0.1] == 1
    assert dict(zip(wait.bounds, wait.cumulative, strict=True))[2.5] == 3
    assert dict(zip(wait.bounds, wait.cumulative, strict=True))[60.0] == 4
    duration = monitoring.trial_duration(db)  # ended trials: 7.499999, 360, 3
    assert duration.count == 3 and duration.total == pytest.approx(370.499999, abs=1e-6)
    by_bound = dict(zip(duration.bounds, duration.cumulative, strict=True))
    assert (by_bound[1.0], by_bound[5.0], by_bound[10.0], by_bound[300.0], by_bound[900.0]) == (0, 1, 2, 2, 3)


def test_empty_database_gives_zeros(db: Store) -> None:
    assert set(monitoring.trial_states(db).values()) == {0}
    assert monitoring.queue_wait(db).count == 0 and monitoring.queue_wait(db).total == 0.0
    assert monitoring.trial_duration(db).cumulative == (0,) * len(monitoring.DURATION_BOUNDS)
