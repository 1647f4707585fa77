"""Say so when nobody serves an experiment's queue ("no worker serves trials.a100.x4").

Reads the fleet registry (app.fleet) every few seconds. An experiment with trials waiting in a queue
that no connected worker serves gets that as its message (status, CLI, dashboard); the message is
cleared when a worker for it connects. A queue must be unserved on two checks in a row, so a worker
that is starting (its entry comes within seconds) does not cause a false alarm.
"""

from __future__ import annotations

from typing import Any

from app.fleet import WorkerInfo, live_workers, served_queues, unserved_message
from app.store.models import TrialState
from app.store.repository import Store


class QueueCoverage:
    def __init__(self, redis: Any, store: Store) -> None:
        self.redis = redis
        self.store = store
        self._suspect: set[str] = set()  # queues unserved on the previous check

    def check(self, runtimes: list[Any], workers: list[WorkerInfo] | None = None) -> None:
        """`workers`: the fleet registry as just read (else read here when a trial waits)."""
        waiting = {rt.experiment.queue for rt in runtimes if self._has_queued(rt)}
        if workers is None and waiting:
            workers = live_workers(self.redis)
        served = served_queues(workers or []) if waiting else set()
        unserved = {q for q in waiting if q not in served}
        confirmed = unserved & self._suspect
        self._suspect = unserved
        for rt in runtimes:
            queue = rt.experiment.queue
            current = rt.experiment.message
            if queue in confirmed and current is None:
                self._set(rt, unserved_message(queue))
            elif queue not in unserved and current == unserved_message(queue):
                self._set(rt, None)

    @staticmethod
    def _has_queued(rt: Any) -> bool:
        return any(t.state == TrialState.QUEUED for t in rt.in_flight.values())

    def _set(self, rt: Any, message: str | None) -> None:
        self.store.update_experiment(rt.id, message=message)
        rt.experiment.message = message
