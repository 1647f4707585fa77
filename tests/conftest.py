"""Fixtures: the real Redis (test db), a real Celery worker process, SQLite stores."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from app.broker import ping
from app.config import Settings, TestSettings
from app.local_workers import LocalWorker
from app.store.db import ensure_schema, make_engine
from app.store.repository import Store

TEST = TestSettings()
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    if not ping(TEST.redis_url):
        pytest.fail(f"no Redis answers at {TEST.redis_url}; scripts/test.sh starts one (HPO_TEST_REDIS_URL)")
    client = redis.Redis.from_url(TEST.redis_url)
    client.flushdb()
    yield TEST.redis_url
    client.flushdb()
    client.close()


@pytest.fixture()
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def start_worker(
    redis_url: str,
    folder: Path,
    name: str,
    queues: list[str],
    slots: int,
    *,
    gpus: Sequence[str] = (),
    gpu_type: str | None = None,
) -> LocalWorker:
    worker = LocalWorker(
        gpus=gpus,
        gpu_type=gpu_type,
        slots=slots,
        queues=queues,
        env={
            "HPO_BROKER_URL": redis_url,
            "HPO_HOME": str(folder),
            "HPO_STOP_POLL_S": "0.2",
            "HPO_METRICS_POLL_S": "0.2",
        },
        log_path=folder / "worker.log",
        worker_dir=folder / "worker",
        name=name,
    ).start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if " ready." in worker.log_tail(50):
            return worker
        if worker.exit_code() is not None:
            break
        time.sleep(0.1)
    worker.stop()
    raise RuntimeError(f"worker {name} did not start:\n{worker.log_tail(50)}")


@pytest.fixture(scope="session")
def cpu_worker(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalWorker]:
    """One Celery worker with 3 slots on trials.cpu, shared by the session's tests."""
    worker = start_worker(redis_url, tmp_path_factory.mktemp("cpu-worker"), "test-cpu@%h", ["trials.cpu"], 3)
    yield worker
    worker.stop()


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    engine = make_engine(f"sqlite:///{tmp_path / 'hpo.db'}")
    ensure_schema(engine, auto_upgrade=True)
    yield Store(engine)
    engine.dispose()


@pytest.fixture()
def settings(tmp_path: Path, redis_url: str) -> Settings:
    return Settings(home=tmp_path, broker_url=redis_url, poll_interval_s=0.1, event_block_ms=100, lease_s=30)


@dataclass
class LiveServer:
    url: str
    home: Path
    admin: tuple[str, str]
    users: dict[str, str]  # name -> password
    process: subprocess.Popen

    def hpo(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run an `hpo` command against this server's database (user/token administration)."""
        env = _server_env(self.home)
        cmd = [sys.executable, "-m", "app.cli", *args]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, check=check, timeout=60)


def _server_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPO_")}
    env.update(HPO_HOME=str(home), HPO_ADMIN_PASSWORD="admin-secret-1", PYTHONPATH=str(ROOT))
    return env


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A real `hpo serve --cpu` (private Redis, SQLite, 2 slots) with users alice and bob."""
    home = tmp_path_factory.mktemp("serve") / "home"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (home.parent / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--workers", "2", "--cpu"],
        env=_server_env(home), stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    server = LiveServer(f"http://127.0.0.1:{port}", home, ("admin", "admin-secret-1"), {}, proc)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"{server.url}/healthz", timeout=1).status == 200:
                break
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.2)
    else:
        proc.kill()
    if proc.poll() is not None:
        raise RuntimeError(f"hpo serve did not start:\n{(home.parent / 'serve.log').read_text()}")
    for name in ("alice", "bob"):
        server.users[name] = f"{name}-password-1"
        server.hpo("user", "add", name, "--password", server.users[name])
    yield server
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()
