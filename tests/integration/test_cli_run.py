"""`hpo run` as a user runs it: a real subprocess, its own private Redis, workers and trials."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import QUAD, kill_all, processes_mentioning

ROOT = Path(__file__).resolve().parents[2]
SPACE = {
    "x": {"type": "float", "low": 0.0, "high": 1.0},
    "y": {"type": "float", "low": 0.0, "high": 1.0},
    "c": {"type": "categorical", "choices": ["a", "b"]},
}


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPO_")}
    env.update(HPO_HOME=str(home), PYTHONPATH=str(ROOT), **extra)
    return env


def _spec(tmp_path: Path, **overrides) -> Path:
    data = {
        "model": {"main": "train.py"},
        "algorithm": {"name": "tpe", "seed": 5, "warm_up": 3},
        "objective": {"metric": "loss", "direction": "minimize"},
        "max_trials": 6,
        "max_parallel": 2,
        "space": SPACE,
    }
    data.update(overrides)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _hpo(tmp_path: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120):
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "run", *args],
        cwd=tmp_path,
        env=env or _env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(autouse=True)
def no_leftovers(tmp_path: Path):
    yield
    left = processes_mentioning(str(tmp_path))
    kill_all(left)
    assert left == [], f"processes left behind: {left}"


def test_run_prints_json_writes_best_config_and_exits_0(tmp_path: Path) -> None:
    proc = _hpo(tmp_path, str(_spec(tmp_path)), "--model-dir", str(QUAD), "--workers", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(summary) == {"name", "state", "best", "trials"}
    assert summary["state"] == "FINISHED"
    assert summary["trials"] == {"finished": 6, "failed": 0, "early_stopped": 0}
    assert set(summary["best"]) == {"hyperParameters", "metricVal"}
    best = json.loads((tmp_path / "best_config.json").read_text())
    assert best == summary["best"]["hyperParameters"]
    assert isinstance(best["x"], float) and best["c"] in ("a", "b")
    assert "experiment " in proc.stderr  # progress and messages go to stderr
    db = sqlite3.connect(tmp_path / "home" / "hpo.db")
    assert db.execute("select count(*) from trial where state = 'FINISHED'").fetchone() == (6,)
    # the JSON best is the best trial in SQL
    (value,) = db.execute("select min(objective) from trial").fetchone()
    assert summary["best"]["metricVal"] == pytest.approx(value)


def test_bad_spec_exits_2_naming_the_field_and_stores_nothing(tmp_path: Path) -> None:
    payload = json.loads(
        (
            Path(__file__).parent.parent
            / "fixtures/wmla/hpo_submit_random_pytorch_mnist_learning_journey.json"
        ).read_text()
    )
    payload["hyperParams"][0]["maxDbVal"] = 0.0001
    spec = tmp_path / "bad.json"
    spec.write_text(json.dumps(payload))
    proc = _hpo(tmp_path, str(spec), "--model-dir", str(QUAD))
    assert proc.returncode == 2
    assert "hyperParams[0].maxDbVal" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "home" / "hpo.db").exists()


def test_missing_model_main_is_a_usage_error(tmp_path: Path) -> None:
    proc = _hpo(tmp_path, str(_spec(tmp_path, model={"main": "nope.py"})), "--model-dir", str(QUAD))
    assert proc.returncode == 2 and "has no nope.py" in proc.stderr


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has a GPU")
def test_gpu_request_without_gpu_stops_at_once_and_cpu_flag_runs_it(tmp_path: Path) -> None:
    spec = _spec(tmp_path, resources={"gpus": 1})
    started = time.monotonic()
    proc = _hpo(tmp_path, str(spec), "--model-dir", str(QUAD))
    assert proc.returncode == 2
    assert "no GPU" in proc.stderr and "--cpu" in proc.stderr
    assert time.monotonic() - started < 15
    proc = _hpo(tmp_path, str(spec), "--model-dir", str(QUAD), "--cpu", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["trials"]["finished"] == 6


def test_no_successful_trial_exits_1(tmp_path: Path) -> None:
    spec = _spec(
        tmp_path, algorithm="grid", experiments=[{"mode": "exit1"}, {"mode": "noresult"}], max_trials=None
    )
    proc = _hpo(tmp_path, str(spec), "--model-dir", str(QUAD), "--json")
    assert proc.returncode == 1, proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert summary["best"] is None and summary["trials"]["failed"] == 2
    assert not (tmp_path / "best_config.json").exists()


def test_ctrl_c_stops_everything_and_exits_130(tmp_path: Path) -> None:
    spec = _spec(
        tmp_path, max_trials=None, space={**SPACE, "mode": {"type": "categorical", "choices": ["hang"]}}
    )
    home = tmp_path / "home"
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "run", str(spec), "--model-dir", str(QUAD), "--json"],
        cwd=tmp_path,
        env=_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        running = 0
        while time.monotonic() < deadline and running < 2:
            time.sleep(0.3)
            if (home / "hpo.db").exists():
                try:
                    db = sqlite3.connect(home / "hpo.db")
                    (running,) = db.execute("select count(*) from trial where state = 'RUNNING'").fetchone()
                    db.close()
                except sqlite3.OperationalError:
                    pass
        assert running == 2, "trials never started"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    summary = json.loads(out.splitlines()[-1])
    assert summary["state"] == "STOPPED"
    db = sqlite3.connect(home / "hpo.db")
    states = {s for (s,) in db.execute("select state from trial")}
    assert states <= {"FAILED", "CANCELLED"} and "RUNNING" not in states


def test_uses_the_broker_named_by_hpo_broker_url(tmp_path: Path, redis_url: str) -> None:
    home = tmp_path / "home"
    proc = _hpo(
        tmp_path,
        str(_spec(tmp_path)),
        "--model-dir",
        str(QUAD),
        "--json",
        env=_env(home, HPO_BROKER_URL=redis_url),
    )
    assert proc.returncode == 0, proc.stderr
    assert not (home / "redis").exists()  # no private Redis was started
    assert json.loads(proc.stdout.splitlines()[-1])["trials"]["finished"] == 6


def test_ibm_payload_runs_unchanged_with_cpu_flag(tmp_path: Path) -> None:
    """IBM's learning-journey Random payload, its script replaced by a stand-in of the same name."""
    payload = (
        Path(__file__).parent.parent / "fixtures/wmla/hpo_submit_random_pytorch_mnist_learning_journey.json"
    )
    model = tmp_path / "pytorch_hpo"
    model.mkdir()
    shutil.copy(QUAD / "train.py", model / "pytorch_mnist_HPO.py")
    proc = _hpo(tmp_path, str(payload), "--model-dir", str(model), "--cpu", "--json", timeout=180)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert summary["trials"]["finished"] == 10  # maxJobNum 10
    assert set(summary["best"]["hyperParameters"]) == {"learning_rate"}
    assert 0.001 <= summary["best"]["hyperParameters"]["learning_rate"] <= 0.1
