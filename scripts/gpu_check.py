"""A short check of this machine's real GPUs, the way an `hpo worker` uses them.

    .venv/bin/python scripts/gpu_check.py     (scripts/gpu_check.sh sets up .venv first)

Checks: the GPU inventory and types; a CUDA build of torch; pinning with CUDA_VISIBLE_DEVICES (one
visible device, the one nvidia-smi calls that index); the worker refusing a queue that needs more
GPUs than it has; GPU memory held by a trial and freed after it, twice in a row; and with two or
more GPUs, examples/digits_ddp under torchrun on NCCL. Every torch call runs in a child process,
so this process never holds GPU memory itself. Prints a table; exits 1 when a check failed, and
0 with "no GPU" on a machine without one.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.worker_setup import WorkerSetupError, plan_worker  # noqa: E402
from workers.gpus import GPU, gpu_type_from_name, gpus_in_use, inventory  # noqa: E402

DDP_EXAMPLE = ROOT / "examples" / "digits_ddp"
RUN_TIMEOUT_S = 240
FREE_WAIT_S = 15.0
HPARAMS = {"learning_rate": 0.01, "batch_size": 64, "hidden_size": 128, "optimizer": "adam", "epochs": 3}

results: list[tuple[str, str, str]] = []


def record(check: str, ok: bool | None, detail: str) -> None:
    """ok: True PASS, False FAIL, None SKIP."""
    status = {True: "PASS", False: "FAIL", None: "SKIP"}[ok]
    results.append((check, status, detail))
    print(f"[{status}] {check}: {detail}", flush=True)


def smi(*query: str) -> list[list[str]]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, *query, "--format=csv,noheader,nounits"], capture_output=True,
                             text=True, timeout=15, check=True).stdout  # fmt: skip
    except (subprocess.SubprocessError, OSError):
        return []
    return [[part.strip() for part in line.split(",")] for line in out.splitlines() if line.strip()]


def memory_used_mib(gpu_id: str) -> int | None:
    rows = smi("--query-gpu=memory.used", "-i", gpu_id)
    try:
        return int(float(rows[0][0]))
    except (IndexError, ValueError):
        return None


def child_env(cuda_visible_devices: str, **extra: str) -> dict[str, str]:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": cuda_visible_devices, "PYTHONUNBUFFERED": "1"}
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(extra)
    return env


def python_json(code: str, env: dict[str, str]) -> dict:
    """Run `code` in a child interpreter; it prints one JSON object last."""
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S)  # fmt: skip
    if proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
        raise RuntimeError(last[0] if last else f"exit {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


TORCH_INFO = """
import json, torch
print(json.dumps({"version": torch.__version__, "cuda": torch.version.cuda,
                  "available": torch.cuda.is_available(), "count": torch.cuda.device_count()}))
"""

PINNED = """
import json, torch
p = torch.cuda.get_device_properties(0)
print(json.dumps({"count": torch.cuda.device_count(), "name": p.name,
                  "pci_bus_id": getattr(p, "pci_bus_id", None)}))
"""


def check_torch(gpus: list[GPU]) -> bool:
    try:
        info = python_json(TORCH_INFO, child_env(",".join(g.index for g in gpus)))
    except Exception as exc:
        record("torch CUDA build", False, f"importing torch failed: {exc}")
        return False
    if not info["cuda"]:
        fix = "`pip install --force-reinstall torch==2.13.0` in .venv (PyPI's Linux wheel is the CUDA one)"
        record("torch CUDA build", False, f"torch {info['version']} is a CPU build: {fix}")
        return False
    ok = info["available"] and info["count"] == len(gpus)
    record("torch CUDA build", ok, f"torch {info['version']}, CUDA {info['cuda']}, "
           f"sees {info['count']} of {len(gpus)} GPU(s)")  # fmt: skip
    return bool(info["available"])


def check_pinning(gpu: GPU) -> None:
    try:
        seen = python_json(PINNED, child_env(gpu.index))
    except Exception as exc:
        record("pinning", False, f"CUDA_VISIBLE_DEVICES={gpu.index}: {exc}")
        return
    problems = []
    if seen["count"] != 1:
        problems.append(f"device_count() is {seen['count']}, not 1")
    if seen["name"] != gpu.name:
        problems.append(f"torch's device is {seen['name']!r}, nvidia-smi's {gpu.index} is {gpu.name!r}")
    bus = smi("--query-gpu=pci.bus_id", "-i", gpu.index)
    if seen["pci_bus_id"] is not None and bus:
        smi_bus = int(bus[0][0].split(":")[-2], 16)  # 00000000:19:00.0 -> 0x19
        if smi_bus != seen["pci_bus_id"]:
            problems.append(f"torch's device sits on PCI bus {seen['pci_bus_id']:#x}, nvidia-smi's "
                            f"{gpu.index} on {smi_bus:#x}: set CUDA_DEVICE_ORDER=PCI_BUS_ID")  # fmt: skip
    detail = f"CUDA_VISIBLE_DEVICES={gpu.index}: {seen['count']} device, {seen['name']}"
    record("pinning", not problems, "; ".join(problems) or detail)


def check_worker_plan(gpus: list[GPU]) -> None:
    ids = ",".join(g.index for g in gpus)
    n = len(gpus)
    plan = plan_worker()  # what a plain `hpo worker` here would serve
    kind = Counter(gpu_type_from_name(g.name) for g in gpus).most_common(1)[0][0]
    expected = {f"trials.{kind}.x1", f"trials.any.x{n}"}
    record("worker plan", expected <= set(plan.queues) and plan.gpus == [g.index for g in gpus],
           f"gpus {','.join(plan.gpus)} as {plan.gpu_type}, queues {','.join(plan.queues)}")  # fmt: skip
    too_big = f"trials.any.x{n + 1}"
    try:
        plan_worker(gpus=ids, queues=too_big)
    except WorkerSetupError as exc:
        record("oversized queue refused", True, f"--gpus {ids} --queues {too_big}: {exc}")
    else:
        record("oversized queue refused", False, f"--gpus {ids} --queues {too_big} was accepted")


def wait_free(ids: list[str]) -> tuple[list[str], float]:
    """GPUs of `ids` still held after FREE_WAIT_S, and how long freeing took."""
    start = time.monotonic()
    while True:
        held = gpus_in_use(ids)
        took = time.monotonic() - start
        if not held or took > FREE_WAIT_S:
            return held, took
        time.sleep(0.25)


def run_trial(argv: list[str], ids: list[str], epochs: int) -> tuple[str | None, dict, int | None]:
    """Run examples/digits_ddp like a worker: a copy with config.json, RESULT_DIR, CHECKPOINT_DIR.

    Returns (problem or None, ddp.json, peak memory.used of the first GPU while it ran).
    """
    with tempfile.TemporaryDirectory(prefix="hpo-gpu-check-") as tmp:
        work, result_dir = Path(tmp) / "code", Path(tmp) / "results"
        shutil.copytree(DDP_EXAMPLE, work)
        result_dir.mkdir()
        (work / "config.json").write_text(json.dumps({**HPARAMS, "epochs": epochs}))
        env = child_env(",".join(ids), RESULT_DIR=str(result_dir), CHECKPOINT_DIR=str(Path(tmp) / "ckpt"),
                        LOG_DIR=str(result_dir / "log"), DATA_DIR=tmp)  # fmt: skip
        proc = subprocess.Popen([sys.executable, *argv], cwd=work, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)  # fmt: skip
        peak = None
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while proc.poll() is None and time.monotonic() < deadline:
            used = memory_used_mib(ids[0])
            peak = max(peak or 0, used) if used is not None else peak
            time.sleep(0.2)
        if proc.poll() is None:
            proc.kill()
        out = proc.communicate()[0]
        if proc.returncode != 0:
            tail = " | ".join(out.strip().splitlines()[-3:])
            return f"exit {proc.returncode}: {tail}", {}, peak
        try:
            points = json.loads((result_dir / "val_dict_list.json").read_text())
            ddp = json.loads((result_dir / "ddp.json").read_text())
        except (OSError, ValueError) as exc:
            return f"results missing: {exc}", {}, peak
        if len(points) != epochs or not all(math.isfinite(p["accuracy"]) for p in points):
            return f"val_dict_list.json: {points}", ddp, peak
        return None, ddp, peak


def check_memory_freed(gpu: GPU) -> None:
    """Two single-GPU trials in a row: each uses cuda:0, and the GPU is free after each."""
    if shutil.which("nvidia-smi") is None:
        record("memory freed", None, "no nvidia-smi: nothing reports GPU memory")
        return
    if gpus_in_use([gpu.index]):
        record("memory freed", None, f"GPU {gpu.index} was already in use by another process")
        return
    for run in (1, 2):
        before = memory_used_mib(gpu.index)
        problem, ddp, peak = run_trial(["train.py"], [gpu.index], epochs=3)
        held, took = wait_free([gpu.index])
        after = memory_used_mib(gpu.index)
        if problem is None and ddp.get("devices") != ["cuda:0"]:
            problem = f"the trial ran on {ddp.get('devices')}, not cuda:0"
        if problem is None and held:
            problem = f"GPU {gpu.index} still held {FREE_WAIT_S:g} s after the trial exited"
        detail = f"memory.used {before} -> peak {peak} -> {after} MiB, free after {took:.1f} s"
        record(f"memory freed (trial {run})", problem is None, f"{problem}; {detail}" if problem else detail)


def check_ddp(gpus: list[GPU]) -> None:
    if len(gpus) < 2:
        record("DDP on 2 GPUs", None, f"{len(gpus)} GPU: needs 2")
        return
    ids = [g.index for g in gpus[:2]]
    argv = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "train.py"]
    start = time.monotonic()
    problem, ddp, peak = run_trial(argv, ids, epochs=3)  # peak: GPU ids[0]'s memory.used
    took = time.monotonic() - start
    if problem is None and (ddp.get("backend") != "nccl" or ddp.get("world_size") != 2):
        problem = f"backend {ddp.get('backend')}, world size {ddp.get('world_size')}"
    if problem is None and ddp.get("devices") != ["cuda:0", "cuda:1"]:
        problem = f"devices {ddp.get('devices')}"
    held, _ = wait_free(ids)
    if problem is None and held:
        problem = f"GPU(s) {','.join(held)} still held after torchrun exited"
    detail = (f"CUDA_VISIBLE_DEVICES={','.join(ids)}: {ddp.get('backend')} on {ddp.get('devices')}, "
              f"GPU {ids[0]} peak {peak} MiB, {took:.1f} s")  # fmt: skip
    record("DDP on 2 GPUs", problem is None, f"{problem}; {detail}" if problem else detail)


def report() -> int:
    widths = [max(len(row[i]) for row in [("check", "result", "detail"), *results]) for i in range(2)]
    print()
    print(f"{'check':<{widths[0]}}  {'result':<{widths[1]}}  detail")
    for check, status, detail in results:
        print(f"{check:<{widths[0]}}  {status:<{widths[1]}}  {detail}")
    failed = [row for row in results if row[1] == "FAIL"]
    print(f"\n{len(failed)} failed" if failed else "\nall checks passed")
    return 1 if failed else 0


def main() -> int:
    gpus = inventory()
    if not gpus:
        print("no GPU")
        return 0
    for gpu in gpus:
        print(f"GPU {gpu.index}: {gpu.name} (type {gpu_type_from_name(gpu.name)})")
    types = sorted({g.type for g in gpus})
    record("inventory", True, f"{len(gpus)} GPU(s) of type {', '.join(types)}")
    check_worker_plan(gpus)
    if check_torch(gpus):
        check_pinning(gpus[0])
        check_memory_freed(gpus[0])
        check_ddp(gpus)
    else:
        for check in ("pinning", "memory freed", "DDP on 2 GPUs"):
            record(check, None, "torch cannot use the GPUs")
    return report()


if __name__ == "__main__":
    sys.exit(main())
