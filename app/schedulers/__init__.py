"""Schedulers: decide about running trials (continue or stop) from their streamed metrics.

The searcher/scheduler split of Ray Tune: searchers (app/optimizers) propose configurations,
schedulers (ASHA, median stopping) stop bad trials early; any searcher composes with any scheduler.
"""

from __future__ import annotations

from app.schedulers.base import Decision, Scheduler
from app.spec.model import SchedulerSpec

__all__ = ["Decision", "Scheduler", "create_scheduler"]


def create_scheduler(spec: SchedulerSpec | None) -> Scheduler | None:
    if spec is None:
        return None
    if spec.type == "asha":
        from app.schedulers.asha import ASHA

        return ASHA(spec)
    if spec.type == "median":
        from app.schedulers.median import MedianStopping

        return MedianStopping(spec)
    raise ValueError(f"unknown scheduler {spec.type!r}")
