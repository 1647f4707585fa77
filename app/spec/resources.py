"""What one trial needs, from WMLA launcher flags: `--gpuPerWorker N` plus an optional GPU-type sigName.

WMLA's `sigName` names a resource group; when it is (after lower-casing and dropping everything
but letters and digits) one of `KNOWN_GPU_TYPES`, trials go to that type's queue, otherwise to
the `any` queue of the requested GPU count. No GPU request means a CPU slot.
"""

from __future__ import annotations

from app.keys import normalize_gpu_type
from app.spec.model import ResourceRequest

KNOWN_GPU_TYPES: tuple[str, ...] = (
    "h100",
    "h200",
    "b200",
    "a100",
    "a10",
    "a10g",
    "a30",
    "a40",
    "l4",
    "l40",
    "l40s",
    "t4",
    "v100",
    "p100",
    "rtx4090",
    "rtx3090",
    "rtx6000",
    "mi250",
    "mi300",
)


def known_gpu_type(sig_name: str | None) -> str | None:
    """The GPU type that `sig_name` names ("A100", "a-100" -> "a100"), None when it names none."""
    if not sig_name:
        return None
    normalized = normalize_gpu_type(sig_name)
    return normalized if normalized in KNOWN_GPU_TYPES else None


def wmla_resources(gpus: int | None, sig_name: str | None) -> ResourceRequest:
    """`{any|<type>, gpus}` for a positive GPU count, the CPU request otherwise."""
    if not gpus or gpus <= 0:
        return ResourceRequest()
    return ResourceRequest(gpu_type=known_gpu_type(sig_name) or "any", gpus=gpus)
