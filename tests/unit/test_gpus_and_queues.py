"""GPU type names, queue names, what a worker serves, and the GPU grant table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.keys import queue_gpu_type, queue_gpus, served_queues, trial_queue
from app.worker_setup import WorkerSetupError, plan_worker
from workers.gpu_allocator import GpuAllocator
from workers.gpus import GPU, gpu_type_from_name
from workers.runner import launch_command


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


def test_queue_sizes_and_types() -> None:
    assert queue_gpus("trials.a100.x4") == 4 and queue_gpu_type("trials.a100.x4") == "a100"
    assert queue_gpus("trials.cpu") == 0 and queue_gpu_type("trials.cpu") is None
    assert served_queues(None, 0) == ["trials.cpu"]
    assert served_queues("H100", 2) == ["trials.h100.x1", "trials.h100.x2", "trials.any.x1", "trials.any.x2"]
    assert served_queues("any", 1) == ["trials.any.x1"]


H100S = [GPU("0", "NVIDIA H100 80GB HBM3"), GPU("1", "NVIDIA H100 80GB HBM3")]


def test_worker_plan_from_detected_gpus() -> None:
    plan = plan_worker(detected=H100S)
    assert plan.gpus == ["0", "1"] and plan.gpu_type == "h100" and plan.slots == 2
    assert plan.queues == served_queues("h100", 2)
    assert plan.environment()["HPO_WORKER_GPUS"] == "0,1"


def test_worker_plan_overrides_and_cpu() -> None:
    fake = plan_worker(gpus="0,1,2,3", gpu_type="A100", detected=[])
    assert fake.gpu_type == "a100" and fake.slots == 4 and "trials.a100.x4" in fake.queues
    assert "trials.h100.x1" not in fake.queues
    untyped = plan_worker(gpus="0,1", detected=[])
    assert untyped.queues == ["trials.any.x1", "trials.any.x2"]
    subset = plan_worker(gpus="1", detected=H100S)
    assert subset.gpus == ["1"] and subset.queues == ["trials.h100.x1", "trials.any.x1"]
    cpu = plan_worker(detected=[])
    assert cpu.gpus == [] and cpu.queues == ["trials.cpu"] and cpu.gpu_type is None and cpu.slots == 1


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [({"gpus": "0,0"}, "--gpus"), ({"gpus": "0", "queues": "trials.any.x2"}, "--queues"),
     ({"queues": "celery"}, "--queues"), ({"gpu_type": "--"}, "--gpu-type"), ({"slots": -1}, "--slots")],
)  # fmt: skip
def test_worker_plan_errors_name_the_flag(kwargs: dict, flag: str) -> None:
    with pytest.raises(WorkerSetupError, match=flag):
        plan_worker(detected=[], **kwargs)


def test_grants_are_disjoint_and_sized(tmp_path: Path) -> None:
    alloc = GpuAllocator(tmp_path / "gpus.json", ["0", "1", "2", "3"])
    me = os.getpid()
    a = alloc.acquire("a", 2, pid=me)
    b = alloc.acquire("b", 1, pid=me)
    assert a == ["0", "1"] and b == ["2"]
    assert alloc.acquire("c", 2, pid=me) is None  # one free: a 2-GPU task must not start
    assert alloc.acquire("a", 2, pid=me) == ["0", "1"]  # asking again gives the same grant
    alloc.release("a")
    assert sorted(alloc.acquire("c", 2, pid=me)) == ["0", "1"]
    assert alloc.free_count() == 1


def test_grants_hold_across_processes(tmp_path: Path) -> None:
    """Four processes race for one GPU each out of four, twice over: never a GPU granted twice."""
    code = (
        "import os, sys; from pathlib import Path; from workers.gpu_allocator import GpuAllocator\n"
        "a = GpuAllocator(Path(sys.argv[1]), ['0','1','2','3'])\n"
        "print(a.acquire(sys.argv[2], 1, pid=int(sys.argv[3])))"
    )
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        table = str(tmp_path / "g.json")
        argv = [[sys.executable, "-c", code, table, f"t{i}", str(holder.pid)] for i in range(6)]
        procs = [subprocess.Popen(a, stdout=subprocess.PIPE, text=True) for a in argv]
        outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    finally:
        holder.kill()
        holder.wait()
    granted = [o for o in outs if o != "None"]
    assert len(granted) == 4 and len(set(granted)) == 4  # 4 distinct single GPUs, 2 refused


def test_a_dead_holders_gpus_return_only_when_its_trial_is_gone(tmp_path: Path) -> None:
    alloc = GpuAllocator(tmp_path / "gpus.json", ["0", "1"])
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    trial = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        assert alloc.acquire("t", 2, pid=holder.pid) == ["0", "1"]
        alloc.started("t", trial.pid)
        holder.kill()
        holder.wait()
        assert alloc.acquire("u", 1, pid=os.getpid()) is None  # its trial still runs on them
    finally:
        trial.kill()
        trial.wait()
    assert alloc.acquire("u", 1, pid=os.getpid()) == ["0"]


def test_gpus_still_in_use_are_quarantined_until_free(tmp_path: Path) -> None:
    alloc = GpuAllocator(tmp_path / "gpus.json", ["0", "1"])
    alloc.acquire("t", 2, pid=os.getpid())
    assert alloc.release("t", still_in_use=lambda ids: ["1"]) == ["1"]
    assert alloc.acquire("u", 2, pid=os.getpid()) is None
    assert alloc.recheck_quarantine(lambda ids: []) == []
    assert alloc.acquire("u", 2, pid=os.getpid()) == ["0", "1"]


def test_launch_command_uses_torchrun_for_multi_gpu_trials() -> None:
    from app.messages import CodeRef, TrialTask

    base = dict(experiment="e", trial_id=1, exec_id="e-1", number=0, attempt=1, params={},
                code=CodeRef(sha256="0" * 64, size=1, filename="x.py"), main="train.py", args=["--a"],
                objective_metric="loss")  # fmt: skip
    one = TrialTask(**base, gpus=1)
    assert launch_command("py", one, 1) == ["py", "train.py", "--a"]
    two = TrialTask(**base, gpus=2)
    assert launch_command("py", two, 2)[:5] == ["py", "-m", "torch.distributed.run", "--standalone",
                                                "--nproc-per-node=2"]  # fmt: skip
    own = TrialTask(**base, gpus=2, launcher="python")
    assert launch_command("py", own, 2) == ["py", "train.py", "--a"]


def test_a_pool_process_takes_the_admitted_grant_and_a_redelivered_copy_does_not(tmp_path: Path) -> None:
    alloc = GpuAllocator(tmp_path / "gpus.json", ["0", "1"])
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert alloc.acquire("e-1.1", 1, pid=os.getpid()) == ["0"]  # admitted by the main process
        assert alloc.take("e-1.1", 1, pid=holder.pid) == (["0"], True)  # the pool process runs it
        assert alloc.take("e-1.1", 1, pid=os.getpid()) == (["0"], False)  # a copy: not its grant
        assert alloc.take("e-2.1", 2, pid=os.getpid()) is None
        assert alloc.take("e-3.1", 1, pid=os.getpid()) == (["1"], True)  # not admitted: granted now
    finally:
        holder.kill()
        holder.wait()
    assert alloc.take("e-2.1", 1, pid=os.getpid()) == (["0"], True)  # the dead holder's GPU is back
