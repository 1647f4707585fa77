"""GPU inventory: what a machine has (nvidia-smi), type names, and slot pinning."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

KNOWN_TYPES = (
    "h200", "h100", "b200", "a100", "a10g", "a10", "a30", "a40", "l40s", "l40", "l4",
    "t4", "v100", "p100", "rtx4090", "rtx3090", "rtx6000", "mi300", "mi250",
)  # fmt: skip


@dataclass(frozen=True)
class GPU:
    index: str
    name: str

    @property
    def type(self) -> str:
        return gpu_type_from_name(self.name)


def gpu_type_from_name(name: str) -> str:
    """`NVIDIA H100 80GB HBM3` -> `h100`; unknown models -> their first alphanumeric word."""
    flat = re.sub(r"[^a-z0-9]+", " ", name.lower())
    squashed = flat.replace(" ", "")
    for known in KNOWN_TYPES:
        if re.search(rf"\b{known}\b", flat) or known in squashed.replace("nvidia", "").replace("geforce", ""):
            return known
    words = [w for w in flat.split() if w not in ("nvidia", "geforce", "tesla", "amd", "radeon")]
    return words[0] if words else "gpu"


def detect_gpus(timeout_s: float = 10.0) -> list[GPU]:
    """GPUs nvidia-smi reports; [] when there is none (or no driver)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=index,name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    gpus = []
    for line in out.splitlines():
        if "," in line:
            index, name = (part.strip() for part in line.split(",", 1))
            gpus.append(GPU(index=index, name=name))
    return gpus


def slot_devices(gpu_ids: list[str], slot: int, per_trial: int) -> str:
    """CUDA_VISIBLE_DEVICES for a slot: its own `per_trial` GPUs, or "" for a CPU trial."""
    if per_trial <= 0 or not gpu_ids:
        return ""
    start = (slot * per_trial) % len(gpu_ids)
    return ",".join(gpu_ids[start : start + per_trial])
