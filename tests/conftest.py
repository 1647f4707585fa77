"""Fixtures: the real Redis (test db), a real Celery worker process, SQLite stores."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from app.broker import ping
from app.config import Settings, TestSettings
from app.local_workers import LocalWorker
from app.store.db import ensure_schema, make_engine
from app.store.repository import Store

TEST = TestSettings()


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


def start_worker(redis_url: str, folder: Path, name: str, queues: list[str], slots: int) -> LocalWorker:
    worker = LocalWorker(
        slots=slots,
        queues=queues,
        env={"HPO_BROKER_URL": redis_url, "HPO_HOME": str(folder)},
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
