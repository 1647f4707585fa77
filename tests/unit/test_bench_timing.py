"""The dispatch benchmark's arithmetic: percentiles, per-slot gaps, overhead accounting, tables."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest

from scripts.bench.machine import file_create_us, storage
from scripts.bench.report import footer, replace_block, section_body
from scripts.bench.timing import (
    Interval,
    assign_slots,
    check,
    markdown_table,
    ms,
    percentile,
    ratio,
    run_stats,
    slot_gaps,
    summarize,
    window_gaps,
)


@pytest.mark.parametrize("q", [0, 5, 25, 50, 73.3, 95, 99, 100])
def test_percentile_matches_numpy_linear(q: float) -> None:
    rng = random.Random(3)
    values = [rng.expovariate(1.0) for _ in range(37)]
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_edges() -> None:
    assert percentile([4.0], 95) == 4.0
    assert percentile([1.0, 2.0], 50) == 1.5
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summarize() -> None:
    s = summarize([0.1, 0.2, 0.3, 0.4])
    assert (s.n, s.max) == (4, 0.4)
    assert s.mean == pytest.approx(0.25)
    assert s.p50 == pytest.approx(0.25)
    assert math.isnan(summarize([]).p95)


def _two_slots(gap_a: float, gap_b: float, n: int, work: float) -> list[Interval]:
    """Two slots, each running n trials of `work` s separated by a fixed gap; start at 1.0."""
    out = []
    for slot, gap in (("a", gap_a), ("b", gap_b)):
        t = 1.0
        for _ in range(n):
            out.append(Interval(t, t + work, slot))
            t += work + gap
    return out


def test_slot_gaps_by_label() -> None:
    intervals = _two_slots(0.01, 0.03, n=5, work=0.5)
    gaps, firsts = slot_gaps(intervals, 2)
    assert sorted(round(g.seconds, 9) for g in gaps) == [0.01] * 4 + [0.03] * 4
    assert firsts == [1.0, 1.0]
    assert sorted(g.index for g in gaps) == list(range(2, 10))


def test_assign_slots_falls_back_to_fifo_when_labels_are_unusable() -> None:
    # three labels for two slots (e.g. a pool process replaced): assigned by time instead
    intervals = [Interval(0.0, 1.0, "p1"), Interval(0.0, 2.0, "p2"), Interval(1.1, 3.0, "p3")]
    labels = assign_slots(intervals, 2)
    assert labels[2] == labels[0] != labels[1]
    gaps, _ = slot_gaps(intervals, 2)
    assert [round(g.seconds, 9) for g in gaps] == [0.1]
    # unknown labels: same
    unlabeled = [Interval(iv.start, iv.end) for iv in intervals]
    assert [round(g.seconds, 9) for g in slot_gaps(unlabeled, 2)[0]] == [0.1]


def test_run_stats_overhead_accounting() -> None:
    intervals = _two_slots(0.02, 0.02, n=10, work=0.5)
    t0, t1 = 0.9, max(iv.end for iv in intervals) + 0.05
    stats = run_stats(intervals, 2, t0, t1)
    assert stats.trials == 20
    assert stats.user_s == pytest.approx(10.0)
    assert stats.gaps.p50 == pytest.approx(0.02)
    assert stats.startup_s == pytest.approx(0.1)
    # slot time not in user code: 2 x wall - user, per trial (start-up, gaps and tail included)
    expected = (2 * (t1 - t0) - 10.0) / 20
    assert stats.overhead_per_trial_s == pytest.approx(expected)
    assert stats.overhead_per_trial_s == pytest.approx((2 * 0.1 + 18 * 0.02 + 2 * 0.05) / 20)
    assert stats.trials_per_s == pytest.approx(20 / (t1 - t0))
    assert stats.wall_over_ideal(20 * 0.5 / 2) == pytest.approx((t1 - t0) / 5.0)


def test_window_gaps_detect_growth() -> None:
    # gaps grow linearly with the trial's position: the last window's are larger than the first's
    intervals, t = [], 0.0
    for i in range(200):
        intervals.append(Interval(t, t + 0.01, "s"))
        t += 0.01 + 0.001 * (1 + i / 100)
    first = window_gaps(intervals, 1, 0, 50)
    last = window_gaps(intervals, 1, 150, 200)
    assert first.n == 49 and last.n == 50
    assert first.p50 == pytest.approx(0.001 * (1 + 24 / 100))  # gaps of positions 1..49
    assert last.p50 == pytest.approx(0.001 * (1 + 173.5 / 100))  # positions 150..199
    assert ratio(last.p50, first.p50) > 2


def test_ratio_nan_and_zero() -> None:
    assert ratio(1.0, 2.0) == 0.5
    assert math.isnan(ratio(1.0, 0.0))
    assert math.isnan(ratio(float("nan"), 1.0))


def test_markdown_table_and_formatting() -> None:
    table = markdown_table(["a", "b"], [[1, ms(0.0123)], ["x", ms(float("nan"))]])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| 1 | 12.3 |", "| x | - |"]
    with pytest.raises(ValueError):
        markdown_table(["a"], [[1, 2]])
    assert check("x", True, "fine") == "- PASS x: fine"
    assert check("x", False, "bad").startswith("- FAIL x")


def test_replace_block_keeps_other_blocks() -> None:
    text = replace_block("", "d.one", "first")
    text = replace_block(text, "d.two", "second")
    text = replace_block(text, "d.one", "FIRST")
    assert text.index("FIRST") < text.index("second")
    assert "first" not in text
    assert section_body("x\n<!-- k:begin -->\nbody\n<!-- k:end -->\ny", "k") == "body"
    assert section_body("nothing", "k") == ""
    assert "load average (1/5/15 min) before 1 2 3, after 4 5 6" in footer(
        "cmd", "d", "m", "1 2 3", "4 5 6", 9
    )
    with_storage = footer("cmd", "d", "m", "1", "2", 9, "abc", "under /x: 12 µs of CPU per new file")
    assert with_storage.endswith("Storage: under /x: 12 µs of CPU per new file.")
    assert "code at abc" in with_storage


def test_the_file_creation_probe_measures_in_a_fresh_folder_and_leaves_nothing(tmp_path: Path) -> None:
    cost = file_create_us(tmp_path / "here", files=50)
    assert math.isfinite(cost) and cost >= 0
    assert list((tmp_path / "here").iterdir()) == []
    assert storage(tmp_path).startswith(f"trial directories, SQLite and results under {tmp_path}: ")
