"""The store on real SQL: SQLite (file, WAL) and PostgreSQL (psycopg 3), migrations included."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from app.config import TestSettings
from app.store.db import (
    SchemaError,
    current_revision,
    ensure_schema,
    head_revision,
    make_engine,
    normalize_url,
)
from app.store.models import Experiment, ExperimentState, TrialState, utcnow
from app.store.repository import Store, TrialOutcome


def _postgres_engine() -> Iterator[Engine]:
    url = TestSettings().database_url
    try:
        admin = make_engine(url)
        with admin.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as exc:
        pytest.skip(f"PostgreSQL unreachable at {url}: {exc}")
    schema = f"hpo_test_{uuid.uuid4().hex[:10]}"
    with admin.begin() as conn:
        conn.execute(text(f"create schema {schema}"))
    sep = "&" if "?" in url else "?"
    engine = make_engine(f"{normalize_url(url)}{sep}options=-csearch_path%3D{schema}")
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f"drop schema {schema} cascade"))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
        yield engine
        engine.dispose()
    else:
        yield from _postgres_engine()


@pytest.fixture()
def db(engine: Engine) -> Store:
    ensure_schema(engine, auto_upgrade=True)
    return Store(engine)


def _experiment(store: Store, name: str = "e1") -> Experiment:
    return store.add_experiment(
        Experiment(
            name=name,
            owner="alice",
            algorithm="random",
            spec={"k": "v"},
            queue="trials.cpu",
            objective_metric="loss",
            direction="minimize",
            max_trials=10,
            max_parallel=2,
        )
    )


def test_migrations_create_exactly_the_models(engine: Engine) -> None:
    ensure_schema(engine, auto_upgrade=True)
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []


def test_sqlite_runs_in_wal_mode(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'wal.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("pragma journal_mode")).scalar() == "wal"
    engine.dispose()


def test_old_schema_is_refused_without_upgrade(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    ensure_schema(engine, auto_upgrade=True)
    with engine.begin() as conn:
        conn.execute(text("update alembic_version set version_num = '0000'"))
    with pytest.raises(SchemaError, match="hpo db upgrade"):
        ensure_schema(engine, auto_upgrade=False)
    engine.dispose()


def test_trials_round_trip_with_json_and_aware_times(db: Store) -> None:
    exp = _experiment(db)
    trials = db.add_trials(exp, [{"lr": 0.1, "opt": "adam"}, {"lr": 0.2, "opt": "sgd"}], first_number=0)
    assert [t.number for t in trials] == [0, 1]
    assert [t.exec_id for t in trials] == ["e1-0", "e1-1"]
    loaded = db.trials(exp.id)
    assert loaded[0].params == {"lr": 0.1, "opt": "adam"}
    assert loaded[0].state == TrialState.QUEUED
    assert loaded[0].created_at.tzinfo is not None
    assert db.trial_counts(exp.id) == {TrialState.QUEUED: 2}


def test_outcome_is_recorded_exactly_once(db: Store) -> None:
    exp = _experiment(db)
    (trial,) = db.add_trials(exp, [{"x": 1}], first_number=0)
    started = utcnow()
    assert db.mark_started(trial.id, 1, "w1/0", started)
    assert not db.mark_started(trial.id, 1, "w1/0", started)  # duplicate event: no change
    outcome = TrialOutcome(
        state=TrialState.FINISHED,
        objective=0.5,
        points=[
            {"seq": 0, "step": 1, "values": {"loss": 0.7}},
            {"seq": 1, "step": 2, "values": {"loss": 0.5}},
        ],
        ended_at=started + timedelta(seconds=3),
    )
    assert db.record_outcome(trial.id, 1, outcome)
    assert not db.record_outcome(trial.id, 1, outcome)  # duplicate delivery changes nothing
    assert not db.record_outcome(trial.id, 2, outcome)  # an attempt that is not current
    assert [p.values for p in db.metric_points(trial.id)] == [{"loss": 0.7}, {"loss": 0.5}]
    row = db.trial(trial.id)
    assert row.state == TrialState.FINISHED and row.objective == 0.5 and row.worker == "w1/0"
    assert row.ended_at - row.started_at == timedelta(seconds=3)


def test_cancel_only_touches_queued_trials(db: Store) -> None:
    exp = _experiment(db)
    a, b = db.add_trials(exp, [{"x": 1}, {"x": 2}], first_number=0)
    db.mark_started(a.id, 1, "w", None)
    cancelled = db.cancel_queued(exp.id, "deadline")
    assert [t.id for t in cancelled] == [b.id]
    assert db.trial(b.id).state == TrialState.CANCELLED and db.trial(a.id).state == TrialState.RUNNING


def test_experiment_lease_keeps_a_second_coordinator_out(db: Store) -> None:
    exp = _experiment(db)
    assert db.claim_experiment(exp.id, "c1", lease_s=30)
    assert db.claim_experiment(exp.id, "c1", lease_s=30)  # renewal
    assert not db.claim_experiment(exp.id, "c2", lease_s=30)
    assert db.claim_experiment(exp.id, "c1", lease_s=-1)  # c1's lease now lapsed...
    assert db.claim_experiment(exp.id, "c2", lease_s=30)  # ...so c2 takes over
    db.release_experiment(exp.id, "c2")
    assert db.claim_experiment(exp.id, "c3", lease_s=30)


def test_experiment_state_changes_are_compare_and_set(db: Store) -> None:
    exp = _experiment(db)
    assert db.set_experiment_state(exp.id, [ExperimentState.SUBMITTED], ExperimentState.RUNNING)
    assert not db.set_experiment_state(exp.id, [ExperimentState.SUBMITTED], ExperimentState.RUNNING)
    assert db.finish_experiment(exp.id, ExperimentState.FINISHED, "done")
    assert not db.finish_experiment(exp.id, ExperimentState.FAILED, "late")
    assert db.experiment("e1").state == ExperimentState.FINISHED


def test_code_archives_are_stored_once(db: Store) -> None:
    db.save_code("ab" * 32, "m.modelDir.tar", b"bytes")
    db.save_code("ab" * 32, "m.modelDir.tar", b"bytes")
    assert db.get_code("ab" * 32).data == b"bytes"


def test_active_ids_and_stop_requests(db: Store) -> None:
    a, b = _experiment(db, "a"), _experiment(db, "b")
    db.finish_experiment(b.id, ExperimentState.FINISHED)
    assert db.active_experiment_ids() == [a.id]
    assert db.stop_requests([a.id, b.id]) == {}
    db.update_experiment(a.id, stop_requested="force")
    assert db.stop_requests([a.id, b.id]) == {a.id: "force"}
    assert db.stop_requests([]) == {}
