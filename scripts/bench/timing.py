"""Pure arithmetic of the dispatch benchmarks: percentiles, per-slot gaps, overhead accounting.

A trial's *user code* is the interval its own code reports: for a subprocess trial from the
script's first statement to just after it wrote `val_dict_list.json` (interpreter start-up and
exit are not user code), for an in-process objective the objective's body after the sampler
answered. A slot's *per-trial overhead* is the gap between the end of one trial's user code and
the start of the next trial's user code on the same slot: everything the system does between
two trials (reporting, recording, asking, publishing, starting a process). The first trial of
each slot has no predecessor; its wait from the start of the run is counted as start-up.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Interval:
    """One trial's user code on one slot (`slot` is any label; None: unknown)."""

    start: float
    end: float
    slot: str | None = None


@dataclass(frozen=True)
class Gap:
    """The slot time between two consecutive trials' user code; `index` is the later trial's
    position in start order (0-based over all trials of the run)."""

    seconds: float
    index: int


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    p50: float
    p95: float
    max: float


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default 'linear'); q in [0, 100]."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"q must be in [0, 100], got {q}")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    frac = pos - lo
    return ordered[lo] + (ordered[hi] - ordered[lo]) * frac


def summarize(values: Sequence[float]) -> Summary:
    if not values:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    return Summary(
        n=len(values),
        mean=sum(values) / len(values),
        p50=percentile(values, 50),
        p95=percentile(values, 95),
        max=max(values),
    )


def assign_slots(intervals: Sequence[Interval], slots: int) -> list[str]:
    """A slot label per interval (same order as given).

    The reported labels are used when there are at most `slots` of them; otherwise (unknown or
    too many labels, e.g. a restarted pool process) each interval, in start order, goes to the
    slot that became free earliest (first in, first out), which is how a queue refills slots.
    """
    labels = {iv.slot for iv in intervals}
    if None not in labels and len(labels) <= slots:
        return [str(iv.slot) for iv in intervals]
    order = sorted(range(len(intervals)), key=lambda i: intervals[i].start)
    free_at: list[tuple[float, int]] = [(-math.inf, s) for s in range(slots)]
    out = [""] * len(intervals)
    for i in order:
        free_at.sort()
        _, slot = free_at[0]
        out[i] = f"slot{slot}"
        free_at[0] = (intervals[i].end, slot)
    return out


def slot_gaps(intervals: Sequence[Interval], slots: int) -> tuple[list[Gap], list[float]]:
    """(gaps between consecutive trials on each slot, the first trial's start of each slot).

    Gap indices refer to positions in start order over the whole run.
    """
    labels = assign_slots(intervals, slots)
    order = sorted(range(len(intervals)), key=lambda i: (intervals[i].start, intervals[i].end))
    rank = {i: r for r, i in enumerate(order)}
    last_end: dict[str, float] = {}
    gaps: list[Gap] = []
    firsts: list[float] = []
    for i in order:
        iv, label = intervals[i], labels[i]
        if label in last_end:
            gaps.append(Gap(iv.start - last_end[label], rank[i]))
        else:
            firsts.append(iv.start)
        last_end[label] = max(iv.end, last_end.get(label, -math.inf))
    return gaps, firsts


@dataclass(frozen=True)
class RunStats:
    """What one run of N trials on `slots` slots measured."""

    trials: int
    slots: int
    wall_s: float
    user_s: float  # sum of user-code time
    gaps: Summary  # per-trial overhead between consecutive trials of a slot
    startup_s: float  # mean wait from the run's start to each slot's first user code

    @property
    def trials_per_s(self) -> float:
        return self.trials / self.wall_s if self.wall_s > 0 else math.nan

    @property
    def overhead_per_trial_s(self) -> float:
        """Slot time not spent in user code, per trial: (slots * wall - user) / trials."""
        return (self.slots * self.wall_s - self.user_s) / self.trials if self.trials else math.nan

    def wall_over_ideal(self, ideal_s: float) -> float:
        return self.wall_s / ideal_s if ideal_s > 0 else math.nan


def run_stats(intervals: Sequence[Interval], slots: int, t0: float, t1: float) -> RunStats:
    """Statistics of a run that started at t0 and ended at t1 (same clock as the intervals)."""
    gaps, firsts = slot_gaps(intervals, slots)
    return RunStats(
        trials=len(intervals),
        slots=slots,
        wall_s=t1 - t0,
        user_s=sum(iv.end - iv.start for iv in intervals),
        gaps=summarize([g.seconds for g in gaps]),
        startup_s=(sum(f - t0 for f in firsts) / len(firsts)) if firsts else math.nan,
    )


def window_gaps(intervals: Sequence[Interval], slots: int, first: int, last: int) -> Summary:
    """Gaps of the trials whose start-order position is in [first, last)."""
    gaps, _ = slot_gaps(intervals, slots)
    return summarize([g.seconds for g in gaps if first <= g.index < last])


def ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(b) and not math.isnan(a) else math.nan


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table; floats are printed as given (format them before)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"row has {len(row)} cells, header {len(header)}")
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


def fmt(value: float, digits: int = 3) -> str:
    """A number for a table: NaN as '-', otherwise `digits` significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}g}"


def ms(value: float, digits: int = 1) -> str:
    """Seconds as milliseconds with `digits` decimals; NaN as '-'."""
    if value is None or math.isnan(value):
        return "-"
    return f"{value * 1000:.{digits}f}"


def check(label: str, ok: bool, detail: str) -> str:
    """One PASS/FAIL line."""
    return f"- {'PASS' if ok else 'FAIL'} {label}: {detail}"
