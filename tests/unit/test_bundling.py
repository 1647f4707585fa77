"""Bundles of short trials: the size follows how long trials take; groups are even and in order."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from app.coordinator.bundling import BundleSizer, bundles
from workers.admission import _task_fields


def test_one_trial_per_task_until_a_trial_has_finished() -> None:
    assert BundleSizer(target_s=0.2, max_size=8).size == 1


@pytest.mark.parametrize(
    ("seconds", "size"),
    [(0.001, 8), (0.025, 8), (0.04, 5), (0.1, 2), (0.15, 1), (0.2, 1), (30.0, 1)],
)
def test_a_bundle_runs_about_the_target_time_and_no_more_than_the_cap(seconds: float, size: int) -> None:
    sizer = BundleSizer(target_s=0.2, max_size=8)
    sizer.observe(seconds)
    assert sizer.size == size


def test_the_size_follows_the_trials_length_as_it_changes() -> None:
    sizer = BundleSizer(target_s=0.2, max_size=8, weight=0.2)
    for _ in range(20):
        sizer.observe(0.01)
    assert sizer.size == 8
    sizer.observe(0.3)  # one slow trial moves the mean a fifth of the way: 0.068 s
    assert sizer.size == 2
    for _ in range(20):
        sizer.observe(0.5)
    assert sizer.size == 1
    for _ in range(60):
        sizer.observe(0.03)
    assert sizer.size == 6


def test_max_size_one_turns_bundling_off_and_bad_durations_are_ignored() -> None:
    off = BundleSizer(target_s=0.2, max_size=1)
    off.observe(0.001)
    assert off.size == 1
    sizer = BundleSizer(target_s=0.2, max_size=8)
    sizer.observe(-1.0)  # a clock step: not a duration
    assert sizer.mean_s is None and sizer.size == 1
    sizer.observe(0.0)  # a trial faster than the clock's resolution
    assert sizer.size == 8


@pytest.mark.parametrize(
    ("n", "size", "lengths"),
    [
        (0, 8, []),
        (1, 8, [1]),
        (8, 8, [8]),
        (9, 8, [5, 4]),
        (17, 8, [6, 6, 5]),
        (5, 1, [1] * 5),
        (3, 0, [1] * 3),
    ],
)
def test_groups_keep_the_order_and_are_as_even_as_can_be(n: int, size: int, lengths: list[int]) -> None:
    items = list(range(n))
    groups = bundles(items, size)
    assert [len(g) for g in groups] == lengths
    assert [x for g in groups for x in g] == items


def test_a_worker_lists_a_bundle_by_its_first_trial() -> None:
    """The fleet registry (`hpo workers`) reads a reserved request's trial from its kwargs."""
    one = SimpleNamespace(kwargs={"task": {"exec_id": "e-1", "gpus": 0}}, args=())
    bundle = SimpleNamespace(kwargs={"tasks": [{"exec_id": "e-2"}, {"exec_id": "e-3"}]}, args=())
    other = SimpleNamespace(kwargs={}, args=())
    assert _task_fields(one)["exec_id"] == "e-1"
    assert _task_fields(bundle)["exec_id"] == "e-2"
    assert _task_fields(other) == {}
