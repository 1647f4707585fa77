"""The coordinator loop: adopt experiments, record events, ask, record trials, publish, finish.

It is the only writer of trial state. Per tick: adopt active experiments (a lease per experiment
keeps two coordinators apart), read worker events and record each in SQL before acking it, hand
finished trials to the optimizer, start trials while slots are free, enforce maxJobNum and
maxRunTime, finish experiments. Slow optimizers answer through the Asker from another process.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError as SQLAlchemyOperationalError

from app.config import Settings
from app.coordinator.asker import Asker
from app.coordinator.bundling import BundleSizer
from app.coordinator.coverage import QueueCoverage
from app.coordinator.dispatch import Publisher, build_task
from app.coordinator.leases import LeaseKeeper
from app.coordinator.runtime import ExperimentRuntime
from app.coordinator.streams import Delivery, EventStreams
from app.fleet import live_workers, queue_slots
from app.messages import TrialEvent
from app.optimizers import Observation, OptimizerContext, create_optimizer
from app.schedulers import Decision, create_scheduler
from app.space import Config
from app.spec.model import ExperimentSpec
from app.store.artifacts import ArtifactStore
from app.store.batch import FinishOp, Op, PointsOp, StartOp, TrialWriter
from app.store.models import Experiment, ExperimentState, Trial, TrialState, utcnow
from app.store.repository import Store, TrialOutcome
from app.suggest_metrics import record_suggestions
from workers.environment import secrets_of

log = logging.getLogger("hpo.coordinator")

STATUS_TO_STATE = {"ok": TrialState.FINISHED, "failed": TrialState.FAILED, "stopped": TrialState.FAILED}


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def _stamp_ask(rt: ExperimentRuntime, future: Future[Any]) -> None:
    """When an ask's answer is ready (maybe on another thread): its latency, for /metrics."""
    rt.ask_seconds = time.monotonic() - rt.ask_started


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _ends_here(event: TrialEvent, ended: set[tuple[int, int]]) -> bool:
    """A `started` event whose attempt's `finished` is in the same batch: the end's write records
    the start too (state from queued, worker, started_at), so the start needs none of its own.
    Not with GPUs: only the start records them."""
    return event.kind == "started" and not event.gpus and (event.trial_id, event.attempt) in ended


class Coordinator:
    def __init__(
        self,
        store: Store,
        redis: Any,
        publisher: Publisher,
        artifacts: ArtifactStore,
        settings: Settings,
        *,
        only: Iterable[int] | None = None,
        asker: Asker | None = None,
    ) -> None:
        self.store = store
        self.writer = TrialWriter(store.engine)
        self.redis = redis
        self.publisher = publisher
        self.artifacts = artifacts
        self.settings = settings
        self.only = set(only) if only is not None else None
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.asker = asker or Asker(settings.ask_processes)
        self.streams = EventStreams(redis, self.owner)
        self.runtimes: dict[int, ExperimentRuntime] = {}
        self.finished: list[int] = []  # experiments this coordinator ended, in order
        self._suggestions: list[tuple[str, float]] = []  # ask latencies not yet counted in Redis
        self._last_poll = 0.0
        self._last_renew = time.monotonic()
        self._last_lease_check = time.monotonic()
        self._last_coverage = time.monotonic()
        self.coverage = QueueCoverage(redis, store)
        self.leases = LeaseKeeper(
            redis, lease_timeout_s=settings.lease_timeout_s, heartbeat_s=settings.heartbeat_s
        )

    # --- running ---------------------------------------------------------------------
    def run(
        self,
        *,
        should_stop: Callable[[], bool] = lambda: False,
        on_tick: Callable[[Coordinator], None] | None = None,
        max_errors: int = 30,
    ) -> None:
        """Tick until `should_stop()`; the caller closes (see `close`)."""
        errors = outage = 0
        while not should_stop():
            try:
                self.tick()
                errors = outage = 0
            except (RedisError, SQLAlchemyOperationalError) as exc:  # wait out a broker or DB outage
                outage += 1
                log.warning("broker or database unreachable (%s); retrying", exc)
                time.sleep(min(0.2 * outage, 5.0))
            except Exception:
                errors += 1
                log.exception("coordinator tick failed (%d in a row)", errors)
                if errors >= max_errors:
                    raise
                time.sleep(min(0.2 * errors, 2.0))
            if on_tick is not None:
                on_tick(self)

    def close(self) -> None:
        self._flush_suggestions()
        self.asker.close()
        for rt in list(self.runtimes.values()):
            rt.optimizer.close()
            self.store.release_experiment(rt.id, self.owner)
        self.runtimes.clear()

    def tick(self) -> None:
        now = time.monotonic()
        if now - self._last_poll >= self.settings.poll_interval_s:
            self._last_poll = now
            self._flush_suggestions()
            self._watch_broker()
            self._adopt()
            self._refresh_stop_requests()
            self._refresh_retry_requests()
        if now - self._last_renew >= self.settings.lease_s / 3:
            self._last_renew = now
            self._renew_leases()
        if now - self._last_lease_check >= self.settings.lease_check_s:
            self._last_lease_check = now
            self._check_trial_leases()
        if now - self._last_coverage >= self.settings.coverage_check_s:
            self._last_coverage = now
            workers = live_workers(self.redis) if self.runtimes else []
            self.coverage.check(list(self.runtimes.values()), workers)
            self._set_lookahead(list(self.runtimes.values()), queue_slots(workers))
        asking = any(rt.asking is not None for rt in self.runtimes.values())
        block = 20 if asking else self.settings.event_block_ms
        if any(rt.asking is None and rt.wanted(time.time()) > 0 for rt in self.runtimes.values()):
            block = 0  # trials to start (e.g. an experiment just adopted): do not wait for events first
        if self.runtimes:
            by_name = {rt.name: rt for rt in self.runtimes.values()}
            deliveries = self.streams.read(list(by_name), block)
            if block:  # not while trials wait to start
                deliveries += self._linger(deliveries, by_name)
            self._handle_batch(deliveries, by_name)
        else:
            time.sleep(self.settings.poll_interval_s)
        for rt in list(self.runtimes.values()):
            self._collect_ask(rt)
            self._advance(rt, time.time())

    def _linger(self, deliveries: list[Delivery], by_name: dict[str, ExperimentRuntime]) -> list[Delivery]:
        """More events before handling a read: while those read are all `started` (they start
        nothing), for up to `event_linger_ms`, so a short trial's start and end share one
        transaction and one write; while every experiment they belong to sends its trials in
        bundles, for up to `bundle_linger_ms`, so more trials share a batch's fixed costs (a slot
        has a bundle queued behind the one it runs: it does not wait for the batch)."""
        more: list[Delivery] = []
        now = time.monotonic()
        starts_until = now + self.settings.event_linger_ms / 1000
        bundles_until = now + self.settings.bundle_linger_ms / 1000
        names = list(by_name)
        while deliveries:
            read = (*deliveries, *more)
            if all(d.event.kind == "started" for d in read):
                deadline = starts_until
            elif all((rt := by_name.get(d.event.experiment)) is not None and rt.bundle > 1 for d in read):
                deadline = bundles_until
            else:
                break
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                break
            fresh = self.streams.read(names, left_ms)
            if not fresh:
                break
            more += fresh
        return more

    def _flush_suggestions(self) -> None:
        samples, self._suggestions = self._suggestions, []
        record_suggestions(self.redis, samples)

    # --- experiments -----------------------------------------------------------------
    def _adopt(self) -> None:
        for exp_id in self.store.active_experiment_ids():
            if exp_id in self.runtimes or (self.only is not None and exp_id not in self.only):
                continue
            if self.store.claim_experiment(exp_id, self.owner, self.settings.lease_s):
                exp = self.store.experiment(exp_id)
                if exp is not None and exp.state in ExperimentState.ACTIVE:
                    self._load(exp)

    def _load(self, exp: Experiment) -> None:
        assert exp.id is not None
        spec = ExperimentSpec.model_validate(exp.spec)
        if exp.state == ExperimentState.SUBMITTED:
            started = utcnow()
            self.store.set_experiment_state(
                exp.id, [ExperimentState.SUBMITTED], ExperimentState.RUNNING, started_at=started
            )
            exp.state, exp.started_at = ExperimentState.RUNNING, started
        try:
            optimizer = create_optimizer(spec, exp.seed, self._optimizer_context(exp))
        except Exception as exc:
            log.exception("cannot create optimizer for %s", exp.name)
            self.store.finish_experiment(exp.id, ExperimentState.FAILED, f"optimizer error: {exc}")
            return
        started_at = (exp.started_at or utcnow()).timestamp()
        bundler = BundleSizer(target_s=self.settings.bundle_target_s, max_size=self.settings.bundle_max)
        rt = ExperimentRuntime(
            experiment=exp, spec=spec, optimizer=optimizer, started_at=started_at, bundler=bundler
        )
        trials = self.store.trials(exp.id)
        optimizer.mark_proposed([t.params for t in trials])
        rt.created = len(trials)
        observations = []
        for t in trials:
            rt.in_flight[t.id] = t  # type: ignore[index]
            if t.state in TrialState.DONE:
                observations.append(rt.observe(t, t.state, t.objective))
        optimizer.tell(observations)
        rt.scheduler = create_scheduler(spec.scheduler)
        self.runtimes[exp.id] = rt
        if rt.scheduler is not None:
            self._replay_points(rt, trials)
        self.streams.attach(exp.name)
        if self.settings.lookahead:  # else from the next coverage check on
            with contextlib.suppress(RedisError):
                self._set_lookahead([rt], queue_slots(live_workers(self.redis)))
        queued = [t for t in rt.in_flight.values() if t.state == TrialState.QUEUED]
        if queued:  # maybe never published before a crash; a duplicate is skipped by its claim key
            self._publish(rt, queued)
        log.info("driving %s (%s, %d trials so far)", exp.name, spec.algorithm.display_name, rt.created)

    def _set_lookahead(self, runtimes: list[ExperimentRuntime], slots: dict[str, int]) -> None:
        for rt in runtimes:
            rt.allow_lookahead(self.settings.lookahead, slots.get(rt.experiment.queue, 0))

    def _optimizer_context(self, exp: Experiment) -> OptimizerContext:
        """User algorithms: installed plugins' code, their saved state, limits, secrets to hide."""
        assert exp.id is not None
        exp_id = exp.id

        def archive(name: str) -> bytes | None:
            plugin = self.store.plugin(name)
            return None if plugin is None else plugin.archive

        return OptimizerContext(
            plugin_archive=archive,
            saved_state=exp.optimizer_state,
            persist=lambda blob: self.store.update_experiment(exp_id, optimizer_state=blob),
            timeout_s=self.settings.plugin_timeout_s,
            memory_mb=self.settings.plugin_memory_mb,
            log_path=self.settings.home.resolve() / "logs" / f"plugin-{exp.name}.log",
            secrets=secrets_of([self.settings.broker_url, self.settings.database_url]),
        )

    def _replay_points(self, rt: ExperimentRuntime, trials: list[Trial]) -> None:
        """Rebuild the scheduler from stored points (by trial number, then seq)."""
        by_id = {t.id: t for t in trials}
        points: dict[int, list[dict[str, Any]]] = {}
        for trial_id, seq, step, values in self.store.experiment_points(rt.id):
            points.setdefault(trial_id, []).append({"seq": seq, "step": step, "values": values})
        for trial_id, rows in points.items():
            trial = by_id.get(trial_id)
            if trial is None:
                continue
            if trial.id in rt.in_flight:
                self._schedule(rt, trial, rows)
            else:  # ended trials only inform the rungs
                for row in rows:
                    value = _finite(row["values"].get(rt.spec.objective.metric))
                    if value is not None and rt.scheduler is not None:
                        resource = row["step"] if row["step"] is not None else row["seq"] + 1
                        rt.scheduler.on_result(trial_id, resource, rt.spec.objective.sign * value)

    # --- lost attempts, broker restarts, retries ----------------------------------------------
    def _watch_broker(self) -> None:
        if self.leases.broker_restarted():
            log.warning("the broker restarted: re-creating event groups, re-publishing unclaimed trials soon")
            self.publisher.forget_code()
            for rt in self.runtimes.values():
                self.streams.attach(rt.name)
        if self.leases.due_republish():
            for rt in self.runtimes.values():
                queued = [t for t in rt.in_flight.values() if t.state == TrialState.QUEUED]
                lost = self.leases.unclaimed(queued)
                if lost:
                    log.warning("%s: publishing %d queued trials the broker lost", rt.name, len(lost))
                    self._publish(rt, lost)

    def _check_trial_leases(self) -> None:
        for rt in list(self.runtimes.values()):
            for trial in self.leases.lost(rt.name, list(rt.in_flight.values())):
                worker = trial.worker or "unknown"
                why = f"attempt {trial.attempt} lost: its worker ({worker}) stopped heartbeating"
                self._next_attempt(rt, trial, why, "LOST", trial.attempt < 1 + rt.spec.limits.retries)

    def _next_attempt(
        self, rt: ExperimentRuntime, trial: Trial, why: str, record: str, allowed: bool
    ) -> None:
        """Run the trial's configuration again as a new attempt, or fail it when none is allowed
        or the experiment is ending (stopped, or past maxRunTime)."""
        last = "no attempts left"
        if allowed and (rt.stopping or rt.deadline_passed(time.time())):
            allowed, last = False, "the experiment is ending"
        limit = trial.attempt + 1 if allowed else trial.attempt
        states = TrialState.IN_FLIGHT if record == "LOST" else (TrialState.FAILED,)
        new = self.store.new_attempt(
            trial, from_states=states, max_attempts=limit, why=why, record=record, last=last
        )
        if new is None:
            return  # it changed meanwhile (a late event, a stop)
        log.warning("%s: %s", trial.exec_id, why)
        if new.state == TrialState.QUEUED:
            rt.in_flight[new.id] = new  # type: ignore[index]
            rt.retried += 1
            self._publish(rt, [new], first=True)
        else:
            rt.optimizer.tell([rt.observe(trial, TrialState.FAILED, None)])

    def _refresh_retry_requests(self) -> None:
        for trial in self.store.retry_requests(list(self.runtimes)):
            rt = self.runtimes[trial.experiment_id]
            if trial.state != TrialState.FAILED:
                self.store.clear_retry_request(trial.id)  # type: ignore[arg-type]
                continue
            rt.counts.failed -= 1
            self._next_attempt(rt, trial, "retried on request", "RETRIED", True)

    def _refresh_stop_requests(self) -> None:
        waiting = [rt.id for rt in self.runtimes.values() if not rt.stopping]
        for exp_id, mode in self.store.stop_requests(waiting).items():
            self.runtimes[exp_id].stopping = mode
        for trial in self.store.trial_stop_requests(list(self.runtimes)):
            rt = self.runtimes[trial.experiment_id]
            if trial.id in rt.stops_sent or trial.id not in rt.in_flight:
                continue
            rt.stops_sent.add(trial.id)  # type: ignore[arg-type]
            force = trial.stop_requested == "force"
            if self.store.cancel_trial(trial.id, "stopped on request before it started"):  # type: ignore[arg-type]
                rt.observe(trial, TrialState.CANCELLED, None)
                self.publisher.stop_trials([trial.exec_id], "cancelled")
            else:  # running: its worker kills it and reports
                self.publisher.stop_trials([trial.exec_id], "stopped on request", force=force)

    def request_stop(self, experiment_id: int, mode: str = "stop") -> None:
        self.store.update_experiment(experiment_id, stop_requested=mode)
        rt = self.runtimes.get(experiment_id)
        if rt is not None:
            rt.stopping = mode

    def _renew_leases(self) -> None:
        for rt in list(self.runtimes.values()):
            if not self.store.claim_experiment(rt.id, self.owner, self.settings.lease_s):
                log.warning("lost the lease on %s to another coordinator", rt.name)
                rt.optimizer.close()
                del self.runtimes[rt.id]

    # --- events ----------------------------------------------------------------------
    def _handle_batch(self, deliveries: list[Delivery], by_name: dict[str, ExperimentRuntime]) -> None:
        """Record a batch of events in one SQL transaction, then act on them, then ack them all.

        Nothing is acked before the commit that records it; a replayed event is a no-op (every
        write is a compare-and-set on the attempt). If the database fails, the batch is read again.
        """
        if not deliveries:
            return
        keys = [d.event.result_key for d in deliveries if d.event.kind == "finished" and d.event.result_key]
        ended = {(d.event.trial_id, d.event.attempt) for d in deliveries if d.event.kind == "finished"}
        try:  # until the commit, a failure hands the whole batch out again (a replay is harmless)
            blobs = dict(zip(keys, self.redis.mget(keys), strict=True)) if keys else {}
            plan = [
                (d, self._op(d.event, by_name.get(d.event.experiment), blobs))
                for d in deliveries
                if not _ends_here(d.event, ended)
            ]
            applied = iter(self.writer.apply([op for _, op in plan if op is not None]))
        except Exception:
            self.streams.requeue(deliveries)
            raise
        tells: dict[int, list[Observation]] = {}
        best_before = {rt.id: rt.best_trial_id for rt in by_name.values()}
        for d, op in plan:
            if op is not None:
                self._after(d.event, by_name.get(d.event.experiment), op, next(applied), tells)
        for exp_id, observations in tells.items():
            rt = self.runtimes.get(exp_id)
            if rt is not None:
                rt.optimizer.tell(observations)
        for rt in by_name.values():
            if rt.best_trial_id != best_before.get(rt.id):
                self.writer.set_best(rt.id, rt.best_trial_id, rt.best_value)
        self.streams.ack_many(deliveries, [k for k in keys if k])

    def _op(self, event: TrialEvent, rt: ExperimentRuntime | None, blobs: dict[Any, Any]) -> Op | None:
        """The SQL write an event asks for (None: nothing to write)."""
        if event.kind == "started":
            started = _dt(event.started_at or event.ts)
            return StartOp(event.trial_id, event.attempt, event.worker, started, ",".join(event.gpus) or None)
        if event.kind == "metric":
            trial = rt.in_flight.get(event.trial_id) if rt is not None else None
            if rt is None or trial is None or trial.attempt != event.attempt:
                return None  # an attempt that no longer counts
            return PointsOp(event.trial_id, event.attempt, event.points)
        if event.kind != "finished":
            return None
        result_path = None
        data = blobs.get(event.result_key) if event.result_key else None
        if data is not None:
            result_path = self.artifacts.put_result(event.experiment, event.exec_id, event.attempt, data)
        state = STATUS_TO_STATE.get(event.status or "failed", TrialState.FAILED)
        reason = event.reason
        early = rt.early_stopping.get(event.trial_id) if rt is not None else None
        if early is not None and event.status == "stopped":
            state, reason = TrialState.EARLY_STOPPED, early
        objective = event.objective if state in (TrialState.FINISHED, TrialState.EARLY_STOPPED) else None
        outcome = TrialOutcome(
            state=state,
            objective=objective,
            reason=reason,
            exit_code=event.exit_code,
            worker=event.worker,
            started_at=_dt(event.started_at),
            ended_at=_dt(event.ended_at),
            stdout_tail=event.stdout_tail,
            stderr_tail=event.stderr_tail,
            result_path=result_path,
            metrics_summary=event.metrics_summary,
            points=event.points,
            notes=event.notes or None,
        )
        return FinishOp(event.trial_id, event.attempt, outcome)

    def _after(
        self,
        event: TrialEvent,
        rt: ExperimentRuntime | None,
        op: Op,
        applied: bool,
        tells: dict[int, list[Observation]],
    ) -> None:
        """What follows a recorded event in memory: trial state, scheduler, optimizer (batched)."""
        trial = rt.in_flight.get(event.trial_id) if rt is not None else None
        if event.kind == "started":
            if applied and trial is not None and trial.attempt == event.attempt:
                trial.state, trial.worker = TrialState.RUNNING, event.worker
            return
        if event.kind == "metric":
            if rt is not None and trial is not None and trial.attempt == event.attempt:
                self._schedule(rt, trial, event.points)
            return
        if not applied:
            current = self.store.trial(event.trial_id)
            if current is not None and current.attempt != event.attempt:  # superseded: kept, not counted
                why = f"result of attempt {event.attempt} arrived after attempt {current.attempt} replaced it"
                self.store.record_late(event.trial_id, event.attempt, event.worker, event.objective, why)
            return  # a duplicate, or an attempt that no longer counts
        if rt is None or trial is None or not isinstance(op, FinishOp):
            return
        if rt.scheduler is not None:
            self._schedule(rt, trial, event.points)  # points that came only with the end still count
            rt.scheduler.on_complete(event.trial_id)
            rt.fed.pop(event.trial_id, None)
        rt.early_stopping.pop(event.trial_id, None)
        if event.started_at is not None and event.ended_at is not None and event.status == "ok":
            rt.bundler.observe(event.ended_at - event.started_at)
        tells.setdefault(rt.id, []).append(rt.observe(trial, op.outcome.state, op.outcome.objective))

    def _schedule(self, rt: ExperimentRuntime, trial: Trial, points: list[dict[str, Any]]) -> None:
        """Show the scheduler each point once, in order; carry out a stop."""
        if rt.scheduler is None or trial.id in rt.early_stopping:
            return
        for point in points:
            if point["seq"] <= rt.fed.get(trial.id, -1):  # type: ignore[arg-type]
                continue
            rt.fed[trial.id] = point["seq"]  # type: ignore[index]
            value = _finite(point.get("values", {}).get(rt.spec.objective.metric))
            if value is None:
                continue
            resource = point["step"] if point.get("step") is not None else point["seq"] + 1
            if rt.scheduler.on_result(trial.id, resource, rt.spec.objective.sign * value) is Decision.STOP:  # type: ignore[arg-type]
                why = rt.scheduler.describe(trial.id, resource)  # type: ignore[arg-type]
                rt.early_stopping[trial.id] = why  # type: ignore[index]
                self.publisher.stop_trials([trial.exec_id], why)
                return

    # --- asking and launching ----------------------------------------------------------
    def _collect_ask(self, rt: ExperimentRuntime) -> None:
        future = rt.asking
        if future is None or not future.done():
            return
        rt.asking = None
        try:
            configs = future.result()
        except Exception as exc:
            log.exception("optimizer of %s failed", rt.name)
            rt.failure = f"optimizer error: {type(exc).__name__}: {exc}"
            return
        seconds = rt.ask_seconds if rt.ask_seconds is not None else time.monotonic() - rt.ask_started
        self._suggestions.append((rt.experiment.algorithm, seconds))  # counted at the next poll
        if not configs:
            if rt.in_flight:
                rt.wait_for_result = True
            else:
                rt.exhausted = True
            return
        configs = configs[: rt.wanted(time.time())]
        if configs:
            self._launch(rt, configs)

    def _launch(self, rt: ExperimentRuntime, configs: list[Config]) -> None:
        trials = self.writer.add_trials(rt.experiment, configs, rt.created)
        rt.created += len(trials)
        rt.optimizer.mark_proposed(configs)
        for t in trials:
            rt.in_flight[t.id] = t  # type: ignore[index]
        self._publish(rt, trials, first=True)

    def _publish(self, rt: ExperimentRuntime, trials: list[Any], *, first: bool = False) -> None:
        assert rt.experiment.code_hash is not None
        code = self.publisher.ensure_code(rt.experiment.code_hash)
        resource = rt.optimizer.resource_name
        groups = rt.grouped(trials)
        tasks = [[build_task(rt.experiment, rt.spec, t, code, resource) for t in group] for group in groups]
        self.publisher.publish_groups(tasks, rt.experiment.queue, first=first)

    # --- limits and the end --------------------------------------------------------------
    def _advance(self, rt: ExperimentRuntime, now: float) -> None:
        if rt.stopping and not rt.stop_handled:
            self._cancel_queued(rt, "experiment stopped before the trial started")
            running = [t.exec_id for t in rt.in_flight.values()]
            self.publisher.stop_trials(running, "experiment stopped", force=rt.stopping == "force")
            rt.stop_handled = True
        if rt.deadline_passed(now) and not rt.deadline_handled:
            self._cancel_queued(rt, "maxRunTime reached before the trial started")
            if rt.spec.limits.kill_on_timeout:
                self.publisher.stop_trials([t.exec_id for t in rt.in_flight.values()], "maxRunTime reached")
            rt.deadline_handled = True
        n = rt.wanted(now)
        if n > 0 and rt.asking is None:
            rt.ask_started, rt.ask_seconds = time.monotonic(), None
            rt.asking = self.asker.submit(rt.optimizer, n, rt.running_configs())
            rt.asking.add_done_callback(functools.partial(_stamp_ask, rt))
            self._collect_ask(rt)  # inline searchers answer at once
        if rt.done(now):
            self._finish(rt)

    def _cancel_queued(self, rt: ExperimentRuntime, reason: str) -> None:
        cancelled = self.store.cancel_queued(rt.id, reason)
        self.publisher.stop_trials([t.exec_id for t in cancelled], "cancelled")
        for t in cancelled:
            if t.id in rt.in_flight:
                rt.observe(t, TrialState.CANCELLED, None)

    def _finish(self, rt: ExperimentRuntime) -> None:
        now = time.time()
        if rt.failure:
            state = ExperimentState.FAILED
        elif rt.stopping:
            state = ExperimentState.STOPPED
        else:
            state = ExperimentState.FINISHED
        message = rt.end_message(now)
        self.store.finish_experiment(rt.id, state, message)
        self.streams.detach(rt.name)
        self.publisher.drop_checkpoints(rt.name)
        code_hash = rt.experiment.code_hash
        rt.optimizer.close()
        del self.runtimes[rt.id]
        others = [
            e
            for e in self.store.experiments(ExperimentState.ACTIVE)
            if e.code_hash == code_hash and e.id != rt.id
        ]
        if code_hash and not others:
            self.publisher.drop_code(code_hash)
        self._flush_suggestions()
        self.finished.append(rt.id)
        log.info("%s %s: %s", rt.name, state, message)
