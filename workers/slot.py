"""Per pool process state: its slot number, GPUs, Redis connection and runner."""

from __future__ import annotations

import os
from functools import lru_cache

import redis

from app.config import get_settings
from workers.runner import TrialRunner


def _slot_index() -> int:
    try:
        from billiard.process import current_process

        index = current_process().index
        return int(index) if index is not None else 0
    except Exception:
        return 0


def init_slot() -> None:
    current_runner.cache_clear()


@lru_cache(maxsize=1)
def current_runner(hostname: str | None = None) -> TrialRunner:
    settings = get_settings()
    gpu_ids = [g for g in (settings.worker_gpus or "").split(",") if g.strip()]
    slot = _slot_index()
    return TrialRunner(
        settings,
        redis.Redis.from_url(settings.effective_broker_url),
        worker=f"{hostname or os.uname().nodename}/{slot}",
        slot=slot,
        gpu_ids=gpu_ids,
        slots=settings.worker_slots,
    )
