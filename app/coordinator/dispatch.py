"""Publish run_trial tasks to the experiment's resource queue, and ship code to the broker."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from celery import Celery

from app.keys import (
    RUN_TRIAL_TASK,
    RUN_TRIALS_TASK,
    checkpoint_key,
    code_key,
    current_attempt_key,
    encode_stop,
    leftover_keys,
    stop_key,
)
from app.messages import CodeRef, TrialTask
from app.spec.model import ExperimentSpec
from app.store.models import Experiment, Trial
from app.store.repository import Store

log = logging.getLogger("hpo.coordinator")


def lineage_key(params: dict[str, Any], resource_name: str) -> str:
    """Proposals equal but for their budget continue one another: one key, one checkpoint."""
    base = {k: v for k, v in params.items() if k != resource_name}
    return hashlib.sha256(json.dumps(base, sort_keys=True).encode()).hexdigest()[:24]


def trial_config(spec: ExperimentSpec, params: dict[str, Any]) -> dict[str, Any]:
    """config.json: the trial's parameters, plus the scheduler's resource at its maximum."""
    sched = spec.scheduler
    if sched is None or not sched.resource or sched.resource in params:
        return dict(params)
    budget = int(sched.max) if float(sched.max).is_integer() else sched.max
    return {**params, sched.resource: budget}


def build_task(
    experiment: Experiment,
    spec: ExperimentSpec,
    trial: Trial,
    code: CodeRef,
    resource_name: str | None = None,
) -> TrialTask:
    return TrialTask(
        experiment=experiment.name,
        trial_id=trial.id,  # type: ignore[arg-type]
        exec_id=trial.exec_id,
        number=trial.number,
        attempt=trial.attempt,
        params=trial_config(spec, trial.params),
        code=code,
        main=spec.model.main,
        model_dir=spec.model.model_dir,
        args=list(spec.model.args),
        data_path=spec.model.data_path,
        objective_metric=spec.objective.metric,
        direction=spec.objective.direction,
        env=dict(spec.env),
        timeout_s=spec.limits.trial_timeout_s,
        owner=experiment.owner,
        gpus=spec.resources.gpus,
        launcher=spec.resources.launcher,
        mode=spec.model.mode,
        preload=list(spec.model.preload),
        function=spec.model.function,
        checkpoint_key=lineage_key(trial.params, resource_name) if resource_name else None,
    )


SUMMARY_MAX_CHARS = 500


def task_summary(task: TrialTask, max_chars: int = SUMMARY_MAX_CHARS) -> str:
    """What Flower shows as the task's arguments: who it is for and its parameters, not the
    whole message (code reference, environment, arguments)."""
    text = repr(
        {
            "experiment": task.experiment,
            "trial": task.number,
            "attempt": task.attempt,
            "exec_id": task.exec_id,
            "params": task.params,
        }
    )
    return _clip(text, max_chars)


def bundle_summary(group: Sequence[TrialTask], max_chars: int = SUMMARY_MAX_CHARS) -> str:
    """Flower's view of a bundle: its experiment and trial numbers."""
    numbers = ", ".join(str(t.number) for t in group)
    return _clip(repr({"experiment": group[0].experiment, "trials": f"[{numbers}]"}), max_chars)


def _clip(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[: max_chars - 3] + "..."


class Publisher:
    def __init__(self, celery_app: Celery, redis: Any, store: Store, *, code_check_s: float = 1.0) -> None:
        self.celery = celery_app
        self.redis = redis
        self.store = store
        self.code_check_s = code_check_s  # how long a seen archive is trusted to be in Redis
        self._code_seen: dict[str, tuple[float, CodeRef]] = {}

    def ensure_code(self, sha: str) -> CodeRef:
        """Put the archive in Redis unless it is there (also after a Redis restart). Checked at
        most every `code_check_s` per archive rather than once per published batch."""
        seen = self._code_seen.get(sha)
        if seen is not None and time.monotonic() - seen[0] < self.code_check_s:
            return seen[1]
        key = code_key(sha)
        filename = self.redis.hget(key, "filename")
        if filename is not None:
            ref = CodeRef(sha256=sha, filename=filename.decode() if isinstance(filename, bytes) else filename)
        else:
            archive = self.store.get_code(sha)
            if archive is None:
                raise RuntimeError(f"code archive {sha[:12]} is missing from the database")
            self.redis.hset(key, mapping={"filename": archive.filename, "data": archive.data})
            ref = CodeRef(sha256=sha, filename=archive.filename)
        self._code_seen[sha] = (time.monotonic(), ref)
        return ref

    def forget_code(self) -> None:
        """The broker restarted: check every archive again before the next publish."""
        self._code_seen.clear()

    def drop_code(self, sha: str) -> None:
        self._code_seen.pop(sha, None)
        self.redis.delete(code_key(sha))

    def drop_checkpoints(self, experiment: str) -> None:
        keys = list(self.redis.scan_iter(match=checkpoint_key(experiment, "*"), count=500))
        if keys:
            self.redis.delete(*keys)

    def publish(self, tasks: Sequence[TrialTask], queue: str) -> None:
        """One message per trial."""
        self.publish_groups([[t] for t in tasks], queue)

    def publish_groups(
        self, groups: Sequence[Sequence[TrialTask]], queue: str, *, first: bool = False
    ) -> None:
        """One message per group: run_trial for a single trial, run_trials for a bundle. `first`:
        these attempts were never published, so no key of theirs can be this experiment's own."""
        tasks = [t for group in groups for t in group]
        retries = [t for t in tasks if t.attempt > 1]
        if retries or first:
            with self.redis.pipeline(transaction=False) as pipe:
                if first:
                    pipe.delete(*[key for t in tasks for key in leftover_keys(t.exec_id, t.attempt)])
                for t in retries:  # workers still running an older attempt stop when they see this
                    pipe.set(current_attempt_key(t.exec_id), t.attempt, ex=30 * 86400)
                pipe.execute()
        with self.celery.producer_or_acquire() as producer:
            # kombu >= 5.7: the messages and their task-sent events go out in one pipeline
            batch = getattr(producer, "batch", None)
            if batch is not None and groups:
                try:
                    with batch():
                        for group in groups:
                            self._send(producer, group, queue)
                    return
                except Exception as exc:  # a copy that did go out is harmless: its claim stops it
                    log.warning("batched publish of %d tasks failed (%s); one by one now", len(groups), exc)
            for group in groups:  # with Celery's own retries on a broker hiccup
                self._send(producer, group, queue)

    def _send(self, producer: Any, group: Sequence[TrialTask], queue: str) -> None:
        """One run_trial message, or a run_trials message for a bundle (and its task-sent event,
        for Flower) through `producer`."""
        first = group[0]
        if len(group) == 1:
            name, kwargs = RUN_TRIAL_TASK, {"task": first.model_dump(mode="json")}
            task_id, summary = f"{first.exec_id}.{first.attempt}", task_summary(first)
        else:
            name, kwargs = RUN_TRIALS_TASK, {"tasks": [t.model_dump(mode="json") for t in group]}
            task_id = f"{first.exec_id}.{first.attempt}+{len(group) - 1}"
            summary = bundle_summary(group)
        self.celery.send_task(
            name,
            kwargs=kwargs,
            queue=queue,
            task_id=task_id,
            producer=producer,
            ignore_result=True,
            kwargsrepr=summary,
        )

    def stop_trials(
        self, exec_ids: Sequence[str], why: str, *, force: bool = False, ttl_s: int = 7 * 86400
    ) -> None:
        """Tell workers to stop (or never start) these trials; `force` skips the SIGTERM grace."""
        if not exec_ids:
            return
        with self.redis.pipeline(transaction=False) as pipe:
            for exec_id in exec_ids:
                pipe.set(stop_key(exec_id), encode_stop(why, force), ex=ttl_s)
            pipe.execute()
