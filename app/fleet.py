"""The fleet as the broker sees it: every worker publishes what it serves and runs, with a TTL.

Workers refresh `hpo:worker:<name>` every few seconds; a worker that stops refreshing vanishes
when the key expires. The coordinator asks which queues someone serves (an experiment whose queue
nobody serves says so), and `hpo workers` / `GET /api/v1/workers` list the entries.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, Field

from app.keys import KEY_PREFIX, worker_key

WORKER_TTL_S = 20


class RunningTrial(BaseModel):
    exec_id: str
    experiment: str
    trial_id: int
    attempt: int = 1
    gpus: list[str] = Field(default_factory=list)


class WorkerInfo(BaseModel):
    name: str
    host: str
    pid: int
    gpu_type: str | None = None  # None: a CPU worker
    gpu_names: list[str] = Field(default_factory=list)
    gpus: list[str] = Field(default_factory=list)  # the ids it pins trials to
    queues: list[str] = Field(default_factory=list)  # every queue it serves
    consuming: list[str] = Field(default_factory=list)  # those it takes tasks from right now
    slots: int = 1
    busy_gpus: list[str] = Field(default_factory=list)
    quarantined_gpus: list[str] = Field(default_factory=list)  # memory still held after a trial
    running: list[RunningTrial] = Field(default_factory=list)
    started_at: float = Field(default_factory=time.time)
    seen_at: float = Field(default_factory=time.time)

    @property
    def slots_used(self) -> int:
        return len(self.running)


def publish_worker(client: Any, info: WorkerInfo, ttl_s: int = WORKER_TTL_S) -> None:
    client.set(worker_key(info.name), info.model_dump_json(), ex=ttl_s)


def withdraw_worker(client: Any, name: str) -> None:
    client.delete(worker_key(name))


def live_workers(client: Any) -> list[WorkerInfo]:
    keys = sorted(client.scan_iter(match=f"{KEY_PREFIX}:worker:*", count=500))
    if not keys:
        return []
    workers = []
    for raw in client.mget(keys):
        if raw:
            try:
                workers.append(WorkerInfo.model_validate_json(raw))
            except ValueError:
                continue  # a worker of another version; it is not ours to judge
    return sorted(workers, key=lambda w: w.name)


def served_queues(workers: list[WorkerInfo]) -> set[str]:
    return {q for w in workers for q in w.queues}


def queue_slots(workers: list[WorkerInfo]) -> dict[str, int]:
    """Slots of the workers that serve each queue (a worker's slots count for every queue it serves)."""
    slots: dict[str, int] = {}
    for w in workers:
        for q in w.queues:
            slots[q] = slots.get(q, 0) + max(w.slots, 1)
    return slots


def unserved_message(queue: str) -> str:
    return f"no worker serves {queue}"
