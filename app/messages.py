"""The two messages between coordinator and workers: the run_trial task and trial events.

Both are JSON (Celery accepts JSON only). Events carry (trial_id, attempt) so a duplicate
delivery is harmless: the coordinator's compare-and-set ignores it.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.keys import events_stream


class CodeRef(BaseModel):
    sha256: str
    filename: str  # "<name>.modelDir.tar" for an archive, or the script's own name


class TrialTask(BaseModel):
    """Everything a worker needs to run one attempt; it also needs the broker, nothing else."""

    model_config = ConfigDict(extra="ignore")

    experiment: str
    trial_id: int
    exec_id: str
    number: int
    attempt: int
    params: dict[str, Any]
    code: CodeRef
    main: str
    model_dir: str | None = None
    args: list[str] = Field(default_factory=list)
    data_path: str | None = None
    objective_metric: str
    direction: Literal["minimize", "maximize"] = "minimize"
    env: dict[str, str] = Field(default_factory=dict)
    timeout_s: float | None = None
    owner: str | None = None
    gpus: int = 0
    launcher: Literal["python", "torchrun"] = "torchrun"  # how a multi-GPU trial starts
    checkpoint_key: str | None = None  # rungs of one configuration share its checkpoint
    # How the worker starts the script (native model.mode / model.preload / model.function;
    # docs/trial-modes.md). Workers that predate `mode` run a subprocess, which is correct for
    # forkserver; a worker older than mode "function" refuses the task (upgrade workers first).
    mode: Literal["subprocess", "forkserver", "function"] = "subprocess"
    preload: list[str] = Field(default_factory=list)
    function: str | None = None  # mode "function": the callable in `main`


EventKind = Literal["started", "metric", "finished"]
Status = Literal["ok", "failed", "stopped"]


class TrialEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    kind: EventKind
    experiment: str
    trial_id: int
    exec_id: str
    attempt: int
    worker: str | None = None
    gpus: list[str] = Field(default_factory=list)  # "started": the GPUs it was pinned to
    ts: float = Field(default_factory=time.time)
    points: list[dict[str, Any]] = Field(default_factory=list)  # "metric": new points; "finished": all
    # "finished" only:
    status: Status | None = None
    objective: float | None = None
    reason: str | None = None
    exit_code: int | None = None
    started_at: float | None = None
    ended_at: float | None = None
    metrics_summary: dict[str, Any] | None = None
    stdout_tail: str | None = None
    stderr_tail: str | None = None
    result_key: str | None = None  # Redis key of the zipped result directory, if uploaded
    notes: list[str] = Field(default_factory=list)

    def encode(self) -> dict[str, str]:
        return {"e": self.model_dump_json()}

    @classmethod
    def decode(cls, fields: dict[Any, Any]) -> TrialEvent:
        raw = fields.get(b"e", fields.get("e"))
        if isinstance(raw, bytes):
            raw = raw.decode()
        return cls.model_validate(json.loads(raw))


def publish_event(redis: Any, event: TrialEvent) -> str:
    """Append to the experiment's durable stream (XADD); returns the entry id."""
    entry = redis.xadd(events_stream(event.experiment), event.encode())
    return entry.decode() if isinstance(entry, bytes) else str(entry)
