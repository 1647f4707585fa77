"""GPU-aware admission for a Celery worker: take a task only when its GPUs are free now.

Prefork concurrency counts processes, not GPUs, and a consumer prefetches whatever its queues
hold. So the worker's main process decides what it may take: it consumes `trials.<type>.x<N>`
only while N GPUs are free, grants the GPUs the moment a task arrives (before the next fetch),
and cancels the queues it can no longer serve. A pool process picks up its grant, pins the trial
with `CUDA_VISIBLE_DEVICES` and gives the grant back once the trial's processes are gone (and, on
real GPUs, their memory is released). docs/gpus.md explains why this and not one worker per GPU.

The same step publishes the worker's entry in the fleet registry (app.fleet) on every worker,
CPU or GPU.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

import redis
from celery import bootsteps, signals
from celery.worker import state as worker_state

from app.config import get_settings
from app.fleet import RunningTrial, WorkerInfo, publish_worker, withdraw_worker
from app.keys import queue_gpus
from workers.gpu_allocator import GpuAllocator
from workers.gpus import gpus_in_use

log = logging.getLogger(__name__)
REFRESH_S = 0.5
PUBLISH_S = 3.0


def allocator_for(settings: Any) -> GpuAllocator | None:
    ids = [g.strip() for g in (settings.worker_gpus or "").split(",") if g.strip()]
    if not ids:
        return None
    return GpuAllocator(settings.effective_worker_dir.resolve() / "gpus.json", ids)


def _task_fields(request: Any) -> dict[str, Any]:
    """The TrialTask fields of a run_trial request (sent as kwargs["task"]); of a run_trials bundle
    (short CPU trials, kwargs["tasks"]), its first trial's."""
    try:
        kwargs = request.kwargs or {}
        task = kwargs.get("task")
        if task is None and kwargs.get("tasks"):
            task = kwargs["tasks"][0]
        if task is None and request.args:
            task = request.args[0]
        return dict(task) if isinstance(task, dict) else {}
    except Exception:
        return {}


class Admission(bootsteps.StartStopStep):
    """Consumer step: gate queues by free GPUs, grant GPUs on receipt, publish the registry entry."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.settings = get_settings()
        self.allocator = allocator_for(self.settings)
        self.consumer: Any = None
        self.served: list[str] = []
        self._timers: list[Any] = []
        self._last_publish = 0.0
        self._redis: redis.Redis | None = None
        self.name = ""

    # --- lifecycle --------------------------------------------------------------------------
    def start(self, c: Any) -> None:
        self.consumer = c
        self.name = self.settings.worker_name or c.hostname
        self.served = [q.name for q in c.task_consumer.queues] if c.task_consumer else self.served
        self._redis = redis.Redis.from_url(
            self.settings.effective_broker_url, socket_timeout=2, socket_connect_timeout=1
        )
        signals.task_received.connect(self._on_received, weak=False)
        self._timers.append(c.timer.call_repeatedly(REFRESH_S, self._tick))
        self._tick()

    def stop(self, c: Any) -> None:
        signals.task_received.disconnect(self._on_received)
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    def shutdown(self, c: Any) -> None:
        if self._redis is not None:
            try:
                withdraw_worker(self._redis, self.name)
            except redis.RedisError:
                pass

    # --- admission --------------------------------------------------------------------------
    def _on_received(self, sender: Any = None, request: Any = None, **_: Any) -> None:
        if self.allocator is None or request is None:
            return
        count = int(_task_fields(request).get("gpus") or 0)
        if count > 0 and self.allocator.acquire(request.id, count, pid=os.getpid()) is None:
            # Fetched in the window before the last gate change took hold: the pool process waits
            # for the GPUs (never shares them) and this is logged, so the gate's misses are visible.
            log.warning("task %s needs %d GPUs and fewer are free; it waits for them", request.id, count)
        self._gate()

    def _gate(self) -> None:
        if self.allocator is None or self.consumer is None or self.consumer.task_consumer is None:
            return
        free = self.allocator.free_count() - self._waiting()
        consuming = {q.name for q in self.consumer.task_consumer.queues}
        for queue in self.served:
            wanted = queue_gpus(queue) <= free
            if wanted and queue not in consuming:
                self.consumer.add_task_queue(queue)
            elif not wanted and queue in consuming:
                self.consumer.cancel_task_queue(queue)

    def _waiting(self) -> int:
        """GPUs owed to received tasks that got no grant yet (the gate's rare misses)."""
        assert self.allocator is not None
        granted = self.allocator.snapshot().grants
        return sum(
            int(_task_fields(r).get("gpus") or 0)
            for r in list(worker_state.reserved_requests)
            if r.id not in granted
        )

    def _tick(self) -> None:
        try:
            if self.allocator is not None:
                self.allocator.recheck_quarantine(gpus_in_use)
            self._gate()
            if time.monotonic() - self._last_publish >= PUBLISH_S:
                self._publish()
        except Exception:  # a timer must not kill the consumer; the next tick tries again
            log.exception("admission tick failed")

    # --- the registry entry -----------------------------------------------------------------
    def _publish(self) -> None:
        assert self._redis is not None
        s = self.settings
        grants = self.allocator.snapshot() if self.allocator else None
        running = []
        for request in list(worker_state.reserved_requests):
            fields = _task_fields(request)
            if not fields:
                continue
            grant = grants.grants.get(request.id) if grants else None
            running.append(
                RunningTrial(
                    exec_id=str(fields.get("exec_id", "")),
                    experiment=str(fields.get("experiment", "")),
                    trial_id=int(fields.get("trial_id", 0)),
                    attempt=int(fields.get("attempt", 1)),
                    gpus=grant.gpus if grant else [],
                )
            )
        consuming = (
            [q.name for q in self.consumer.task_consumer.queues] if self.consumer.task_consumer else []
        )
        info = WorkerInfo(
            name=self.name,
            host=socket.gethostname(),
            pid=os.getpid(),
            gpu_type=s.worker_gpu_type if self.allocator else None,
            gpu_names=[n for n in (s.worker_gpu_names or "").split(",") if n],
            gpus=self.allocator.gpu_ids if self.allocator else [],
            queues=self.served,
            consuming=consuming,
            slots=s.worker_slots,
            busy_gpus=sorted(grants.busy() - set(grants.quarantined)) if grants else [],
            quarantined_gpus=list(grants.quarantined) if grants else [],
            running=running,
        )
        try:
            publish_worker(self._redis, info)
            self._last_publish = time.monotonic()
        except redis.RedisError:
            pass  # the broker is down; the entry expires and comes back with it
