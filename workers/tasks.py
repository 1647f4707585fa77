"""Celery tasks: thin wrappers; the work is in workers.runner."""

from __future__ import annotations

from typing import Any

from celery.signals import worker_process_init

from app.keys import RUN_TRIAL_TASK
from app.messages import TrialTask
from workers.celery_app import app
from workers.slot import current_runner, init_slot


@worker_process_init.connect
def _init_slot(**_: Any) -> None:
    init_slot()


@app.task(name=RUN_TRIAL_TASK, bind=True, acks_late=True, ignore_result=True)
def run_trial(self: Any, task: dict[str, Any]) -> str | None:
    event = current_runner(self.request.hostname).run(TrialTask.model_validate(task))
    return None if event is None else event.status
