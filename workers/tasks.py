"""Celery tasks: thin wrappers; the work is in workers.runner, the GPU grants in workers.slot."""

from __future__ import annotations

from typing import Any

from celery.signals import worker_process_init, worker_process_shutdown

from app.keys import RUN_TRIAL_TASK, RUN_TRIALS_TASK, queue_gpus
from app.messages import TrialTask
from workers.celery_app import app
from workers.runner import Ran, TrialRunner
from workers.slot import (
    current_allocator,
    current_runner,
    drain_runner,
    give_back,
    init_slot,
    wait_for_gpus,
)


@worker_process_init.connect
def _init_slot(**_: Any) -> None:
    init_slot()


@worker_process_shutdown.connect
def _drain_slot(**_: Any) -> None:
    """Publish the ends of trials still being concluded before the pool process exits."""
    drain_runner()


@app.task(name=RUN_TRIAL_TASK, bind=True, acks_late=True, ignore_result=True)
def run_trial(self: Any, task: dict[str, Any]) -> str | None:
    return _run(self.request, TrialTask.model_validate(task))


@app.task(name=RUN_TRIALS_TASK, bind=True, acks_late=True, ignore_result=True)
def run_trials(self: Any, tasks: list[dict[str, Any]]) -> list[str | None]:
    """A bundle of short trials (app.coordinator.bundling), one after another on this slot. All are
    claimed for this delivery first (TrialRunner.reserve): a copy delivered again skips them, and if
    this worker dies their leases lapse and the coordinator runs them again."""
    trials = [TrialTask.model_validate(t) for t in tasks]
    runner = current_runner(self.request.hostname)
    token = runner.new_token()
    runner.reserve(trials, token)
    return [_run(self.request, trial, token) for trial in trials]


def _run(request: Any, trial: TrialTask, token: str | None = None) -> str | None:
    runner = current_runner(request.hostname)
    allocator = current_allocator()
    queue = (request.delivery_info or {}).get("routing_key") or ""
    if allocator is None or trial.gpus <= 0 or queue_gpus(queue) == 0:  # a CPU slot (`--cpu` runs)
        return _conclude(runner, runner.attempt(trial, token=token))
    task_id = request.id
    devices, ours = wait_for_gpus(allocator, task_id, trial.gpus)
    if not ours:  # a redelivered copy of an attempt running here: its claim stops it; keep the grant
        return _conclude(runner, runner.attempt(trial, devices=devices))
    pgid: list[int] = []

    def started(group: int) -> None:
        pgid.append(group)
        allocator.started(task_id, group)

    try:
        ran = runner.attempt(trial, devices=devices, on_spawn=started)
    finally:
        give_back(allocator, task_id, pgid[0] if pgid else None)
    return _conclude(runner, ran)


def _conclude(runner: TrialRunner, ran: Ran | None) -> str | None:
    """The results go out on the runner's background thread; the slot is free for its next task."""
    if ran is None:
        return None
    runner.conclude_later(ran)
    return ran.outcome.status
