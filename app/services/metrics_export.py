"""Prometheus series for /metrics, computed at scrape time from SQL and the broker.

Nothing is kept in the API process: every scrape asks SQL (GROUP BY and SUM(CASE ...) aggregates)
and Redis (queue lengths, the fleet registry, the suggestion-latency counters the coordinators
keep), so any number of API processes answer alike.

Series:
  hpo_trials{state}, hpo_experiments{state}
  hpo_trial_queue_wait_seconds (histogram: trial recorded and queued -> started)
  hpo_trial_duration_seconds (histogram: started -> ended)
  hpo_suggestion_latency_seconds{algorithm} (histogram: one optimizer ask())
  hpo_queue_depth{queue}, hpo_queue_workers{queue} (waiting tasks; workers that serve the queue)
  hpo_workers{gpu_type}, hpo_worker_slots{gpu_type,state=used|free}, hpo_gpus{gpu_type,state=busy|free|held}
  hpo_broker_up (1 when Redis answered this scrape)
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from app.broker_queues import QueueLayout
from app.fleet import WorkerInfo, live_workers
from app.histogram import HistogramData
from app.store import monitoring
from app.store.repository import Store
from app.suggest_metrics import read_suggestions

log = logging.getLogger("hpo.metrics")
CPU = "cpu"  # the gpu_type label of CPU workers


def _histogram(name: str, doc: str, data: HistogramData) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, doc, buckets=data.buckets(), sum_value=data.total)


def _gauge(
    name: str, doc: str, labels: list[str], rows: Mapping[tuple[str, ...], float]
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for values, value in sorted(rows.items()):
        family.add_metric(list(values), value)
    return family


class HpoCollector(Collector):
    def __init__(
        self, store: Store, redis: Any | None, transport_options: Mapping[str, Any] | None = None
    ) -> None:
        self.store = store
        self.redis = redis
        self.layout = QueueLayout(transport_options)

    def collect(self) -> Iterator[Metric]:
        yield from self._from_sql()
        if self.redis is not None:
            yield from self._from_broker()

    def _from_sql(self) -> Iterator[Metric]:
        trials = monitoring.trial_states(self.store)
        yield _gauge("hpo_trials", "Trials by state.", ["state"], {(k,): v for k, v in trials.items()})
        exps = monitoring.experiment_states(self.store)
        yield _gauge(
            "hpo_experiments", "Experiments by state.", ["state"], {(k,): v for k, v in exps.items()}
        )
        yield _histogram(
            "hpo_trial_queue_wait_seconds",
            "Seconds from a trial being recorded and queued to its start, over trials that started.",
            monitoring.queue_wait(self.store),
        )
        yield _histogram(
            "hpo_trial_duration_seconds",
            "Seconds from a trial's start to its end, over trials that ended.",
            monitoring.trial_duration(self.store),
        )

    def _from_broker(self) -> Iterator[Metric]:
        try:
            workers = live_workers(self.redis)
            queues = {q for w in workers for q in w.queues} | monitoring.active_queues(self.store)
            depths = self.layout.depths(self.redis, queues)
            suggestions = read_suggestions(self.redis)
        except RedisError as exc:
            log.warning("/metrics: the broker does not answer: %s", exc)
            yield GaugeMetricFamily("hpo_broker_up", "1 when the broker answered this scrape.", value=0)
            return
        yield GaugeMetricFamily("hpo_broker_up", "1 when the broker answered this scrape.", value=1)
        latency = HistogramMetricFamily(
            "hpo_suggestion_latency_seconds",
            "Seconds an optimizer took to answer one ask() for new trials.",
            labels=["algorithm"],
        )
        for algorithm, data in suggestions.items():
            latency.add_metric([algorithm], data.buckets(), data.total)
        yield latency
        yield _gauge(
            "hpo_queue_depth",
            "Tasks waiting in a trial queue (queues some worker serves or an active experiment uses).",
            ["queue"],
            {(q,): n for q, n in depths.items()},
        )
        serving = Counter(q for w in workers for q in set(w.queues))
        yield _gauge(
            "hpo_queue_workers",
            "Connected workers that serve a trial queue.",
            ["queue"],
            {(q,): serving.get(q, 0) for q in depths},
        )
        yield from _fleet(workers)


def _fleet(workers: list[WorkerInfo]) -> Iterator[Metric]:
    count: Counter[tuple[str, ...]] = Counter()
    slots: Counter[tuple[str, ...]] = Counter()
    gpus: Counter[tuple[str, ...]] = Counter()
    for w in workers:
        kind = w.gpu_type or CPU
        count[(kind,)] += 1
        used = min(w.slots_used, w.slots)
        slots[(kind, "used")] += used
        slots[(kind, "free")] += max(w.slots - used, 0)
        if w.gpu_type is not None or w.gpus:
            busy, held = len(set(w.busy_gpus)), len(set(w.quarantined_gpus))
            gpus[(kind, "busy")] += busy
            gpus[(kind, "held")] += held
            gpus[(kind, "free")] += max(len(w.gpus) - busy - held, 0)
    yield _gauge("hpo_workers", "Connected workers by GPU type (cpu for CPU workers).", ["gpu_type"], count)
    yield _gauge(
        "hpo_worker_slots", "Trial slots of connected workers, used or free.", ["gpu_type", "state"], slots
    )
    yield _gauge(
        "hpo_gpus",
        "GPUs of connected workers: busy (granted to a trial), held (memory not yet freed), free.",
        ["gpu_type", "state"],
        gpus,
    )


def make_registry(
    store: Store, redis: Any | None, transport_options: Mapping[str, Any] | None = None
) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HpoCollector(store, redis, transport_options))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
