"""GPU type names, slot pinning and queue names."""

from __future__ import annotations

import pytest

from app.keys import trial_queue
from workers.gpus import gpu_type_from_name, slot_devices


@pytest.mark.parametrize(
    ("name", "kind"),
    [("NVIDIA H100 80GB HBM3", "h100"), ("NVIDIA A100-SXM4-40GB", "a100"), ("Tesla V100-PCIE-16GB", "v100"),
     ("NVIDIA A10G", "a10g"), ("NVIDIA L40S", "l40s"), ("NVIDIA GeForce RTX 4090", "rtx4090"),
     ("Tesla T4", "t4")],
)  # fmt: skip
def test_gpu_type_from_model_name(name: str, kind: str) -> None:
    assert gpu_type_from_name(name) == kind


def test_queue_names() -> None:
    assert trial_queue(None, 0) == "trials.cpu"
    assert trial_queue("A100", 1) == "trials.a100.x1"
    assert trial_queue(None, 2) == "trials.any.x2"
    assert trial_queue("any", 4) == "trials.any.x4"


def test_slots_get_disjoint_gpus() -> None:
    ids = ["0", "1", "2", "3"]
    assert [slot_devices(ids, s, 1) for s in range(4)] == ["0", "1", "2", "3"]
    assert [slot_devices(ids, s, 2) for s in range(2)] == ["0,1", "2,3"]
    assert slot_devices(ids, 0, 0) == ""
