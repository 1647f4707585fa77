"""How many short trials go out in one Celery task (a bundle), from how long trials take.

Every trial costs a Celery message: the coordinator's send, the worker main process's fetch,
its hand-over to a pool process and the ack, a few milliseconds of CPU and of latency between
two trials of a slot. For trials of a second or more that is noise; for trials of a few
milliseconds it is most of the time. So once an experiment's trials are seen to be short, the
coordinator sends them in bundles sized to run for about `target_s` together (at most
`max_size`): a bundle is one message, its trials run one after another on the slot that took
it, each started, recorded and reported on its own. The slot claims all of a bundle's trials when
it takes it, so if that worker dies their leases lapse and the coordinator runs them again
(workers.runner RESERVE_SCRIPT). Trials with GPUs, synchronous batches and the trials of a searcher
that learns from results (`Optimizer.adaptive`) are never bundled (ExperimentRuntime.bundle).

Pure: the coordinator feeds it trial durations and asks for the size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass
class BundleSizer:
    target_s: float = 0.2  # a bundle runs about this long (the lag it adds to the search)
    max_size: int = 8  # 1: never bundle
    weight: float = 0.2  # of each new duration in the running mean
    mean_s: float | None = None  # running mean of finished trials' durations (claim to end)

    def observe(self, seconds: float) -> None:
        if seconds < 0:
            return
        self.mean_s = seconds if self.mean_s is None else self.mean_s + self.weight * (seconds - self.mean_s)

    @property
    def size(self) -> int:
        """Trials per task: 1 until a trial has finished, or when trials are not short."""
        if self.max_size <= 1 or self.mean_s is None:
            return 1
        fit = int(self.target_s / max(self.mean_s, 1e-4))
        return max(1, min(fit, self.max_size))


def bundles(items: Sequence[T], size: int) -> list[list[T]]:
    """`items` in order, in groups of at most `size`, as even as can be (9 by 8: 5 and 4)."""
    if not items:
        return []
    count = -(-len(items) // max(size, 1))
    base, extra = divmod(len(items), count)
    out: list[list[T]] = []
    start = 0
    for i in range(count):
        end = start + base + (1 if i < extra else 0)
        out.append(list(items[start:end]))
        start = end
    return out
