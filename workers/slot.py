"""Per pool process state: its slot number, Redis connection, runner and the machine's GPU grants."""

from __future__ import annotations

import os
import time
from functools import lru_cache

import redis

from app.config import get_settings
from workers.admission import allocator_for
from workers.gpu_allocator import GpuAllocator
from workers.gpus import gpus_in_use
from workers.process import group_alive
from workers.runner import TrialRunner


def _slot_index() -> int:
    try:
        from billiard.process import current_process

        index = current_process().index
        return int(index) if index is not None else 0
    except Exception:
        return 0


_runner: TrialRunner | None = None  # this pool process's, made for its first task


def init_slot() -> None:
    global _runner
    _runner = None
    current_allocator.cache_clear()


def current_runner(hostname: str | None = None) -> TrialRunner:
    global _runner
    if _runner is None:
        settings = get_settings()
        slot = _slot_index()
        _runner = TrialRunner(
            settings,
            redis.Redis.from_url(settings.effective_broker_url),
            worker=f"{hostname or os.uname().nodename}/{slot}",
            slot=slot,
            slots=settings.worker_slots,
        )
    return _runner


def drain_runner() -> None:
    """Before this process exits: let its runner finish publishing the trials it is concluding, and
    remove the directory it made for a next trial."""
    if _runner is not None:
        _runner.drain()
        _runner.ready_dir.discard()


@lru_cache(maxsize=1)
def current_allocator() -> GpuAllocator | None:
    return allocator_for(get_settings())


def wait_for_gpus(
    allocator: GpuAllocator, task_id: str, count: int, poll_s: float = 0.2
) -> tuple[list[str], bool]:
    """Take this task's GPUs: granted on receipt already, else as soon as free (see GpuAllocator.take)."""
    while True:
        taken = allocator.take(task_id, count, pid=os.getpid())
        if taken is not None:
            return taken
        time.sleep(poll_s)


def give_back(allocator: GpuAllocator, task_id: str, pgid: int | None) -> list[str]:
    """Return the grant once the trial's processes are gone and its GPU memory was released.

    GPUs still holding memory after `gpu_release_timeout_s` are quarantined (listed by `hpo workers`)
    until a later check finds them free. Returns the quarantined ones.
    """
    settings = get_settings()
    deadline = time.monotonic() + settings.gpu_release_timeout_s
    while pgid is not None and group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    gpus = allocator.snapshot().grants.get(task_id)
    if gpus is not None:
        while gpus_in_use(gpus.gpus) and time.monotonic() < deadline:
            time.sleep(0.5)
    return allocator.release(task_id, still_in_use=gpus_in_use)
