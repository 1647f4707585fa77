"""GPU queues, pinning and admission with fake GPUs (`hpo worker --gpus ... --gpu-type ...`).

Real Celery workers, a real coordinator and real trial processes; the trials log their own
CUDA_VISIBLE_DEVICES and start/end times (GPU_LOG), and the checks read those records.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from itertools import combinations
from pathlib import Path

import pytest

from app.config import Settings
from app.fleet import live_workers
from app.keys import served_queues
from app.local_workers import LocalWorker
from app.spec import parse_spec
from app.store.artifacts import FileArtifactStore
from app.store.models import ExperimentState, TrialState
from app.store.repository import Store
from tests.conftest import start_worker
from tests.helpers import drive, make_coordinator, quad_spec, submit_quad

ROOT = Path(__file__).resolve().parents[2]


def _gpu_spec(gpu_type: str, gpus: int, log: Path, *, trials: int, parallel: int, sleep: float = 1.5):
    return quad_spec(
        max_trials=trials,
        max_parallel=parallel,
        resources={"gpu_type": gpu_type, "gpus": gpus, "launcher": "python"},
        env={"GPU_LOG": str(log)},
        space={
            "x": {"type": "float", "low": 0.0, "high": 1.0},
            "sleep": {"type": "categorical", "choices": [sleep]},
        },
    )


def _records(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def _overlap(a: dict, b: dict) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


def _max_concurrent(records: list[dict]) -> int:
    edges = sorted([(r["start"], 1) for r in records] + [(r["end"], -1) for r in records])
    best = now = 0
    for _, step in edges:
        now += step
        best = max(best, now)
    return best


def _assert_never_shared(records: list[dict]) -> None:
    for a, b in combinations(records, 2):
        shared = set(a["cuda"].split(",")) & set(b["cuda"].split(","))
        assert not (shared and _overlap(a, b)), f"GPU {shared} held by {a['exec']} and {b['exec']} at once"


@pytest.fixture(scope="module")
def h100_worker(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalWorker]:
    """A worker with four fake H100s."""
    folder = tmp_path_factory.mktemp("h100-worker")
    worker = start_worker(redis_url, folder, "fake-h100@%h", served_queues("h100", 4), 4,
                          gpus=["0", "1", "2", "3"], gpu_type="h100")  # fmt: skip
    yield worker
    worker.stop()


@pytest.fixture()
def gpu_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"coverage_check_s": 0.5})


def test_one_gpu_trials_fill_every_gpu_without_sharing(
    h100_worker: LocalWorker, store: Store, gpu_settings: Settings, tmp_path: Path
) -> None:
    log = tmp_path / "gpu.log"
    exp = submit_quad(store, _gpu_spec("any", 1, log, trials=8, parallel=4))
    drive(store, gpu_settings, [exp.id], timeout_s=120)
    assert store.trial_counts(exp.id) == {TrialState.FINISHED: 8}
    records = _records(log)
    assert len(records) == 8
    assert all(r["cuda"] in {"0", "1", "2", "3"} for r in records)
    assert _max_concurrent(records) == 4  # every GPU busy at once
    assert {r["cuda"] for r in records} == {"0", "1", "2", "3"}
    _assert_never_shared(records)
    assert "it waits for them" not in h100_worker.log_tail(2000)  # never took a task it could not start
    assert {t.gpus for t in store.trials(exp.id)} == {"0", "1", "2", "3"}  # recorded per trial


def test_mixed_sizes_get_disjoint_gpus(
    h100_worker: LocalWorker, store: Store, gpu_settings: Settings, tmp_path: Path
) -> None:
    """2-GPU and 1-GPU trials of two experiments share the four GPUs; no GPU is ever held twice."""
    pairs_log, singles_log = tmp_path / "pairs.log", tmp_path / "singles.log"
    pairs = submit_quad(store, _gpu_spec("h100", 2, pairs_log, trials=4, parallel=2))
    singles = submit_quad(store, _gpu_spec("any", 1, singles_log, trials=6, parallel=3, sleep=1.0))
    drive(store, gpu_settings, [pairs.id, singles.id], timeout_s=150)
    assert store.trial_counts(pairs.id) == {TrialState.FINISHED: 4}
    assert store.trial_counts(singles.id) == {TrialState.FINISHED: 6}
    two = _records(pairs_log)
    assert all(len(set(r["cuda"].split(","))) == 2 for r in two)
    _assert_never_shared(two + _records(singles_log))
    assert "it waits for them" not in h100_worker.log_tail(2000)


def test_typed_trials_wait_for_their_type_and_say_so(
    h100_worker: LocalWorker, store: Store, gpu_settings: Settings, tmp_path: Path, redis_url: str
) -> None:
    log = tmp_path / "a100.log"
    exp = submit_quad(store, _gpu_spec("a100", 1, log, trials=3, parallel=2, sleep=0.2))
    coord = make_coordinator(store, gpu_settings, [exp.id])
    stop = threading.Event()
    thread = threading.Thread(target=coord.run, kwargs={"should_stop": stop.is_set}, daemon=True)
    thread.start()
    a100: LocalWorker | None = None
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and store.experiment(exp.id).message is None:
            time.sleep(0.2)
        assert store.experiment(exp.id).message == "no worker serves trials.a100.x1"
        assert not log.exists()  # the H100 worker took none of them
        a100 = start_worker(redis_url, tmp_path / "a100-worker", "fake-a100@%h", served_queues("a100", 2), 2,
                            gpus=["0", "1"], gpu_type="a100")  # fmt: skip
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and exp.id not in coord.finished:
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join(30)
        coord.close()
        if a100 is not None:
            a100.stop()
    assert store.experiment(exp.id).state == ExperimentState.FINISHED
    assert store.experiment(exp.id).message == "maxJobNum reached"  # the wait message went
    trials = store.trials(exp.id)
    assert all(t.worker and t.worker.startswith("fake-a100@") for t in trials)


def test_a_two_gpu_trial_runs_the_ddp_example_under_torchrun(
    h100_worker: LocalWorker, store: Store, gpu_settings: Settings
) -> None:
    data = json.loads((ROOT / "examples" / "digits_ddp" / "experiment.json").read_text())
    data["modelSpec"]["args"] = data["modelSpec"]["args"].replace("--epochs 5", "--epochs 2")
    data["algoDef"]["maxJobNum"] = 1
    exp = submit_quad(store, parse_spec(data), code_dir=ROOT / "examples" / "digits_ddp")
    assert exp.queue == "trials.any.x2"
    drive(store, gpu_settings, [exp.id], timeout_s=240)
    (trial,) = store.trials(exp.id)
    assert trial.state == TrialState.FINISHED, trial.reason
    data = FileArtifactStore(gpu_settings.artifacts_dir).get_result(trial.result_path)
    archive = zipfile.ZipFile(io.BytesIO(data))
    ddp = json.loads(next(archive.read(n) for n in archive.namelist() if n.endswith("ddp.json")))
    assert ddp["world_size"] == 2 and len(ddp["devices"]) == 2  # one process per GPU
    assert len(set(ddp["cuda_visible_devices"].split(","))) == 2


def test_hpo_workers_lists_gpu_types_and_slots(h100_worker: LocalWorker, redis_url: str) -> None:
    import redis

    deadline = time.monotonic() + 15
    mine = None
    while time.monotonic() < deadline and mine is None:
        mine = next(
            (w for w in live_workers(redis.Redis.from_url(redis_url)) if w.name.startswith("fake-h100@")),
            None,
        )
        time.sleep(0.2)
    assert mine is not None and mine.gpu_type == "h100" and mine.gpus == ["0", "1", "2", "3"]
    assert "trials.h100.x4" in mine.queues and "trials.any.x1" in mine.queues
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPO_")}
    env.update(HPO_BROKER_URL=redis_url, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-m", "app.cli", "workers", "--json"], env=env, capture_output=True,
                         text=True, timeout=60, check=True).stdout  # fmt: skip
    listed = {w["name"]: w for w in json.loads(out)}
    assert listed[mine.name]["gpu_type"] == "h100" and listed[mine.name]["slots"] == 4
    table = subprocess.run([sys.executable, "-m", "app.cli", "workers"], env=env, capture_output=True,
                           text=True, timeout=60, check=True).stdout  # fmt: skip
    assert "fake-h100@" in table and "h100" in table and "0,1,2,3" in table
