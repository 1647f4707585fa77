"""The scheduler interface: told every reported point of every trial, it answers continue or stop.

Pure and deterministic: a coordinator rebuilds one after a restart by replaying the stored points
in order. Losses are minimised (the coordinator passes sign * metric), like the searchers'.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from enum import Enum

from app.spec.model import SchedulerSpec


class Decision(Enum):
    CONTINUE = "continue"
    STOP = "stop"


class Scheduler(ABC):
    def __init__(self, spec: SchedulerSpec) -> None:
        self.spec = spec

    @abstractmethod
    def on_result(self, trial_id: int, resource: float, loss: float) -> Decision:
        """A trial reported `loss` at `resource` (its steps/epoch, or the point's position)."""

    def on_complete(self, trial_id: int) -> None:  # noqa: B027 - optional hook
        """The trial ended (finished, failed or stopped)."""

    def describe(self, trial_id: int, resource: float) -> str:
        return f"early stopped by {self.spec.type} at {self.spec.resource or 'step'}={resource:g}"
