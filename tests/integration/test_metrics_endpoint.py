"""/metrics end to end: a real coordinator drives an experiment on the session's Celery worker, a
second experiment waits in a queue nobody serves, and the in-process API's Prometheus series must
agree exactly with SQL and the broker."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from redis.backoff import NoBackoff
from redis.retry import Retry

from app.api.app import create_app
from app.config import Settings
from app.fleet import RunningTrial, WorkerInfo, live_workers, publish_worker, withdraw_worker
from app.histogram import HistogramData
from app.keys import suggest_metrics_key
from app.services.auth import Auth
from app.store.models import ExperimentState, TrialState
from app.store.monitoring import DURATION_BOUNDS, QUEUE_WAIT_BOUNDS
from app.store.repository import Store
from app.suggest_metrics import read_suggestions, record_suggestion
from tests.helpers import make_coordinator, quad_spec, submit_quad

pytestmark = pytest.mark.usefixtures("cpu_worker")
TOKEN = "scrape-token-0123456789"
UNSERVED = "trials.zz9.x1"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _scrape(client: TestClient, **headers: str) -> Samples:
    r = client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _get(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def _expected(bounds: tuple[float, ...], values: list[float]) -> HistogramData:
    cumulative = tuple(sum(1 for v in values if v <= b) for b in bounds)
    return HistogramData(bounds, cumulative, len(values), sum(values))


def _assert_histogram(samples: Samples, name: str, want: HistogramData) -> None:
    assert _get(samples, f"{name}_count") == want.count
    assert _get(samples, f"{name}_sum") == pytest.approx(want.total, abs=1e-6)
    for le, cumulative in want.buckets():
        assert _get(samples, f"{name}_bucket", le=le) == cumulative, le


def _drive_until(store: Store, settings: Settings, finished: int, waiting: int, queued: int) -> None:
    """One coordinator: `finished` runs to its end while `waiting` publishes `queued` trials."""
    coord = make_coordinator(store, settings, [finished, waiting])
    deadline = time.monotonic() + 90

    def done() -> bool:
        counts = store.trial_counts(waiting)
        return finished in coord.finished and counts.get(TrialState.QUEUED, 0) == queued

    try:
        coord.run(should_stop=lambda: done() or time.monotonic() > deadline)
    finally:
        coord.close()
    assert done(), (store.experiment(finished).state, store.trial_counts(waiting))


def test_metrics_agree_with_sql_and_the_broker(
    store: Store, settings: Settings, redis_client: redis.Redis, request: pytest.FixtureRequest
) -> None:
    redis_client.delete(UNSERVED)
    request.addfinalizer(lambda: redis_client.delete(UNSERVED))  # no later worker must take these tasks
    before = read_suggestions(redis_client).get("tpe")
    ran = submit_quad(store, quad_spec(algorithm={"name": "tpe", "seed": 4}, max_trials=5, max_parallel=2))
    needs_gpu = {"gpu_type": "zz9", "gpus": 1, "launcher": "python"}
    stuck = submit_quad(store, quad_spec(max_trials=3, max_parallel=3, resources=needs_gpu))
    assert stuck.queue == UNSERVED
    _drive_until(store, settings, ran.id, stuck.id, 3)
    # A fake fleet entry for the GPU series: a zz7 worker with one GPU busy, one held, one free.
    gpu_worker = WorkerInfo(
        name="metrics-fake-gpu@test", host="test", pid=1, gpu_type="zz7", gpus=["0", "1", "2"], slots=3,
        queues=["trials.zz7.x1"], busy_gpus=["0"], quarantined_gpus=["1"],
        running=[RunningTrial(exec_id="x-0", experiment="x", trial_id=1, gpus=["0"])],
    )  # fmt: skip
    publish_worker(redis_client, gpu_worker)
    try:
        settings = settings.model_copy(update={"metrics_token": TOKEN})
        client = TestClient(create_app(settings, store, redis=redis_client), raise_server_exceptions=True)
        workers = live_workers(redis_client)
        samples = _scrape(client, authorization=f"Bearer {TOKEN}")
    finally:
        withdraw_worker(redis_client, gpu_worker.name)

    trials = store.trials(ran.id) + store.trials(stuck.id)
    assert [t.state for t in store.trials(ran.id)] == [TrialState.FINISHED] * 5
    # Trials and experiments by state (this test's database holds only these two experiments).
    for state in (*TrialState.IN_FLIGHT, *TrialState.DONE):
        assert _get(samples, "hpo_trials", state=state) == sum(t.state == state for t in trials), state
    assert _get(samples, "hpo_trials", state="FINISHED") == 5
    assert _get(samples, "hpo_trials", state="QUEUED") == 3
    assert _get(samples, "hpo_experiments", state="FINISHED") == 1
    assert _get(samples, "hpo_experiments", state="RUNNING") == 1
    assert store.experiment(stuck.id).state == ExperimentState.RUNNING

    # Queue depth: the three published tasks wait in the unserved queue.
    assert redis_client.llen(UNSERVED) == 3
    assert _get(samples, "hpo_queue_depth", queue=UNSERVED) == 3
    assert _get(samples, "hpo_queue_workers", queue=UNSERVED) == 0
    assert _get(samples, "hpo_queue_depth", queue="trials.cpu") == 0
    assert _get(samples, "hpo_queue_workers", queue="trials.cpu") >= 1
    assert _get(samples, "hpo_broker_up") == 1

    # Histograms from SQL, bucket by bucket.
    started = [t for t in trials if t.started_at is not None]
    ended = [t for t in started if t.ended_at is not None]
    assert len(started) == len(ended) == 5
    waits = [max((t.started_at - t.created_at).total_seconds(), 0.0) for t in started]
    durations = [max((t.ended_at - t.started_at).total_seconds(), 0.0) for t in ended]
    _assert_histogram(samples, "hpo_trial_queue_wait_seconds", _expected(QUEUE_WAIT_BOUNDS, waits))
    _assert_histogram(samples, "hpo_trial_duration_seconds", _expected(DURATION_BOUNDS, durations))

    # Suggestion latency: the coordinator counted every ask of this experiment's TPE.
    asked = _get(samples, "hpo_suggestion_latency_seconds_count", algorithm="tpe")
    assert asked > (before.count if before else 0)
    assert asked == read_suggestions(redis_client)["tpe"].count
    assert _get(samples, "hpo_suggestion_latency_seconds_bucket", algorithm="tpe", le="+Inf") == asked
    assert _get(samples, "hpo_suggestion_latency_seconds_count", algorithm="random") >= 1  # the waiting one

    # Slots and GPUs per type, from the fleet registry.
    cpu = [w for w in workers if w.gpu_type is None]
    assert any(w.name.startswith("test-cpu@") for w in cpu)
    assert _get(samples, "hpo_workers", gpu_type="cpu") == len(cpu)
    assert _get(samples, "hpo_worker_slots", gpu_type="cpu", state="used") == sum(w.slots_used for w in cpu)
    assert _get(samples, "hpo_worker_slots", gpu_type="cpu", state="free") == sum(
        w.slots - w.slots_used for w in cpu
    )
    assert _get(samples, "hpo_workers", gpu_type="zz7") == 1
    assert _get(samples, "hpo_worker_slots", gpu_type="zz7", state="used") == 1
    assert _get(samples, "hpo_worker_slots", gpu_type="zz7", state="free") == 2
    assert _get(samples, "hpo_gpus", gpu_type="zz7", state="busy") == 1
    assert _get(samples, "hpo_gpus", gpu_type="zz7", state="held") == 1
    assert _get(samples, "hpo_gpus", gpu_type="zz7", state="free") == 1
    assert ("hpo_gpus", (("gpu_type", "cpu"), ("state", "free"))) not in samples


def test_metrics_need_a_scrape_token_or_credentials_unless_public(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Auth(store).add_user("carol", "carol-password", admin=False)
    settings = Settings(home=tmp_path, metrics_token=TOKEN)
    client = TestClient(create_app(settings, store), raise_server_exceptions=True)
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"authorization": "Bearer not-the-token"}).status_code == 401
    assert client.get("/metrics", auth=("carol", "wrong")).status_code == 401
    assert client.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert client.get("/metrics", auth=("carol", "carol-password")).status_code == 200  # any API credential
    token = client.post("/api/v1/tokens", auth=("carol", "carol-password")).json()["token"]
    assert client.get("/metrics", headers={"authorization": f"Bearer {token}"}).status_code == 200
    assert client.get("/metrics", headers={"x-auth-token": token}).status_code == 200

    no_token = TestClient(create_app(Settings(home=tmp_path), store))
    assert no_token.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 401

    monkeypatch.setenv("HPO_METRICS_PUBLIC", "1")  # read from the environment like every setting
    public = TestClient(create_app(Settings(home=tmp_path), store))
    r = public.get("/metrics")
    assert r.status_code == 200 and 'hpo_trials{state="FINISHED"} 0.0' in r.text
    assert "hpo_queue_depth" not in r.text  # no broker given to this app: SQL series only


def test_a_broker_that_does_not_answer_reads_as_down(store: Store, tmp_path: Path) -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    client = TestClient(create_app(Settings(home=tmp_path, metrics_public=True), store, redis=dead))
    r = client.get("/metrics")
    assert r.status_code == 200
    assert "hpo_broker_up 0.0" in r.text and 'hpo_trials{state="QUEUED"} 0.0' in r.text


def test_suggestion_latency_counters_fill_the_right_buckets(redis_client: redis.Redis) -> None:
    algorithm = "plugin|with-a-bar"  # fields split at the last "|", so a name may contain one
    key = suggest_metrics_key()
    try:
        for seconds in (0.0005, 0.003, 0.003, 7.0, 500.0):
            record_suggestion(redis_client, algorithm, seconds)
        data = read_suggestions(redis_client)[algorithm]
        by_bound = dict(zip(data.bounds, data.cumulative, strict=True))
        picked = [by_bound[b] for b in (0.001, 0.0025, 0.005, 5.0, 10.0, 120.0)]
        assert picked == [1, 1, 3, 3, 4, 4]
        assert data.count == 5 and data.total == pytest.approx(507.0065)
        assert data.buckets()[-1] == ("+Inf", 5.0)
    finally:
        redis_client.hdel(key, *[f for f in redis_client.hkeys(key) if f.startswith(algorithm.encode())])
