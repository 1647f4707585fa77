"""Names shared by every process: Celery queues, Redis keys and stream names.

Coordinator and workers agree on these and nothing else, so they live in one place.
"""

from __future__ import annotations

import re

KEY_PREFIX = "hpo"
RUN_TRIAL_TASK = "hpo.run_trial"
# a bundle of short trials, run one after another on one slot (app.coordinator.bundling)
RUN_TRIALS_TASK = "hpo.run_trials"

_TYPE_RE = re.compile(r"[^a-z0-9]+")


def normalize_gpu_type(gpu_type: str) -> str:
    return _TYPE_RE.sub("", gpu_type.lower())


def trial_queue(gpu_type: str | None, gpus: int) -> str:
    """`trials.cpu`, `trials.<type>.x<N>` or `trials.any.x<N>`."""
    if gpus <= 0:
        return "trials.cpu"
    kind = normalize_gpu_type(gpu_type) if gpu_type else "any"
    return f"trials.{kind or 'any'}.x{gpus}"


def served_queues(gpu_type: str | None, gpu_count: int) -> list[str]:
    """What a worker with `gpu_count` GPUs of `gpu_type` serves: its type's and the `any` queues
    for every size up to its GPU count; `trials.cpu` without GPUs."""
    if gpu_count <= 0:
        return [trial_queue(None, 0)]
    kinds = dict.fromkeys([normalize_gpu_type(gpu_type) if gpu_type else "any", "any"])
    return [trial_queue(kind, n) for kind in kinds for n in range(1, gpu_count + 1)]


def events_stream(experiment: str) -> str:
    """Durable per-experiment event stream; the coordinator driving it acks after SQL commit."""
    return f"hpo.events.{experiment}"


EVENTS_GROUP = "coordinator"


def code_key(sha256: str) -> str:
    return f"{KEY_PREFIX}:code:{sha256}"


def result_key(exec_id: str, attempt: int) -> str:
    return f"{KEY_PREFIX}:result:{exec_id}:{attempt}"


def stop_key(exec_id: str) -> str:
    """Set by the coordinator to stop (or never start) a trial; the value says why."""
    return f"{KEY_PREFIX}:stop:{exec_id}"


def encode_stop(why: str, force: bool = False) -> str:
    return f"{'force' if force else 'term'}|{why}"


def decode_stop(value: bytes | str) -> tuple[str, bool]:
    """(why, force) from a stop flag's value."""
    text = value.decode() if isinstance(value, bytes) else str(value)
    mode, sep, why = text.partition("|")
    return (why, mode == "force") if sep else (text, False)


def log_key(exec_id: str, stream: str) -> str:
    """Live tail of a running trial's stdout/stderr, refreshed by its worker."""
    return f"{KEY_PREFIX}:log:{exec_id}:{stream}"


def checkpoint_key(experiment: str, lineage: str) -> str:
    """A configuration's checkpoint between rungs, shipped through Redis without a shared FS."""
    return f"{KEY_PREFIX}:ckpt:{experiment}:{lineage}"


def lease_key(exec_id: str, attempt: int) -> str:
    """Present while the attempt's worker is alive: refreshed by its heartbeat, expires otherwise."""
    return f"{KEY_PREFIX}:lease:{exec_id}:{attempt}"


def current_attempt_key(exec_id: str) -> str:
    """The attempt that counts; a worker running an older one stops (it was declared lost)."""
    return f"{KEY_PREFIX}:current:{exec_id}"


def claim_key(exec_id: str, attempt: int) -> str:
    """Taken by the worker that runs an attempt, so a redelivered task does not run it twice."""
    return f"{KEY_PREFIX}:claim:{exec_id}:{attempt}"


def leftover_keys(exec_id: str, attempt: int) -> list[str]:
    """What an attempt's first publish clears. The stop flag was an earlier attempt's (a stopped
    trial retried would never start). And exec ids come from the experiment's name, so one given a
    deleted experiment's name (or run after the database was reset) would otherwise meet that
    life's claims, stop flags, current attempts and logs, and its trials would never start."""
    keys = [
        claim_key(exec_id, attempt),
        lease_key(exec_id, attempt),
        result_key(exec_id, attempt),
        stop_key(exec_id),
    ]
    if attempt == 1:
        keys.append(current_attempt_key(exec_id))
        keys += [log_key(exec_id, stream) for stream in ("stdout", "stderr")]
    return keys


def worker_key(name: str) -> str:
    """A connected worker's self-description, refreshed while it lives (see app.fleet)."""
    return f"{KEY_PREFIX}:worker:{name}"


def queue_gpus(queue: str) -> int:
    """The GPU count a trial queue asks for: `trials.a100.x2` -> 2, `trials.cpu` -> 0."""
    _, _, size = queue.rpartition(".x")
    return int(size) if size.isdigit() else 0


def queue_gpu_type(queue: str) -> str | None:
    """`trials.a100.x2` -> "a100", `trials.any.x1` -> "any", `trials.cpu` -> None."""
    parts = queue.split(".")
    return parts[1] if len(parts) == 3 and parts[0] == "trials" else None


def suggest_metrics_key() -> str:
    """Optimizer suggestion latency histogram counters, by algorithm (see app.suggest_metrics)."""
    return f"{KEY_PREFIX}:metrics:suggest"
