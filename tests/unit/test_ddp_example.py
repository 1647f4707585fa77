"""examples/digits_ddp runs under torchrun on CPUs (gloo), the way a worker launches a 2-GPU trial."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from app.spec import load_spec

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "digits_ddp"


def test_spec_asks_for_two_gpus() -> None:
    spec = load_spec(EXAMPLE / "experiment.json")
    assert spec.resources.gpus == 2 and spec.resources.gpu_type == "any"
    assert spec.model.main == "train.py" and (EXAMPLE / spec.model.main).is_file()
    assert spec.warnings == ()


def test_torchrun_two_processes_on_cpu(tmp_path: Path) -> None:
    work, results = tmp_path / "code", tmp_path / "results"
    shutil.copytree(EXAMPLE, work)
    results.mkdir()
    (work / "config.json").write_text(json.dumps({"learning_rate": 0.05, "epochs": 3}))
    env = {
        **os.environ,
        "RESULT_DIR": str(results),
        "CHECKPOINT_DIR": str(tmp_path / "ckpt"),
        "CUDA_VISIBLE_DEVICES": "100,101",  # what a worker with fake GPU ids sets: no such devices
        "OMP_NUM_THREADS": "1",
    }
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
            "train.py", "--epochs", "5", "--data_dir", "/nowhere"]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both ranks
        out, _ = proc.communicate()
        raise AssertionError(f"torchrun did not finish in 120 s:\n{out}") from None
    assert proc.returncode == 0, out

    points = json.loads((results / "val_dict_list.json").read_text())
    assert [p["steps"] for p in points] == [1, 2, 3]  # config.json's epochs win over --epochs
    for point in points:
        assert math.isfinite(point["accuracy"]) and 0.0 <= point["accuracy"] <= 1.0
        assert math.isfinite(point["loss"])
    assert points[-1]["accuracy"] > 0.8

    ddp = json.loads((results / "ddp.json").read_text())
    assert ddp["world_size"] == 2 and ddp["backend"] == "gloo"
    assert ddp["devices"] == ["cpu", "cpu"] and ddp["cuda_visible_devices"] == "100,101"
    assert (tmp_path / "ckpt" / "digits_ddp.pt").is_file()
