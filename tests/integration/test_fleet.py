"""Fleet mode: `hpo coordinator` as its own process drives experiments submitted to a shared database."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path

import pytest

from app.store.models import ExperimentState, TrialState
from app.store.repository import Store
from tests.helpers import quad_spec, submit_quad

pytestmark = pytest.mark.usefixtures("cpu_worker")
ROOT = Path(__file__).resolve().parents[2]


def test_coordinator_process_drives_submitted_experiments(
    store: Store, tmp_path: Path, redis_url: str
) -> None:
    db_url = str(store.engine.url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPO_")}
    env.update(
        HPO_BROKER_URL=redis_url, HPO_DATABASE_URL=db_url, HPO_HOME=str(tmp_path), PYTHONPATH=str(ROOT)
    )
    log = (tmp_path / "coordinator.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "coordinator"], env=env, stdout=log, stderr=log)
    try:
        first = submit_quad(store, quad_spec(max_trials=5, max_parallel=2))
        second = submit_quad(
            store, quad_spec(algorithm={"name": "tpe", "seed": 2}, max_trials=5, max_parallel=2)
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            states = {store.experiment(e.id).state for e in (first, second)}
            if states == {ExperimentState.FINISHED}:
                break
            assert proc.poll() is None, (tmp_path / "coordinator.log").read_text()
            time.sleep(0.3)
        for exp in (first, second):
            assert store.experiment(exp.id).state == ExperimentState.FINISHED
            assert store.trial_counts(exp.id) == {TrialState.FINISHED: 5}
            assert store.experiment(exp.id).lease_owner is None
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        log.close()
    assert proc.returncode == 0


def test_flower_shows_the_trial_queues_behind_basic_auth(tmp_path: Path, redis_url: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPO_")}
    env.update(HPO_BROKER_URL=redis_url, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "flower", "--port", str(port), "--basic-auth", "admin:pw"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/api/queues/length"
    try:
        body, status = None, None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and body is None:
            time.sleep(0.3)
            try:
                urllib.request.urlopen(url, timeout=2)
            except urllib.error.HTTPError as exc:
                status = exc.code
                request = urllib.request.Request(
                    url, headers={"Authorization": "Basic " + b64encode(b"admin:pw").decode()}
                )
                body = urllib.request.urlopen(request, timeout=5).read().decode()
            except OSError:
                continue
        assert status == 401  # the API needs the credentials
        assert "trials.cpu" in body
    finally:
        proc.terminate()
        proc.wait(timeout=20)
