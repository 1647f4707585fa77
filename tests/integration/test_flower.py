"""`hpo flower` against Flower's HTTP API: it lists the session's real Celery worker, shows the
length of a trial queue nobody serves, shows readable task arguments, turns on the task events of
workers started without them, and refuses to start open."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from app.coordinator.dispatch import Publisher, task_summary
from app.keys import encode_stop, stop_key
from app.local_workers import LocalWorker
from app.messages import CodeRef, TrialTask
from app.store.repository import Store
from workers.celery_app import make_celery

ROOT = Path(__file__).resolve().parents[2]
QUEUE = "trials.zz8.x1"
AUTH = ("ops", "flower-pw-1")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HPO_", "FLOWER_"))}
    env.update(HPO_BROKER_URL=redis_url, PYTHONPATH=str(ROOT), **extra)
    return env


def _until(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (httpx.HTTPError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def _task(number: int, params: dict[str, Any]) -> TrialTask:
    return TrialTask(
        experiment="flower-demo", trial_id=1000 + number, exec_id=f"flower-demo-{number}", number=number,
        attempt=1, params=params, code=CodeRef(sha256="0" * 64, filename="quad.modelDir.tar"),
        main="train.py", objective_metric="loss", env={"SECRET_LOOKING": "x" * 2000},
    )  # fmt: skip


def _drop_queue(client: redis.Redis) -> None:
    client.delete(QUEUE, f"_kombu.binding.{QUEUE}", f"_kombu.binding_permanent.{QUEUE}")


@pytest.fixture()
def flower_url(redis_url: str, tmp_path: Path) -> Iterator[str]:
    port = _port()
    log = (tmp_path / "flower.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "flower", "--port", str(port)],
        env=_env(redis_url, HPO_FLOWER_BASIC_AUTH=":".join(AUTH)), stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            return proc.poll() is not None or httpx.get(f"{url}/healthcheck", timeout=2).status_code == 200

        _until(up, 30, "Flower to answer")
        assert proc.poll() is None, (tmp_path / "flower.log").read_text()
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_flower_lists_workers_waiting_queues_and_readable_tasks(
    flower_url: str, cpu_worker: LocalWorker, redis_client: redis.Redis, store: Store, redis_url: str
) -> None:
    _drop_queue(redis_client)
    http = httpx.Client(base_url=flower_url, auth=AUTH, timeout=10)
    try:
        unauthenticated = httpx.get(f"{flower_url}/api/workers", timeout=5)
        assert unauthenticated.status_code == 401  # HPO_FLOWER_BASIC_AUTH protects the API

        def cpu_worker_listed() -> bool:
            workers = http.get("/api/workers", params={"refresh": "1"}).json()
            return any(name.startswith("test-cpu@") for name in workers)

        _until(cpu_worker_listed, 30, "the session's worker in /api/workers")
        workers = http.get("/api/workers").json()
        name = next(n for n in workers if n.startswith("test-cpu@"))
        assert [q["name"] for q in workers[name]["active_queues"]] == ["trials.cpu"]

        publisher = Publisher(make_celery(redis_url, include_tasks=False), redis_client, store)
        tasks = [_task(n, {"x": 0.25 * n, "c": "a"}) for n in range(4)]
        publisher.publish(tasks, QUEUE)  # nobody serves trials.zz8.x1: they wait there

        def lengths() -> dict[str, int]:
            body = http.get("/api/queues/length").json()
            return {q["name"]: q["messages"] for q in body["active_queues"]}

        queues = _until(lambda: QUEUE in lengths() and lengths(), 15, f"{QUEUE} in /api/queues/length")
        assert queues[QUEUE] == 4 == redis_client.llen(QUEUE)
        assert "trials.cpu" in queues

        def sent() -> dict[str, Any]:
            found = http.get("/api/tasks").json()
            return found if "flower-demo-2.1" in found else {}

        task = _until(sent, 15, "the published task in /api/tasks")["flower-demo-2.1"]
        assert task["name"] == "hpo.run_trial"
        assert task["kwargs"] == task_summary(tasks[2])
        assert "'experiment': 'flower-demo'" in task["kwargs"] and "'trial': 2" in task["kwargs"]
        assert "'params': {'x': 0.5, 'c': 'a'}" in task["kwargs"]
        assert "SECRET_LOOKING" not in task["kwargs"]  # the summary, not the whole message
    finally:
        http.close()
        _drop_queue(redis_client)


def test_flower_turns_on_the_task_events_of_a_worker_started_without_them(
    flower_url: str, cpu_worker: LocalWorker, redis_client: redis.Redis, store: Store, redis_url: str
) -> None:
    """Workers send no task events of their own (they cost a short trial's worker a third of its
    CPU); Flower's periodic enable_events turns them on, so the tasks a worker runs show there."""
    http = httpx.Client(base_url=flower_url, auth=AUTH, timeout=10)
    publisher = Publisher(make_celery(redis_url, include_tasks=False), redis_client, store)
    published: list[str] = []

    def one_shown_done() -> str | None:
        # A cancelled attempt: the worker takes the task, finds the stop flag and ends it at once.
        task = _task(100 + len(published), {"x": 1.0}).model_copy(update={"experiment": "flower-events"})
        task = task.model_copy(update={"exec_id": f"flower-events-{len(published)}"})
        redis_client.set(stop_key(task.exec_id), encode_stop("cancelled"), ex=300)
        publisher.publish([task], "trials.cpu")
        published.append(f"{task.exec_id}.{task.attempt}")
        time.sleep(1.0)
        found = http.get("/api/tasks").json()
        done = [tid for tid in published if found.get(tid, {}).get("state") == "SUCCESS"]
        return done[0] if done else None

    try:
        done = _until(one_shown_done, 40, "a task the worker ran shown as SUCCESS in /api/tasks")
        shown = http.get("/api/tasks").json()[done]
        assert shown["worker"].startswith("test-cpu@")
        assert shown["received"] and shown["succeeded"]
    finally:
        http.close()
        redis_client.delete(*(stop_key(tid.rsplit(".", 1)[0]) for tid in published))


def test_workers_send_no_task_events_unless_asked(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    from app.config import reset_settings

    assert make_celery(redis_url, include_tasks=False).conf.worker_send_task_events is False
    monkeypatch.setenv("HPO_WORKER_TASK_EVENTS", "1")
    reset_settings()
    try:
        assert make_celery(redis_url, include_tasks=False).conf.worker_send_task_events is True
    finally:
        monkeypatch.delenv("HPO_WORKER_TASK_EVENTS")
        reset_settings()


def test_the_summary_is_short_even_for_huge_params() -> None:
    summary = task_summary(_task(7, {f"p{i}": "v" * 50 for i in range(40)}))
    assert len(summary) == 500 and summary.endswith("...")
    assert summary.startswith(
        "{'experiment': 'flower-demo', 'trial': 7, 'attempt': 1, 'exec_id': 'flower-demo-7'"
    )


def test_flower_refuses_to_start_without_auth(redis_url: str) -> None:
    cmd = [sys.executable, "-m", "app.cli", "flower", "--port", str(_port())]
    done = subprocess.run(cmd, env=_env(redis_url), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "give --basic-auth USER:PASSWORD or set HPO_FLOWER_BASIC_AUTH" in done.stderr
    assert "--no-auth" in done.stderr
    bad = subprocess.run([*cmd, "--basic-auth", "justaname"], env=_env(redis_url), capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert bad.returncode == 2 and "user:password" in bad.stderr and "justaname" not in bad.stderr


def test_published_messages_carry_the_summary(
    redis_client: redis.Redis, store: Store, redis_url: str
) -> None:
    _drop_queue(redis_client)
    try:
        publisher = Publisher(make_celery(redis_url, include_tasks=False), redis_client, store)
        publisher.publish([_task(5, {"lr": 0.01})], QUEUE)
        message = json.loads(redis_client.lindex(QUEUE, 0))
        assert message["headers"]["kwargsrepr"] == task_summary(_task(5, {"lr": 0.01}))
        assert message["headers"]["task"] == "hpo.run_trial"
    finally:
        _drop_queue(redis_client)
