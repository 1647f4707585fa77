"""`hpo serve` stops everything it started on SIGTERM as on Ctrl-C: workers, trials, its Redis."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import processes_mentioning

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_leaves_nothing_behind(tmp_path: Path, sig: signal.Signals) -> None:
    home = tmp_path / "home"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPO_")}
    env.update(HPO_HOME=str(home), HPO_ADMIN_PASSWORD="admin-secret-1", PYTHONPATH=str(ROOT))
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--workers", "1",
                             "--cpu"], env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).status == 200:
                    break
            except OSError:
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()
                time.sleep(0.2)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(processes_mentioning(str(home))) < 3:
            time.sleep(0.2)  # the server, its Redis and its worker
        assert len(processes_mentioning(str(home))) >= 3
        if sig == signal.SIGTERM:  # fleet commands find the server's private Redis through HPO_HOME
            assert _workers_seen(env) == ["hpo-local"]
        proc.send_signal(sig)
        proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and processes_mentioning(str(home)):
        time.sleep(0.2)
    assert processes_mentioning(str(home)) == [], (tmp_path / "serve.log").read_text()[-2000:]
    assert not (home / "redis" / "url").exists()  # no stale pointer to the stopped Redis


def _workers_seen(env: dict[str, str]) -> list[str]:
    deadline = time.monotonic() + 20
    while True:
        done = subprocess.run([sys.executable, "-m", "app.cli", "workers", "--json"], env=env,
                              capture_output=True, text=True, timeout=30)  # fmt: skip
        assert done.returncode == 0, done.stderr
        names = [w["name"].split("-")[0] + "-" + w["name"].split("-")[1] for w in json.loads(done.stdout)]
        if names or time.monotonic() > deadline:
            return names
        time.sleep(0.5)
