"""GPU inventory: what a machine has (nvidia-smi, else torch.cuda), type names, memory still in use."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

from app.spec.resources import KNOWN_GPU_TYPES


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
    for known in sorted(KNOWN_GPU_TYPES, key=len, reverse=True):
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


def _torch_gpus() -> list[GPU]:
    try:
        import torch

        if not torch.cuda.is_available():
            return []
        return [
            GPU(index=str(i), name=torch.cuda.get_device_name(i)) for i in range(torch.cuda.device_count())
        ]
    except Exception:  # no torch, a broken driver: no GPUs we can use
        return []


def inventory() -> list[GPU]:
    """This machine's GPUs: nvidia-smi's list, else what torch.cuda sees."""
    return detect_gpus() or _torch_gpus()


def _smi(*query: str, timeout_s: float = 10.0) -> list[list[str]] | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, *query, "--format=csv,noheader,nounits"], capture_output=True, text=True,
                             timeout=timeout_s, check=True).stdout  # fmt: skip
    except (subprocess.SubprocessError, OSError):
        return None
    return [[part.strip() for part in line.split(",")] for line in out.splitlines() if line.strip()]


def gpus_in_use(gpu_ids: list[str]) -> list[str]:
    """Those of `gpu_ids` on which some process still holds memory (nvidia-smi's compute apps).

    Without nvidia-smi (fake GPUs in tests, CPU machines) nothing is in use.
    """
    uuids = _smi("--query-gpu=index,uuid")
    apps = _smi("--query-compute-apps=gpu_uuid,pid")
    if uuids is None or apps is None:
        return []
    by_uuid = {row[1]: row[0] for row in uuids if len(row) >= 2}
    held = {by_uuid.get(row[0]) for row in apps if row}
    return [g for g in gpu_ids if g in held]
