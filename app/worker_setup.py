"""What `hpo worker` serves: its GPUs (given or detected), their type, its queues and slots.

Pure apart from GPU detection, so the choices are testable on a machine without GPUs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from app.keys import normalize_gpu_type, queue_gpus, served_queues
from workers.gpus import GPU, inventory


class WorkerSetupError(ValueError):
    """A bad --gpus/--gpu-type/--queues/--slots combination; the message names the flag."""


@dataclass
class WorkerPlan:
    gpus: list[str]
    gpu_type: str | None
    gpu_names: list[str]
    queues: list[str]
    slots: int
    notes: list[str] = field(default_factory=list)

    def environment(self) -> dict[str, str]:
        env = {"HPO_WORKER_SLOTS": str(self.slots), "HPO_WORKER_GPUS": ",".join(self.gpus)}
        env["HPO_WORKER_GPU_TYPE"] = self.gpu_type or ""
        env["HPO_WORKER_GPU_NAMES"] = ",".join(n.replace(",", " ") for n in self.gpu_names)
        return env

    def describe(self) -> str:
        what = f"{len(self.gpus)} x {self.gpu_type} GPU(s) [{','.join(self.gpus)}]" if self.gpus else "CPU"
        lines = [f"hpo worker: {what}, {self.slots} slot(s), queues {', '.join(self.queues)}", *self.notes]
        return "\n".join(lines)


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def plan_worker(
    *, gpus: str = "", gpu_type: str = "", queues: str = "", slots: int = 0, detected: list[GPU] | None = None
) -> WorkerPlan:
    """Decide a worker's GPUs, type, queues and slots from its flags and what the machine has."""
    notes: list[str] = []
    found = inventory() if detected is None else detected
    ids = _split(gpus)
    if len(set(ids)) != len(ids):
        raise WorkerSetupError(f"--gpus lists a GPU twice: {gpus}")
    names = [g.name for g in found if not ids or g.index in ids]
    if not ids:
        ids = [g.index for g in found]
    kind = normalize_gpu_type(gpu_type) if gpu_type else None
    if gpu_type and not kind:
        raise WorkerSetupError(f"--gpu-type must contain letters or digits, got {gpu_type!r}")
    if ids and kind is None:
        types = Counter(g.type for g in found if g.index in ids)
        kind = types.most_common(1)[0][0] if types else "any"
        if len(types) > 1:
            notes.append(f"mixed GPU types {dict(types)}: serving as {kind}; run one worker per type "
                         "with --gpus and --gpu-type to route each")  # fmt: skip
    if kind == "any":
        kind = None if not ids else "any"
    queue_list = _split(queues) or served_queues(kind, len(ids))
    for queue in queue_list:
        if not queue.startswith("trials."):
            raise WorkerSetupError(
                f"--queues: {queue!r} is not a trial queue (trials.cpu, trials.<type>.x<N>)"
            )
        if queue_gpus(queue) > len(ids) and queue_gpus(queue) > 0:
            raise WorkerSetupError(
                f"--queues: {queue} needs {queue_gpus(queue)} GPUs and this worker has {len(ids)}"
            )
    if slots < 0:
        raise WorkerSetupError("--slots must be >= 0")
    slots = slots or max(len(ids), 1)
    return WorkerPlan(gpus=ids, gpu_type=kind if ids else None, gpu_names=names, queues=queue_list,
                      slots=slots, notes=notes)  # fmt: skip
