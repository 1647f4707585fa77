"""Histogram data as Prometheus exposes it: upper bounds, cumulative counts, count and sum.

Built where the numbers live (SQL aggregates, Redis counters) and rendered by the API's collector.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class HistogramData:
    bounds: tuple[float, ...]  # finite upper bounds, ascending; +Inf is implied
    cumulative: tuple[int, ...]  # observations <= each bound
    count: int
    total: float  # the sum of the observations

    def buckets(self) -> list[tuple[str, float]]:
        """[(le, cumulative count)] with the +Inf bucket last, as prometheus_client takes them."""
        rows = [(_le(b), float(c)) for b, c in zip(self.bounds, self.cumulative, strict=True)]
        return [*rows, ("+Inf", float(self.count))]

    @classmethod
    def empty(cls, bounds: Sequence[float]) -> HistogramData:
        return cls(tuple(bounds), (0,) * len(bounds), 0, 0.0)

    @classmethod
    def from_counts(cls, bounds: Sequence[float], per_bucket: Sequence[int], total: float) -> HistogramData:
        """From non-cumulative counts: one per bound, then the count above the last bound."""
        assert len(per_bucket) == len(bounds) + 1
        running, cumulative = 0, []
        for n in per_bucket[:-1]:
            running += n
            cumulative.append(running)
        return cls(tuple(bounds), tuple(cumulative), running + per_bucket[-1], total)


def bucket_index(bounds: Sequence[float], value: float) -> int:
    """The first bucket whose upper bound holds `value` (len(bounds) for +Inf)."""
    return bisect.bisect_left(bounds, value)


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))
