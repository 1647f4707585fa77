"""Optimizer suggestion latency, counted in one Redis hash that every coordinator adds to.

The coordinator records each answered ask() with `record_suggestion`: one HINCRBY on the bucket
the latency falls in, one on the count, one HINCRBYFLOAT on the sum, all under
`hpo:metrics:suggest` with fields `<algorithm>|<bucket>`, `<algorithm>|count`, `<algorithm>|sum`.
The API's /metrics collector reads it back as one histogram per algorithm, so any number of API
processes and coordinators agree. Counters live as long as the broker's data.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

from redis.exceptions import RedisError

from app.histogram import HistogramData, bucket_index
from app.keys import suggest_metrics_key

log = logging.getLogger("hpo.metrics")

# Seconds: inline searchers answer in microseconds to milliseconds, a GP fit or a plugin in seconds.
SUGGEST_BOUNDS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)  # fmt: skip
_SEP = "|"


def _field(algorithm: str, suffix: str) -> str:
    return f"{algorithm}{_SEP}{suffix}"


def record_suggestion(client: Any, algorithm: str, seconds: float) -> None:
    """Count one ask() that took `seconds`; a broker hiccup loses the sample, never the ask."""
    record_suggestions(client, [(algorithm, seconds)])


def record_suggestions(client: Any, samples: Sequence[tuple[str, float]]) -> None:
    """Count many (algorithm, seconds) asks in one round trip (the coordinator flushes them
    every poll instead of paying a transaction per trial)."""
    if not samples:
        return
    counts: Counter[str] = Counter()
    sums: dict[str, float] = {}
    for algorithm, seconds in samples:
        index = bucket_index(SUGGEST_BOUNDS, seconds)
        bucket = "inf" if index == len(SUGGEST_BOUNDS) else str(index)
        counts[_field(algorithm, bucket)] += 1
        counts[_field(algorithm, "count")] += 1
        sums[algorithm] = sums.get(algorithm, 0.0) + max(seconds, 0.0)
    try:
        with client.pipeline(transaction=True) as pipe:
            key = suggest_metrics_key()
            for field, n in counts.items():
                pipe.hincrby(key, field, n)
            for algorithm, total in sums.items():
                pipe.hincrbyfloat(key, _field(algorithm, "sum"), total)
            pipe.execute()
    except RedisError as exc:
        log.debug("suggestion latency not recorded: %s", exc)


def read_suggestions(client: Any) -> dict[str, HistogramData]:
    """{algorithm: histogram} from the counters (an empty dict before the first ask)."""
    raw = client.hgetall(suggest_metrics_key())
    per_algorithm: dict[str, dict[str, str]] = {}
    for key, value in raw.items():
        text = key.decode() if isinstance(key, bytes) else str(key)
        algorithm, sep, suffix = text.rpartition(_SEP)
        if sep:
            per_algorithm.setdefault(algorithm, {})[suffix] = (
                value.decode() if isinstance(value, bytes) else str(value)
            )
    out = {}
    for algorithm, fields in sorted(per_algorithm.items()):
        per_bucket = [int(fields.get(str(i), 0)) for i in range(len(SUGGEST_BOUNDS))]
        per_bucket.append(int(fields.get("inf", 0)))
        out[algorithm] = HistogramData.from_counts(SUGGEST_BOUNDS, per_bucket, float(fields.get("sum", 0.0)))
    return out
