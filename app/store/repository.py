"""Queries over the tables. Every trial state change is a compare-and-set (UPDATE ... WHERE state IN)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from app.store.models import (
    AttemptRecord,
    CodeArchive,
    Experiment,
    ExperimentState,
    MetricPoint,
    Plugin,
    Trial,
    TrialState,
    utcnow,
)


@dataclass
class TrialOutcome:
    """What a finished attempt reported, ready to be recorded."""

    state: str
    objective: float | None = None
    reason: str | None = None
    exit_code: int | None = None
    worker: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    stdout_tail: str | None = None
    stderr_tail: str | None = None
    result_path: str | None = None
    metrics_summary: dict[str, Any] | None = None
    points: list[dict[str, Any]] = field(default_factory=list)  # {"seq", "step", "values"}
    notes: list[str] | None = None


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    # --- code archives ---------------------------------------------------------------
    def save_code(self, sha256: str, filename: str, data: bytes) -> None:
        with self.session() as s:
            if s.get(CodeArchive, sha256) is not None:
                return
            s.add(CodeArchive(sha256=sha256, filename=filename, size=len(data), data=data))
            try:
                s.commit()
            except IntegrityError:  # saved concurrently by someone else: same bytes
                s.rollback()

    def get_code(self, sha256: str) -> CodeArchive | None:
        with self.session() as s:
            return s.get(CodeArchive, sha256)

    # --- plugins -----------------------------------------------------------------------
    def add_plugin(self, plugin: Plugin) -> Plugin:
        with self.session() as s:
            s.add(plugin)
            s.commit()
            s.refresh(plugin)
            return plugin

    def plugin(self, name: str) -> Plugin | None:
        """By name, ignoring case (algorithm names are matched that way)."""
        with self.session() as s:
            return s.exec(select(Plugin).where(func.lower(Plugin.name) == name.lower())).first()

    def plugins(self) -> list[Plugin]:
        with self.session() as s:
            return list(s.exec(select(Plugin).order_by(Plugin.name)))

    def plugin_names(self) -> list[str]:
        with self.session() as s:
            return list(s.exec(select(Plugin.name)))

    def delete_plugin(self, name: str) -> bool:
        with self.session() as s:
            res = s.execute(delete(Plugin).where(func.lower(Plugin.name) == name.lower()))
            s.commit()
            return res.rowcount == 1

    # --- experiments -----------------------------------------------------------------
    def add_experiment(self, experiment: Experiment) -> Experiment:
        with self.session() as s:
            s.add(experiment)
            s.commit()
            s.refresh(experiment)
            return experiment

    def experiment(self, ref: int | str) -> Experiment | None:
        with self.session() as s:
            if isinstance(ref, int):
                return s.get(Experiment, ref)
            return s.exec(select(Experiment).where(Experiment.name == ref)).first()

    def experiments(self, states: Iterable[str] | None = None) -> list[Experiment]:
        with self.session() as s:
            q = select(Experiment).order_by(Experiment.id)
            if states is not None:
                q = q.where(Experiment.state.in_(list(states)))  # type: ignore[attr-defined]
            return list(s.exec(q))

    def experiments_page(
        self,
        *,
        owner: str | None = None,
        after_id: int = 0,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[Experiment]:
        """Experiments by id, optionally of one owner, keyset-paginated (`after_id`), or the newest first."""
        with self.session() as s:
            if newest_first:
                q = select(Experiment).order_by(Experiment.id.desc())  # type: ignore[union-attr]
            else:
                q = select(Experiment).where(Experiment.id > after_id).order_by(Experiment.id)  # type: ignore[operator]
            if owner is not None:
                q = q.where(Experiment.owner == owner)
            if limit is not None:
                q = q.limit(limit)
            return list(s.exec(q))

    def finish_experiment_if_submitted(self, experiment_id: int, state: str, message: str) -> bool:
        return self.set_experiment_state(
            experiment_id, [ExperimentState.SUBMITTED], state, finished_at=utcnow(), message=message
        )

    def delete_experiment(self, experiment_id: int) -> None:
        """An ended experiment with its trials and metric points; its code if nothing else uses it."""
        with self.session() as s:
            exp = s.get(Experiment, experiment_id)
            if exp is None:
                return
            trial_ids = select(Trial.id).where(Trial.experiment_id == experiment_id)
            s.execute(delete(MetricPoint).where(MetricPoint.trial_id.in_(trial_ids)))  # type: ignore[attr-defined]
            s.execute(delete(AttemptRecord).where(AttemptRecord.trial_id.in_(trial_ids)))  # type: ignore[attr-defined]
            s.execute(delete(Trial).where(Trial.experiment_id == experiment_id))
            code_hash = exp.code_hash
            s.delete(exp)
            s.flush()
            if code_hash:
                others = s.exec(select(func.count()).where(Experiment.code_hash == code_hash)).one()
                if not others:
                    s.execute(delete(CodeArchive).where(CodeArchive.sha256 == code_hash))
            s.commit()

    def active_experiment_ids(self) -> list[int]:
        with self.session() as s:
            q = select(Experiment.id).where(Experiment.state.in_(ExperimentState.ACTIVE))  # type: ignore[union-attr]
            return [int(i) for i in s.exec(q)]

    def stop_requests(self, experiment_ids: Iterable[int]) -> dict[int, str]:
        """{experiment id: "stop" | "force"} for those of `experiment_ids` asked to stop."""
        ids = list(experiment_ids)
        if not ids:
            return {}
        with self.session() as s:
            q = select(Experiment.id, Experiment.stop_requested).where(
                Experiment.id.in_(ids),  # type: ignore[union-attr]
                Experiment.stop_requested.is_not(None),  # type: ignore[union-attr]
            )
            return {int(i): str(mode) for i, mode in s.exec(q)}

    def claim_experiment(self, experiment_id: int, owner: str, lease_s: float) -> bool:
        """Take or renew the lease that lets one coordinator drive an experiment."""
        now = utcnow()
        with self.session() as s:
            res = s.execute(
                update(Experiment)
                .where(Experiment.id == experiment_id)
                .where(
                    (Experiment.lease_owner.is_(None))  # type: ignore[union-attr]
                    | (Experiment.lease_owner == owner)
                    | (Experiment.lease_expires < now)  # type: ignore[operator]
                )
                .values(lease_owner=owner, lease_expires=now + timedelta(seconds=lease_s))
            )
            s.commit()
            return res.rowcount == 1

    def release_experiment(self, experiment_id: int, owner: str) -> None:
        with self.session() as s:
            s.execute(
                update(Experiment)
                .where(Experiment.id == experiment_id, Experiment.lease_owner == owner)
                .values(lease_owner=None, lease_expires=None)
            )
            s.commit()

    def set_experiment_state(
        self, experiment_id: int, from_states: Sequence[str], to_state: str, **values: Any
    ) -> bool:
        with self.session() as s:
            res = s.execute(
                update(Experiment)
                .where(Experiment.id == experiment_id)
                .where(Experiment.state.in_(list(from_states)))  # type: ignore[attr-defined]
                .values(state=to_state, **values)
            )
            s.commit()
            return res.rowcount == 1

    def update_experiment(self, experiment_id: int, **values: Any) -> None:
        with self.session() as s:
            s.execute(update(Experiment).where(Experiment.id == experiment_id).values(**values))
            s.commit()

    # --- trials ----------------------------------------------------------------------
    def add_trials(
        self, experiment: Experiment, configs: Sequence[dict[str, Any]], first_number: int
    ) -> list[Trial]:
        """Record new trials (QUEUED) in one transaction, before anything is published."""
        trials = [
            Trial(
                experiment_id=experiment.id,  # type: ignore[arg-type]
                number=first_number + i,
                exec_id=f"{experiment.name}-{first_number + i}",
                params=dict(config),
                queue=experiment.queue,
            )
            for i, config in enumerate(configs)
        ]
        with self.session() as s:
            s.add_all(trials)
            s.commit()
            for t in trials:
                s.refresh(t)
        return trials

    def trial(self, trial_id: int) -> Trial | None:
        with self.session() as s:
            return s.get(Trial, trial_id)

    def trials(self, experiment_id: int, states: Iterable[str] | None = None) -> list[Trial]:
        with self.session() as s:
            q = select(Trial).where(Trial.experiment_id == experiment_id).order_by(Trial.number)
            if states is not None:
                q = q.where(Trial.state.in_(list(states)))  # type: ignore[attr-defined]
            return list(s.exec(q))

    def trial_rows(self, experiment_id: int) -> list[Any]:
        """Every trial of an experiment as light rows (no ORM objects): what the WMLA view needs."""
        cols = [Trial.id, Trial.number, Trial.exec_id, Trial.state, Trial.params, Trial.objective,
                Trial.metrics_summary, Trial.started_at, Trial.ended_at]  # fmt: skip
        with self.engine.connect() as conn:
            q = select(*cols).where(Trial.experiment_id == experiment_id).order_by(Trial.number)  # type: ignore[call-overload]
            return list(conn.execute(q))

    def dashboard_rows(self, experiment_id: int, ended_since: datetime | None = None) -> list[Any]:
        """Light rows for plots (no ORM objects); with `ended_since`, only trials that have not
        ended or ended at or after it (what can have changed since an earlier read)."""
        cols = [Trial.id, Trial.number, Trial.state, Trial.params, Trial.objective, Trial.started_at,
                Trial.ended_at]  # fmt: skip
        with self.engine.connect() as conn:
            q = select(*cols).where(Trial.experiment_id == experiment_id)  # type: ignore[call-overload]
            if ended_since is not None:
                q = q.where(or_(Trial.ended_at.is_(None), Trial.ended_at >= ended_since))  # type: ignore[union-attr,operator]
            return list(conn.execute(q.order_by(Trial.number)))

    def trials_fingerprint(self, experiment_id: int) -> tuple[Any, ...]:
        """Changes whenever a trial is added, starts, ends or gets another attempt."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(  # type: ignore[call-overload]
                    func.count(),
                    func.count(Trial.started_at),
                    func.count(Trial.ended_at),
                    func.max(Trial.started_at),
                    func.max(Trial.ended_at),
                    func.sum(Trial.attempt),
                ).where(Trial.experiment_id == experiment_id)
            ).one()
            return tuple(row)

    def trials_sorted(
        self,
        experiment_id: int,
        *,
        sort: str = "number",
        descending: bool = False,
        offset: int = 0,
        limit: int = 50,
        states: Iterable[str] | None = None,
    ) -> tuple[list[Trial], int]:
        """A page of trials in any column order (the dashboard table) and the total that matches."""
        column = {
            "number": Trial.number,
            "state": Trial.state,
            "objective": Trial.objective,
            "started": Trial.started_at,
            "ended": Trial.ended_at,
            "worker": Trial.worker,
            "attempt": Trial.attempt,
        }[sort]
        where = [Trial.experiment_id == experiment_id]
        if states is not None:
            where.append(Trial.state.in_(list(states)))  # type: ignore[attr-defined]
        order = column.desc() if descending else column.asc()  # type: ignore[union-attr]
        with self.session() as s:
            total = s.exec(select(func.count()).select_from(Trial).where(*where)).one()
            q = (
                select(Trial)
                .where(*where)
                .order_by(column.is_(None), order, Trial.number)  # type: ignore[union-attr]
                .offset(offset)
                .limit(limit)
            )
            return list(s.exec(q)), int(total)

    def metric_points_of(self, trial_ids: Iterable[int]) -> dict[int, list[MetricPoint]]:
        """Points of the current attempt of each of these trials, in order."""
        wanted = list(trial_ids)
        out: dict[int, list[MetricPoint]] = {i: [] for i in wanted}
        if not wanted:
            return out
        with self.session() as s:
            q = (
                select(MetricPoint, Trial.attempt)
                .join(Trial, Trial.id == MetricPoint.trial_id)  # type: ignore[arg-type]
                .where(MetricPoint.trial_id.in_(wanted))  # type: ignore[attr-defined]
                .order_by(MetricPoint.trial_id, MetricPoint.seq)
            )
            for point, attempt in s.exec(q):
                if point.attempt == attempt:
                    out[point.trial_id].append(point)
        return out

    def trials_by_ids(self, ids: Iterable[int]) -> dict[int, Trial]:
        wanted = list(ids)
        if not wanted:
            return {}
        with self.session() as s:
            return {t.id: t for t in s.exec(select(Trial).where(Trial.id.in_(wanted)))}  # type: ignore[union-attr,misc]

    def trial_by_number(self, experiment_id: int, number: int) -> Trial | None:
        with self.session() as s:
            q = select(Trial).where(Trial.experiment_id == experiment_id, Trial.number == number)
            return s.exec(q).first()

    def metric_points_page(self, trial_id: int, *, after: int = -1, limit: int = 1000) -> list[MetricPoint]:
        with self.session() as s:
            q = (
                select(MetricPoint)
                .where(MetricPoint.trial_id == trial_id, MetricPoint.seq > after)  # type: ignore[operator]
                .order_by(MetricPoint.seq)
                .limit(limit)
            )
            return list(s.exec(q))

    def trial_by_exec_id(self, exec_id: str) -> Trial | None:
        with self.session() as s:
            return s.exec(select(Trial).where(Trial.exec_id == exec_id)).first()

    def trials_page(
        self, experiment_id: int, *, after: int = -1, limit: int = 100, states: Iterable[str] | None = None
    ) -> list[Trial]:
        """Trials by number after `after`, at most `limit` (keyset pagination on the unique index)."""
        with self.session() as s:
            q = (
                select(Trial)
                .where(Trial.experiment_id == experiment_id, Trial.number > after)  # type: ignore[operator]
                .order_by(Trial.number)
                .limit(limit)
            )
            if states is not None:
                q = q.where(Trial.state.in_(list(states)))  # type: ignore[attr-defined]
            return list(s.exec(q))

    def trial_counts_many(self, experiment_ids: Iterable[int]) -> dict[int, dict[str, int]]:
        ids = list(experiment_ids)
        out: dict[int, dict[str, int]] = {i: {} for i in ids}
        if not ids:
            return out
        with self.session() as s:
            rows = s.exec(
                select(Trial.experiment_id, Trial.state, func.count())
                .where(Trial.experiment_id.in_(ids))  # type: ignore[attr-defined]
                .group_by(Trial.experiment_id, Trial.state)
            )
            for exp_id, state, n in rows:
                out[int(exp_id)][state] = int(n)
        return out

    def request_trial_stop(self, trial_id: int, mode: str) -> None:
        with self.session() as s:
            s.execute(update(Trial).where(Trial.id == trial_id).values(stop_requested=mode))
            s.commit()

    def trial_stop_requests(self, experiment_ids: Iterable[int]) -> list[Trial]:
        """In-flight trials of these experiments that the API asked to stop."""
        ids = list(experiment_ids)
        if not ids:
            return []
        with self.session() as s:
            q = select(Trial).where(
                Trial.experiment_id.in_(ids),  # type: ignore[attr-defined]
                Trial.stop_requested.is_not(None),  # type: ignore[union-attr]
                Trial.state.in_(TrialState.IN_FLIGHT),  # type: ignore[attr-defined]
            )
            return list(s.exec(q))

    def new_attempt(
        self,
        trial: Trial,
        *,
        from_states: Sequence[str],
        max_attempts: int,
        why: str,
        record: str,
        last: str = "no attempts left",
    ) -> Trial | None:
        """Replace the current attempt by the next one (QUEUED), or FAIL the trial (`last` says
        why) when the attempts are used up; the old attempt is kept in attempt_record. None if it
        changed meanwhile."""
        assert trial.id is not None
        retry = trial.attempt < max_attempts
        values: dict[str, Any] = (
            {
                "attempt": trial.attempt + 1,
                "state": TrialState.QUEUED,
                "worker": None,
                "objective": None,
                "exit_code": None,
                "result_path": None,
                "metrics_summary": None,
                "started_at": None,
                "ended_at": None,
                "retry_requested": False,
                "stop_requested": None,
                "reason": why,
            }
            if retry
            else {"state": TrialState.FAILED, "ended_at": utcnow(), "reason": f"{why}; {last}"}
        )
        with self.session() as s:
            res = s.execute(
                update(Trial)
                .where(Trial.id == trial.id, Trial.attempt == trial.attempt)
                .where(Trial.state.in_(list(from_states)))  # type: ignore[attr-defined]
                .values(**values)
            )
            if res.rowcount != 1:
                s.rollback()
                return None
            s.add(AttemptRecord(trial_id=trial.id, attempt=trial.attempt, state=record, worker=trial.worker,
                                objective=trial.objective, reason=why))  # fmt: skip
            s.commit()
            return s.get(Trial, trial.id)

    def record_late(
        self, trial_id: int, attempt: int, worker: str | None, objective: float | None, why: str
    ) -> None:
        with self.session() as s:
            s.add(AttemptRecord(trial_id=trial_id, attempt=attempt, state="LATE_RESULT", worker=worker,
                                objective=objective, reason=why))  # fmt: skip
            s.commit()

    def attempt_records(self, trial_id: int) -> list[AttemptRecord]:
        with self.session() as s:
            q = select(AttemptRecord).where(AttemptRecord.trial_id == trial_id).order_by(AttemptRecord.id)
            return list(s.exec(q))

    def request_retry(self, trial_ids: Sequence[int]) -> None:
        with self.session() as s:
            s.execute(update(Trial).where(Trial.id.in_(list(trial_ids))).values(retry_requested=True))  # type: ignore[union-attr]
            s.commit()

    def clear_retry_request(self, trial_id: int) -> None:
        with self.session() as s:
            s.execute(update(Trial).where(Trial.id == trial_id).values(retry_requested=False))
            s.commit()

    def retry_requests(self, experiment_ids: Iterable[int]) -> list[Trial]:
        """FAILED trials of these experiments that the API asked to run again (only FAILED ones are
        ever flagged; the state narrows the look-up to the experiment-and-state index, so this poll
        does not scan every trial of a 10,000-trial experiment)."""
        ids = list(experiment_ids)
        if not ids:
            return []
        with self.session() as s:
            q = select(Trial).where(
                Trial.experiment_id.in_(ids),  # type: ignore[attr-defined]
                Trial.state == TrialState.FAILED,
                Trial.retry_requested.is_(True),  # type: ignore[attr-defined]
            )
            return list(s.exec(q))

    def cancel_trial(self, trial_id: int, reason: str) -> bool:
        """A trial that never started ends CANCELLED (compare-and-set on QUEUED)."""
        with self.session() as s:
            res = s.execute(
                update(Trial)
                .where(Trial.id == trial_id, Trial.state == TrialState.QUEUED)
                .values(state=TrialState.CANCELLED, reason=reason, ended_at=utcnow())
            )
            s.commit()
            return res.rowcount == 1

    def trial_counts(self, experiment_id: int) -> dict[str, int]:
        with self.session() as s:
            rows = s.exec(
                select(Trial.state, func.count())
                .where(Trial.experiment_id == experiment_id)
                .group_by(Trial.state)
            )
            return {state: int(n) for state, n in rows}

    def metric_points(self, trial_id: int) -> list[MetricPoint]:
        with self.session() as s:
            q = select(MetricPoint).where(MetricPoint.trial_id == trial_id).order_by(MetricPoint.seq)
            return list(s.exec(q))

    def mark_started(
        self,
        trial_id: int,
        attempt: int,
        worker: str | None,
        started_at: datetime | None,
        gpus: str | None = None,
    ) -> bool:
        with self.session() as s:
            res = s.execute(
                update(Trial)
                .where(Trial.id == trial_id, Trial.attempt == attempt, Trial.state == TrialState.QUEUED)
                .values(state=TrialState.RUNNING, worker=worker, started_at=started_at or utcnow(), gpus=gpus)
            )
            s.commit()
            return res.rowcount == 1

    def record_outcome(self, trial_id: int, attempt: int, outcome: TrialOutcome) -> bool:
        """Finish an attempt exactly once: the CAS and its metric rows commit together."""
        values: dict[str, Any] = {
            "state": outcome.state,
            "objective": outcome.objective,
            "reason": outcome.reason,
            "exit_code": outcome.exit_code,
            "ended_at": outcome.ended_at or utcnow(),
            "stdout_tail": outcome.stdout_tail,
            "stderr_tail": outcome.stderr_tail,
            "result_path": outcome.result_path,
            "metrics_summary": outcome.metrics_summary,
            "notes": outcome.notes,
        }
        if outcome.worker is not None:
            values["worker"] = outcome.worker
        if outcome.started_at is not None:
            values["started_at"] = outcome.started_at
        with self.session() as s:
            res = s.execute(
                update(Trial)
                .where(Trial.id == trial_id, Trial.attempt == attempt)
                .where(Trial.state.in_(TrialState.IN_FLIGHT))  # type: ignore[attr-defined]
                .values(**values)
            )
            if res.rowcount != 1:
                s.rollback()
                return False
            self._add_new_points(s, trial_id, attempt, outcome.points)
            s.commit()
            return True

    def add_points(self, trial_id: int, attempt: int, points: Sequence[dict[str, Any]]) -> int:
        """Store streamed points of a running attempt; those already stored (by seq) are skipped."""
        with self.session() as s:
            n = self._add_new_points(s, trial_id, attempt, points)
            s.commit()
            return n

    @staticmethod
    def _add_new_points(s: Session, trial_id: int, attempt: int, points: Sequence[dict[str, Any]]) -> int:
        if not points:
            return 0
        last = s.exec(
            select(func.max(MetricPoint.seq)).where(
                MetricPoint.trial_id == trial_id, MetricPoint.attempt == attempt
            )
        ).one()
        fresh = [p for p in points if last is None or p["seq"] > last]
        s.add_all(
            MetricPoint(
                trial_id=trial_id, attempt=attempt, seq=p["seq"], step=p.get("step"), values=p["values"]
            )
            for p in fresh
        )
        return len(fresh)

    def experiment_points(self, experiment_id: int) -> list[tuple[int, int, float | None, dict[str, Any]]]:
        """(trial id, seq, step, values) of every current-attempt point, by trial number and seq."""
        with self.session() as s:
            q = (
                select(MetricPoint.trial_id, MetricPoint.seq, MetricPoint.step, MetricPoint.values)
                .join(Trial, Trial.id == MetricPoint.trial_id)  # type: ignore[arg-type]
                .where(Trial.experiment_id == experiment_id, MetricPoint.attempt == Trial.attempt)
                .order_by(Trial.number, MetricPoint.seq)
            )
            return [(int(t), int(q_), st, v) for t, q_, st, v in s.exec(q)]

    def cancel_queued(self, experiment_id: int, reason: str) -> list[Trial]:
        """Cancel trials that never started; returns them (for stop flags)."""
        with self.session() as s:
            queued = list(
                s.exec(
                    select(Trial).where(
                        Trial.experiment_id == experiment_id, Trial.state == TrialState.QUEUED
                    )
                )
            )
            done = []
            for t in queued:
                res = s.execute(
                    update(Trial)
                    .where(Trial.id == t.id, Trial.state == TrialState.QUEUED)
                    .values(state=TrialState.CANCELLED, reason=reason, ended_at=utcnow())
                )
                if res.rowcount == 1:
                    done.append(t)
            s.commit()
            return done

    def finish_experiment(self, experiment_id: int, state: str, message: str | None = None) -> bool:
        return self.set_experiment_state(
            experiment_id,
            ExperimentState.ACTIVE,
            state,
            finished_at=utcnow(),
            message=message,
            lease_owner=None,
            lease_expires=None,
        )
