"""ASHA and median stopping: pure decisions on reported points."""

from __future__ import annotations

import random

from app.schedulers import Decision, create_scheduler
from app.schedulers.asha import ASHA, rung_levels
from app.schedulers.median import MedianStopping
from app.spec.model import SchedulerSpec

STOP, GO = Decision.STOP, Decision.CONTINUE


def test_rung_levels() -> None:
    assert rung_levels(1, 27, 3) == [1, 3, 9]
    assert rung_levels(1, 27, 3, bracket=1) == [3, 9]
    assert rung_levels(1, 81, 3) == [1, 3, 9, 27]
    assert rung_levels(2, 16, 2) == [2, 4, 8]
    assert rung_levels(1, 1, 3) == []


def test_asha_keeps_the_best_third_at_each_rung() -> None:
    asha = ASHA(SchedulerSpec(type="asha", max=27, eta=3, grace=1))
    assert asha.on_result(0, 1, 0.5) is GO  # the first to reach a rung always goes on
    assert asha.on_result(1, 1, 0.9) is STOP  # worse than the best third of {0.5}
    assert asha.on_result(2, 1, 0.2) is GO
    assert asha.on_result(3, 1, 0.4) is GO  # 1/3-quantile of {0.5, 0.9, 0.2} is 0.4: not worse
    assert asha.on_result(4, 1, 0.45) is STOP
    assert asha.on_result(1, 2, 0.0) is GO  # a stopped trial's late points change nothing
    # rung 3: recorded only once per trial, at the highest rung reached
    assert asha.on_result(2, 3, 0.15) is GO
    assert asha.on_result(0, 5, 0.6) is STOP  # skipped from 1 to 5: judged at rung 3 against {0.15}
    assert asha.brackets[0][0][1][0] == 0.5  # trial 0's loss at rung 1 is the one it had there
    assert set(asha.brackets[0][1][1]) == {2, 0}


def test_asha_decisions_replay_identically() -> None:
    rng = random.Random(3)
    points = [(rng.randrange(30), rng.choice([1, 2, 3, 5, 9, 12]), rng.random()) for _ in range(400)]
    spec = SchedulerSpec(type="asha", max=27, eta=3, grace=1, brackets=2)
    first, second = ASHA(spec), ASHA(spec)
    assert [first.on_result(*p) for p in points] == [second.on_result(*p) for p in points]
    assert ASHA(spec).brackets[1][0][0] == 3  # bracket 1 starts one rung up


def test_asha_stops_a_share_close_to_one_minus_one_over_eta() -> None:
    asha = ASHA(SchedulerSpec(type="asha", max=27, eta=3, grace=1))
    rng = random.Random(0)
    stops = sum(asha.on_result(t, 1, rng.random()) is STOP for t in range(600))
    assert 0.55 < stops / 600 < 0.72  # about 2/3 stopped at the first rung


def test_median_rule_needs_samples_and_grace() -> None:
    rule = MedianStopping(SchedulerSpec(type="median", grace=2, min_samples=2))
    for t, losses in enumerate([[0.5, 0.4, 0.3], [0.6, 0.5, 0.4]]):
        for step, loss in enumerate(losses, start=1):
            assert rule.on_result(t, step, loss) is GO
    assert rule.on_result(2, 1, 5.0) is GO  # below the grace resource
    assert rule.on_result(2, 2, 5.0) is STOP  # best 5.0 > median of running means {0.45, 0.55}
    assert rule.on_result(3, 2, 0.3) is GO
    lonely = MedianStopping(SchedulerSpec(type="median", grace=1, min_samples=3))
    assert lonely.on_result(0, 1, 1.0) is GO and lonely.on_result(1, 1, 9.0) is GO  # too few others


def test_factory() -> None:
    assert create_scheduler(None) is None
    assert isinstance(create_scheduler(SchedulerSpec(type="asha")), ASHA)
    assert isinstance(create_scheduler(SchedulerSpec(type="median")), MedianStopping)
