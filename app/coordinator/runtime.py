"""Per-experiment bookkeeping of a coordinator and its decisions (how many to start, when done).

Pure: no I/O. Everything here is rebuilt from SQL when a coordinator adopts an experiment.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field

from app.coordinator.bundling import BundleSizer, bundles
from app.optimizers import Observation, Optimizer
from app.schedulers import Scheduler
from app.space import Config
from app.spec.model import ExperimentSpec
from app.store.models import Experiment, Trial, TrialState


@dataclass
class Counts:
    finished: int = 0
    failed: int = 0
    early_stopped: int = 0
    cancelled: int = 0


@dataclass
class ExperimentRuntime:
    experiment: Experiment
    spec: ExperimentSpec
    optimizer: Optimizer
    started_at: float  # epoch seconds
    created: int = 0  # trials recorded so far (next trial number)
    in_flight: dict[int, Trial] = field(default_factory=dict)  # trial id -> trial, QUEUED or RUNNING
    counts: Counts = field(default_factory=Counts)
    best_value: float | None = None  # objective as reported (not sign-flipped)
    best_trial_id: int | None = None
    asking: Future[list[Config]] | None = None
    ask_started: float = 0.0  # time.monotonic() when the pending ask was submitted
    ask_seconds: float | None = None  # how long the last ask took, set when its answer came
    exhausted: bool = False  # the searcher has nothing more to propose
    wait_for_result: bool = False  # the searcher answered [] while trials ran: ask again after one ends
    deadline_handled: bool = False
    stop_handled: bool = False
    stops_sent: set[int] = field(default_factory=set)  # trials whose stop request was carried out
    scheduler: Scheduler | None = None
    early_stopping: dict[int, str] = field(default_factory=dict)  # trial id -> why the scheduler stopped it
    fed: dict[int, int] = field(default_factory=dict)  # trial id -> last point seq shown to the scheduler
    retried: int = 0  # attempts started again (lost workers, retry requests)
    stopping: str | None = None  # "stop" | "force" once a stop was requested
    failure: str | None = None  # set when the experiment must end FAILED (e.g. optimizer error)
    lookahead: int = 0  # trials kept queued beyond max_parallel (see Settings.lookahead)
    bundler: BundleSizer = field(default_factory=lambda: BundleSizer(max_size=1))
    bundle_of: dict[int, int] = field(default_factory=dict)  # trial id -> its bundle's first (none: alone)

    @property
    def bundle(self) -> int:
        """Trials per Celery task (app.coordinator.bundling): never for GPU trials, synchronous
        batches or an adaptive searcher (a bundle asks for trials beyond max_parallel at once)."""
        if self.spec.resources.gpus > 0 or self.spec.limits.sync_batches or self.optimizer.adaptive:
            return 1
        return self.bundler.size

    @property
    def id(self) -> int:
        assert self.experiment.id is not None
        return self.experiment.id

    @property
    def name(self) -> str:
        return self.experiment.name

    @property
    def deadline(self) -> float | None:
        limit = self.spec.limits.max_run_time_s
        return None if limit is None else self.started_at + limit

    def deadline_passed(self, now: float) -> bool:
        return self.deadline is not None and now >= self.deadline

    @property
    def budget_left(self) -> int | None:
        """maxJobNum minus trials that count: those cancelled before they started do not."""
        limit = self.spec.limits.max_trials
        return None if limit is None else max(limit - (self.created - self.counts.cancelled), 0)

    def wanted(self, now: float) -> int:
        """How many new trials to ask for right now."""
        if self.stopping or self.failure or self.exhausted or self.wait_for_result:
            return 0
        if self.deadline_passed(now):
            return 0
        if self.spec.limits.sync_batches and self.in_flight:
            return 0
        free = (self.spec.limits.max_parallel + self.lookahead - self.tasks_in_flight) * self.bundle
        if self.budget_left is not None:
            free = min(free, self.budget_left)
        return max(free, 0)

    @property
    def tasks_in_flight(self) -> int:
        """Celery tasks with a trial still queued or running: a bundle holds its slot until its last
        trial ends, so bundles, not trials, count against max_parallel."""
        if not self.bundle_of:
            return len(self.in_flight)
        return len({self.bundle_of.get(tid, ~tid) for tid in self.in_flight})  # ~tid < 0: alone

    def sent_together(self, trial_ids: list[int]) -> None:
        """These trials went out as one bundle (known by its first trial)."""
        for tid in trial_ids:
            self.bundle_of[tid] = trial_ids[0]

    def grouped(self, trials: list[Trial]) -> list[list[Trial]]:
        """`trials` in the groups they go out in (one Celery task each), remembered for
        tasks_in_flight; a trial sent alone (e.g. a new attempt of a bundled one) is its own task."""
        groups = bundles(trials, self.bundle)
        for group in groups:
            if len(group) > 1:
                self.sent_together([t.id for t in group])  # type: ignore[misc]
            else:
                self.bundle_of.pop(group[0].id, None)  # type: ignore[arg-type]
        return groups

    def allow_lookahead(self, wanted: int, queue_slots: int) -> None:
        """Queue `wanted` trials ahead only while the queue's `queue_slots` slots (0: unknown) cannot
        run more than max_parallel at once, so the extra trials wait for a slot of this experiment;
        never for synchronous batches (a batch is max_parallel trials)."""
        fits = 0 < queue_slots <= self.spec.limits.max_parallel
        self.lookahead = wanted if fits and not self.spec.limits.sync_batches else 0

    def done(self, now: float) -> bool:
        if self.in_flight or self.asking is not None:
            return False
        return bool(
            self.stopping
            or self.failure
            or self.exhausted
            or self.budget_left == 0
            or self.deadline_passed(now)
        )

    def end_message(self, now: float) -> str:
        if self.failure:
            return self.failure
        if self.stopping:
            return "stopped on request"
        if self.budget_left == 0:
            return "maxJobNum reached"
        if self.deadline_passed(now):
            return "maxRunTime reached"
        return "search space exhausted"

    def observe(self, trial: Trial, state: str, objective: float | None) -> Observation:
        """Account for a finished attempt; returns what to tell the optimizer."""
        config = self.in_flight.pop(trial.id, trial).params  # type: ignore[arg-type]
        self.bundle_of.pop(trial.id, None)  # type: ignore[arg-type]
        self.wait_for_result = False
        if state == TrialState.FINISHED:
            self.counts.finished += 1
            if objective is not None and self._better(objective):
                self.best_value, self.best_trial_id = objective, trial.id
        elif state == TrialState.EARLY_STOPPED:
            self.counts.early_stopped += 1
        elif state == TrialState.CANCELLED:
            self.counts.cancelled += 1
        else:
            self.counts.failed += 1
        loss = (
            None
            if objective is None or state != TrialState.FINISHED
            else self.spec.objective.sign * objective
        )
        return Observation(config=dict(config), loss=loss, trial=trial.number, state=state, value=objective)

    def running_configs(self) -> list[Config]:
        return [dict(t.params) for t in self.in_flight.values()]

    def _better(self, value: float) -> bool:
        if self.best_value is None:
            return True
        if self.spec.objective.direction == "minimize":
            return value < self.best_value
        return value > self.best_value
