"""Hyperband: bracket arithmetic against Li et al.'s formulas, the WMLA schedule (every rung a new
trial carrying ResourceName = budget), synchronous successive halving, early opening of the next
bracket, determinism, rebuilding after a restart, settings validation and the IBM payload."""

from __future__ import annotations

import copy
import json
import math
import pickle
import random
from collections import Counter
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.optimizers import create_optimizer, optimizer_class
from app.optimizers.base import Observation
from app.optimizers.hyperband import Hyperband
from app.optimizers.hyperband_math import (
    MAX_BRACKETS,
    Bracket,
    Rung,
    brackets,
    budget,
    cycle_budget,
    cycle_trials,
    max_bracket,
    rung_sizes,
)
from app.optimizers.settings import HyperbandSettings, RandomSettings, parse_settings
from app.space import CategoricalParam, Config, NumericParam, SearchSpace, config_key
from app.spec import SpecError, parse_spec

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "wmla" / "hpo_submit_hyperband_tf_mnist.json"

PLANE = SearchSpace(
    params=(
        NumericParam(type="float", name="x", low=-5.0, high=10.0),
        NumericParam(type="float", name="y", low=0.0, high=15.0),
    )
)
TWELVE = SearchSpace(  # 3 x 4 = 12 configurations
    params=(
        NumericParam(type="int", name="depth", low=1, high=3),
        CategoricalParam(name="act", choices=("relu", "tanh", "gelu", "silu")),
    )
)


# --- bracket arithmetic ----------------------------------------------------------------------
def table(R: int, eta: float) -> list[tuple[int, list[tuple[int, float]]]]:
    return [(b.s, [(rung.n, rung.r) for rung in b.rungs]) for b in brackets(R, eta)]


def test_brackets_r81_eta3_explicit() -> None:
    assert table(81, 3) == [
        (4, [(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)]),
        (3, [(34, 3), (11, 9), (3, 27), (1, 81)]),
        (2, [(15, 9), (5, 27), (1, 81)]),
        (1, [(8, 27), (2, 81)]),
        (0, [(5, 81)]),
    ]
    first = brackets(81, 3)[0]
    assert first == Bracket(
        s=4, n=81, r=1.0, rungs=[Rung(81, 1.0), Rung(27, 3.0), Rung(9, 9.0), Rung(3, 27.0), Rung(1, 81.0)]
    )
    assert [b.budgets(81) for b in brackets(81, 3)] == [
        [1, 3, 9, 27, 81],
        [3, 9, 27, 81],
        [9, 27, 81],
        [27, 81],
        [81],
    ]


def test_brackets_r9_eta2_explicit() -> None:
    # s_max = 3 (8 <= 9 < 16), B = 36; r = 9/8 is not an integer: budgets are rounded
    assert table(9, 2) == [
        (3, [(8, 1.125), (4, 2.25), (2, 4.5), (1, 9)]),
        (2, [(6, 2.25), (3, 4.5), (1, 9)]),
        (1, [(4, 4.5), (2, 9)]),
        (0, [(4, 9)]),
    ]
    assert [b.budgets(9) for b in brackets(9, 2)] == [[1, 2, 5, 9], [2, 5, 9], [5, 9], [9]]


def test_brackets_r27_eta3_explicit() -> None:
    assert table(27, 3) == [
        (3, [(27, 1), (9, 3), (3, 9), (1, 27)]),
        (2, [(12, 3), (4, 9), (1, 27)]),
        (1, [(6, 9), (2, 27)]),
        (0, [(4, 27)]),
    ]


@pytest.mark.parametrize("R", [9, 27, 81])
@pytest.mark.parametrize("eta", [2, 3])
def test_brackets_follow_the_formulas(R: int, eta: int) -> None:
    s_max = 0
    while eta ** (s_max + 1) <= R:
        s_max += 1
    got = brackets(R, eta)
    assert [b.s for b in got] == list(range(s_max, -1, -1))
    B = (s_max + 1) * R
    for b in got:
        s = b.s
        n = math.ceil(Fraction(B, R) * Fraction(eta**s, s + 1))
        assert b.n == n
        assert b.r == pytest.approx(R / eta**s)
        assert len(b.rungs) == s + 1
        for i, rung in enumerate(b.rungs):
            assert rung.n == n // eta**i
            assert rung.r == pytest.approx(R * eta ** (i - s))
        assert b.rungs[-1].r == R
        assert all(x.n >= 1 for x in b.rungs)
        assert all(a.n >= c.n for a, c in zip(b.rungs, b.rungs[1:], strict=False))
        budgets = b.budgets(R)
        assert all(isinstance(v, int) and 1 <= v <= R for v in budgets)
        assert budgets == sorted(budgets) and budgets[-1] == R
        assert b.trials == sum(x.n for x in b.rungs)
        assert b.total_budget == pytest.approx(sum(x.n * x.r for x in b.rungs))
        # each bracket spends about B (Li et al.: at most (s+1) * n * r <= B + R * (s + 1))
        assert b.total_budget <= B + R * (s + 1)


@pytest.mark.parametrize(("eta", "top"), [(2, 30), (3, 19), (2.0, 30), (3.0, 19), (5, 13)])
def test_s_max_is_exact_at_powers_of_eta(eta: float, top: int) -> None:
    for k in range(1, top + 1):
        R = round(eta**k)
        if R >= 2**31:
            break
        assert max_bracket(R, eta) == k
        assert max_bracket(R - 1, eta) == k - 1
        assert max_bracket(R + 1, eta) == k
    assert max_bracket(1, eta) == 0


def test_s_max_with_decimal_eta() -> None:
    assert max_bracket(2, 1.1) == 7  # 1.1**7 = 1.95 <= 2 < 2.14
    assert max_bracket(121, 1.1) == 50  # 1.1**50 = 117.4
    assert max_bracket(100, 2.5) == 5  # 2.5**5 = 97.7
    assert max_bracket(10, 100.0) == 0
    assert brackets(10, 100.0) == [Bracket(s=0, n=1, r=10.0, rungs=[Rung(1, 10.0)])]


def test_bad_arguments_raise() -> None:
    for R, eta in [(0, 3), (-1, 3), (9, 1), (9, 0.5), (9, float("inf"))]:
        with pytest.raises(ValueError):
            brackets(R, eta)
    with pytest.raises(ValueError, match="brackets"):
        max_bracket(1000, 1.01)
    assert max_bracket(2**31 - 1, 1.5) < MAX_BRACKETS


def test_budget_rounding() -> None:
    assert budget(1.0, 81) == 1
    assert budget(1.125, 9) == 1
    assert budget(1.5, 9) == 2  # halves round up
    assert budget(2.25, 9) == 2
    assert budget(4.5, 9) == 5
    assert budget(0.2, 81) == 1  # at least 1
    assert budget(81.4, 81) == 81  # never above R
    assert budget(100.0, 81) == 81
    assert all(isinstance(budget(r, 81), int) for r in (0.3, 2.5, 40.5))


def test_cycle_totals_and_truncated_rungs() -> None:
    all81 = brackets(81, 3)
    assert cycle_trials(all81) == 121 + 49 + 21 + 10 + 5
    assert all81[0].total_budget == 5 * 81  # every rung of s_max spends R
    assert cycle_budget(all81) == pytest.approx(sum(b.total_budget for b in all81))
    assert cycle_trials(brackets(9, 3)) == (9 + 3 + 1) + (5 + 1) + 3
    first = all81[0]
    assert rung_sizes(first, 81, 3) == [81, 27, 9, 3, 1]
    assert rung_sizes(first, 50, 3) == [50, 16, 5, 1, 1]  # a space of 50: still one config reaches R
    assert rung_sizes(first, 0, 3) == [0, 0, 0, 0, 0]
    for b in all81:
        assert rung_sizes(b, b.n, 3) == [x.n for x in b.rungs]


# --- the optimizer ---------------------------------------------------------------------------
def settings(R: int = 9, eta: float = 3.0, seed: int | None = None) -> HyperbandSettings:
    return HyperbandSettings(seed=seed, resource_name="epochs", resource_value=R, eta=eta)


def make(R: int = 9, eta: float = 3.0, seed: int = 1, space: SearchSpace = PLANE) -> Hyperband:
    return Hyperband(space, settings(R, eta, seed), seed=seed)


def base(config: Config) -> Config:
    return {k: v for k, v in config.items() if k != "epochs"}


def loss_of(config: Config) -> float:
    """Smaller x is better, more epochs help a little."""
    return float(config["x"]) + 10.0 / int(config["epochs"])


def propose(opt: Hyperband, n: int, running: Sequence[Config] = ()) -> list[Config]:
    configs = opt.ask(n, running)
    opt.mark_proposed(configs)
    return configs


def tell(opt: Hyperband, configs: Sequence[Config], fn: Callable[[Config], float | None] = loss_of) -> None:
    opt.tell([Observation(c, fn(c)) for c in configs])


def test_registry_and_resource_name() -> None:
    assert optimizer_class("hyperband") is Hyperband
    opt = make()
    assert opt.name == "hyperband"
    assert opt.resource_name == "epochs"
    assert Hyperband.blocking is False
    with pytest.raises(TypeError):
        Hyperband(PLANE, RandomSettings(), seed=1)
    with pytest.raises(ValueError, match="search-space"):
        Hyperband(PLANE, HyperbandSettings(resource_name="x", resource_value=9), seed=1)


def test_first_proposals_are_the_most_exploratory_rung0() -> None:
    """WMLA observation: ResourceValue=81, eta=3, maxJobNum 8 -> every trial got epochs=1."""
    opt = make(R=81)
    batch = opt.ask(8)
    assert [c["epochs"] for c in batch] == [1] * 8
    one_by_one = make(R=81)
    for _ in range(8):
        [config] = propose(one_by_one, 1)
        assert config["epochs"] == 1
    assert one_by_one.proposed == batch  # the k-th new base comes from rng_for(k) either way
    assert len({config_key(base(c)) for c in batch}) == 8
    assert all(PLANE.problems(base(c)) == [] for c in batch)


def test_a_whole_rung0_then_the_best_are_promoted() -> None:
    opt = make(R=9)
    rung0 = propose(opt, 9)
    assert [c["epochs"] for c in rung0] == [1] * 9
    tell(opt, rung0)
    promoted = propose(opt, 3)
    best = sorted(rung0, key=loss_of)[:3]
    assert promoted == [{**base(c), "epochs": 3} for c in best]  # best first
    tell(opt, promoted)
    [final] = propose(opt, 1)
    assert final == {**base(min(promoted, key=loss_of)), "epochs": 9}


def test_no_promotion_before_the_whole_rung_has_results() -> None:
    opt = make(R=9)
    rung0 = propose(opt, 9)
    tell(opt, sorted(rung0, key=loss_of)[:8])  # the best eight, one still running
    later = opt.ask(2)
    known = {config_key(base(c)) for c in rung0}
    assert [c["epochs"] for c in later] == [3, 3]
    assert not {config_key(base(c)) for c in later} & known  # new bases of the next bracket
    tell(opt, [c for c in rung0 if c not in sorted(rung0, key=loss_of)[:8]])
    assert {config_key(base(c)) for c in opt.ask(3)} <= known  # now the promotions come first


def test_next_bracket_opens_early_while_the_current_one_waits() -> None:
    opt = make(R=9)  # brackets: s=2 (9@1, 3@3, 1@9), s=1 (5@3, 1@9), s=0 (3@9)
    propose(opt, 9)
    nxt = opt.ask(7)
    assert [c["epochs"] for c in nxt] == [3] * 5 + [9] * 2
    assert len({config_key(base(c)) for c in nxt}) == 7


def test_promotions_come_before_new_configurations() -> None:
    opt = make(R=9)
    rung0 = propose(opt, 9)
    propose(opt, 2)  # the next bracket opened early
    tell(opt, rung0)
    out = opt.ask(5)
    assert [c["epochs"] for c in out] == [3, 3, 3, 3, 3]
    assert [config_key(base(c)) for c in out[:3]] == [
        config_key(base(c)) for c in sorted(rung0, key=loss_of)[:3]
    ]
    assert all(config_key(base(c)) not in {config_key(base(r)) for r in rung0} for c in out[3:])


def test_failed_trials_are_never_promoted_over_finished_ones() -> None:
    opt = make(R=9)
    rung0 = propose(opt, 9)
    ok = rung0[:2]
    tell(opt, rung0, lambda c: loss_of(c) if c in ok else None)
    out = opt.ask(3)
    assert out[:2] == [{**base(c), "epochs": 3} for c in sorted(ok, key=loss_of)]
    assert config_key(base(out[2])) not in {config_key(base(c)) for c in rung0}  # next bracket


def test_nan_and_all_failed_rungs() -> None:
    opt = make(R=9)
    rung0 = propose(opt, 9)
    tell(opt, rung0, lambda c: None if c is not rung0[4] else float("nan"))
    out = opt.ask(2)  # nothing to promote: the instance ended, the next one goes on
    assert [c["epochs"] for c in out] == [3, 3]
    assert not {config_key(base(c)) for c in out} & {config_key(base(c)) for c in rung0}


def test_ties_are_broken_by_join_order() -> None:
    opt = make(R=9)
    rung0 = propose(opt, 9)
    tell(opt, rung0, lambda c: 1.0)
    assert [base(c) for c in opt.ask(3)] == [base(c) for c in rung0[:3]]


def test_one_full_loop_then_it_starts_again() -> None:
    opt = make(R=9)
    epochs = []
    for _ in range(cycle_trials(opt.brackets) + 2):
        [config] = propose(opt, 1)
        tell(opt, [config])
        epochs.append(config["epochs"])
    assert epochs == [1] * 9 + [3] * 3 + [9] + [3] * 5 + [9] + [9] * 3 + [1, 1]


def test_never_more_than_n_and_nothing_for_zero() -> None:
    opt = make(R=9)
    assert opt.ask(0) == []
    rung0 = propose(opt, 9)
    tell(opt, rung0)
    assert len(opt.ask(2)) == 2
    assert opt.ask(0) == []


def simulate(
    opt: Hyperband, steps: int, parallel: int, seed: int, fail: float = 0.1, running: Sequence[Config] = ()
) -> tuple[list[Config], list[Config]]:
    """Asks while slots are free, finishes a random running trial each step; returns (still running,
    every proposal). Checks that no base ever runs twice at once and that budgets only grow."""
    rnd = random.Random(seed)
    pending = list(running)
    for _ in range(steps):
        pending += propose(opt, parallel - len(pending), pending)
        bases = [config_key(base(c)) for c in pending]
        assert len(bases) == len(set(bases)), "a base runs twice at once"
        if not pending:
            break
        rnd.shuffle(pending)
        done = pending.pop()
        value = float(sum(v if isinstance(v, float) else 1 for v in base(done).values()))
        opt.tell([Observation(done, None if rnd.random() < fail else value / int(done["epochs"]))])
    # The checkpoint a base's trials share is always a valid start: its budgets only grow.
    budgets: dict[tuple, list[int]] = {}
    for c in opt.proposed:
        budgets.setdefault(config_key(base(c)), []).append(int(c["epochs"]))
    assert all(b == sorted(set(b)) for b in budgets.values())
    return pending, opt.proposed


@pytest.mark.parametrize(("R", "eta"), [(9, 3.0), (10, 2.5), (27, 3.0), (81, 2.0)])
def test_budgets_are_ints_in_range_and_nothing_repeats(R: int, eta: float) -> None:
    opt = make(R=R, eta=eta, seed=5)
    _, proposed = simulate(opt, 150, 6, seed=R)
    allowed = {v for b in brackets(R, eta) for v in b.budgets(R)}
    assert all(type(c["epochs"]) is int and 1 <= c["epochs"] <= R for c in proposed)
    assert {c["epochs"] for c in proposed} <= allowed
    keys = [config_key(c) for c in proposed]
    assert len(keys) == len(set(keys))


def test_seeded_runs_repeat_and_seeds_differ() -> None:
    a = simulate(make(R=27, seed=7), 60, 4, seed=1)[1]
    b = simulate(make(R=27, seed=7), 60, 4, seed=1)[1]
    c = simulate(make(R=27, seed=8), 60, 4, seed=1)[1]
    assert a == b
    assert a != c


def test_ask_does_not_mutate() -> None:
    opt = make(R=27, seed=3)
    running, _ = simulate(opt, 40, 5, seed=2)
    before = pickle.dumps(vars(opt))
    proposed, history = copy.deepcopy(opt.proposed), copy.deepcopy(opt.history)
    first = opt.ask(4, running)
    assert pickle.dumps(vars(opt)) == before
    assert opt.proposed == proposed and opt.history == history
    assert opt.ask(4, running) == first


def rebuilt(opt: Hyperband) -> Hyperband:
    """What the coordinator does after a restart: all trials in number order, then all results."""
    fresh = Hyperband(opt.space, opt.settings, seed=opt.seed)
    fresh.mark_proposed(opt.proposed)
    number = {config_key(c): i for i, c in enumerate(opt.proposed)}
    fresh.tell(sorted(opt.history, key=lambda o: number[config_key(o.config)]))
    return fresh


@pytest.mark.parametrize("space", [PLANE, TWELVE], ids=["plane", "twelve"])
def test_a_rebuilt_optimizer_proposes_what_the_original_would(space: SearchSpace) -> None:
    opt = make(R=9, seed=11, space=space)
    rnd = random.Random(4)
    running: list[Config] = []
    for step in range(70):
        copy_ = rebuilt(opt)
        n = 5 - len(running)
        assert copy_.ask(n, running) == opt.ask(n, running), f"step {step}"
        running += propose(opt, n, running)
        if not running:
            break
        rnd.shuffle(running)
        done = running.pop()
        tell(opt, [done], lambda c: None if rnd.random() < 0.1 else float(len(str(c))) / int(c["epochs"]))


def test_finite_space_reuses_inactive_bases_then_ends() -> None:
    opt = make(R=9, space=TWELVE)  # 12 bases, budgets 1, 3, 9
    first = propose(opt, 12)
    assert [c["epochs"] for c in first] == [1] * 9 + [3] * 3  # the next bracket takes the 3 unused
    assert opt.ask(1) == []  # every other base is busy in the first bracket: wait for results
    tell(opt, first[:9], lambda c: float(c["depth"]))
    nxt = propose(opt, 4)
    assert [c["epochs"] for c in nxt] == [3, 3, 3, 3]  # 3 promotions, then 1 base dropped at rung 0
    assert all(config_key(base(c)) in {config_key(base(f)) for f in first[:9]} for c in nxt)
    running, proposed = simulate(opt, 200, 8, seed=3, fail=0.0, running=first[9:] + nxt)
    assert running == []
    counts = Counter(c["epochs"] for c in proposed)
    assert counts[9] == 12 and counts[1] <= 12 and counts[3] <= 12  # every base reached R once
    assert opt.ask(3) == []  # nothing left: the coordinator ends the experiment as exhausted


def test_budget_key_is_an_int_after_a_float_round_trip() -> None:
    opt = make(R=9)
    rung0 = propose(opt, 9)
    stored = [{**c, "epochs": float(c["epochs"])} for c in rung0]  # e.g. a store that keeps floats
    tell(opt, stored)
    out = opt.ask(3)
    assert [c["epochs"] for c in out] == [3, 3, 3] and all(type(c["epochs"]) is int for c in out)


# --- settings ----------------------------------------------------------------------------------
def test_settings_parse_wmla_and_native_names() -> None:
    s, problems, unused = parse_settings("hyperband", {"ResourceName": "epochs", "ResourceValue": "81"})
    assert problems == [] and unused == []
    assert s == HyperbandSettings(resource_name="epochs", resource_value=81, eta=3.0, seed=None)
    s, _, _ = parse_settings(
        "hyperband", {"resource_name": "steps", "resource_value": "27", "eta": "2", "seed": "4"}
    )
    assert s == HyperbandSettings(resource_name="steps", resource_value=27, eta=2.0, seed=4)
    s, _, unused = parse_settings(
        "hyperband", {"resourcename": "epochs", "ResourceValue": "9", "RandomSeed": "1", "WarmUp": "5"}
    )
    assert isinstance(s, HyperbandSettings) and s.resource_name == "epochs" and s.seed == 1
    assert unused == ["WarmUp"]


def eta_of(params: dict[str, str], eta: float | None = None) -> float:
    parsed, problems, _ = parse_settings("hyperband", params, eta=eta)
    assert isinstance(parsed, HyperbandSettings), problems
    return parsed.eta


def test_eta_precedence() -> None:
    params = {"ResourceName": "epochs", "ResourceValue": "81"}
    assert eta_of(params) == 3.0
    assert eta_of(params, eta=2.0) == 2.0  # hyperbandEta
    assert eta_of(params | {"eta": "4"}, eta=2.0) == 4.0  # algoParams win


@pytest.mark.parametrize(
    ("params", "eta", "expected"),
    [
        ({"ResourceValue": "81"}, None, [("ResourceName", "required for Hyperband")]),
        (
            {},
            None,
            [("ResourceName", "required for Hyperband"), ("ResourceValue", "required for Hyperband")],
        ),
        ({"ResourceName": "epochs"}, None, [("ResourceValue", "required for Hyperband")]),
        ({"ResourceName": "", "ResourceValue": "9"}, None, [("ResourceName", "must not be empty")]),
        (
            {"ResourceName": "epochs", "ResourceValue": "0"},
            None,
            [("ResourceValue", "must be an integer >= 1, got 0")],
        ),
        (
            {"ResourceName": "epochs", "ResourceValue": "2.5"},
            None,
            [("ResourceValue", "must be an integer, got '2.5'")],
        ),
        (
            {"ResourceName": "epochs", "ResourceValue": "2147483648"},
            None,
            [("ResourceValue", "must be at most 2147483647, got 2147483648")],
        ),
        (
            {"ResourceName": "epochs", "ResourceValue": "9", "eta": "1"},
            None,
            [("eta", "must be greater than 1")],
        ),
        (
            {"ResourceName": "epochs", "ResourceValue": "9", "eta": "x"},
            3.0,
            [("eta", "must be a number, got 'x'")],
        ),
        (
            {"ResourceName": "epochs", "ResourceValue": "9", "eta": "nan"},
            None,
            [("eta", "must be greater than 1")],
        ),
        ({"ResourceName": "epochs", "ResourceValue": "9"}, 1.0, [("hyperbandEta", "must be greater than 1")]),
    ],
)
def test_settings_problems(
    params: dict[str, str], eta: float | None, expected: list[tuple[str, str]]
) -> None:
    settings_, problems, _ = parse_settings("hyperband", params, 8, eta=eta)
    assert settings_ is None
    assert problems == expected


def test_settings_plain_key_and_bracket_count() -> None:
    _, problems, _ = parse_settings("hyperband", {"ResourceName": "my epochs", "ResourceValue": "9"})
    assert problems[0][0] == "ResourceName" and "plain key" in problems[0][1]
    _, problems, _ = parse_settings(
        "hyperband", {"ResourceName": "epochs", "ResourceValue": "1000", "eta": "1.01"}
    )
    assert problems[0][0] == "eta" and "brackets" in problems[0][1]
    _, problems, _ = parse_settings(
        "hyperband", {"ResourceName": "epochs", "ResourceValue": "1000"}, eta=1.01
    )
    assert problems[0][0] == "ResourceValue" and "brackets" in problems[0][1]


def test_other_algorithms_ignore_hyperband_params() -> None:
    settings_, problems, unused = parse_settings(
        "tpe", {"ResourceName": "epochs", "ResourceValue": "81", "eta": "3"}, eta=3.0
    )
    assert settings_ is not None and problems == []
    assert unused == ["ResourceName", "ResourceValue", "eta"]


# --- specs ------------------------------------------------------------------------------------
def ibm_payload() -> dict[str, Any]:
    return json.loads(FIXTURE.read_text())


def hyperband_payload(*params: tuple[str, str], **algo: Any) -> dict[str, Any]:
    data = ibm_payload()
    data["algoDef"]["algoParams"] = [{"name": n, "value": v} for n, v in params]
    data["algoDef"].update(algo)
    return data


def problems_of(data: Any) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    return [str(p) for p in info.value.problems]


def test_ibm_hyperband_payload_runs() -> None:
    spec = parse_spec(ibm_payload())
    assert spec.warnings == ()
    opt = create_optimizer(spec, seed=5)
    assert isinstance(opt, Hyperband)
    assert (opt.resource_name, opt.max_resource, opt.eta) == ("epochs", 81, 3.0)
    batch = opt.ask(8)
    assert [c["epochs"] for c in batch] == [1] * 8
    assert all(spec.space.problems(base(c)) == [] for c in batch)
    assert len({c["learning_rate"] for c in batch}) == 8


def test_wmla_eta_sources() -> None:
    def eta(data: dict[str, Any]) -> float:
        opt = create_optimizer(parse_spec(data), 1)
        assert isinstance(opt, Hyperband)
        return opt.eta

    resource = (("ResourceName", "epochs"), ("ResourceValue", "27"))
    assert eta(hyperband_payload(*resource, hyperbandEta=2)) == 2.0
    assert eta(hyperband_payload(*resource, ("eta", "4"), hyperbandEta=2)) == 4.0  # algoParams win
    data = hyperband_payload(*resource)
    del data["algoDef"]["hyperbandEta"]
    assert eta(data) == 3.0


def test_wmla_problems() -> None:
    assert problems_of(hyperband_payload(("ResourceValue", "81"))) == [
        "algoDef.algoParams: ResourceName is required for Hyperband"
    ]
    assert problems_of(hyperband_payload(("ResourceName", "epochs"), ("ResourceValue", "0"))) == [
        "algoDef.algoParams[1].value (ResourceValue): must be an integer >= 1, got 0"
    ]
    assert problems_of(
        hyperband_payload(("ResourceName", "epochs"), ("ResourceValue", "9"), ("eta", "1"))
    ) == ["algoDef.algoParams[2].value (eta): must be greater than 1"]
    assert problems_of(
        hyperband_payload(("ResourceName", "epochs"), ("ResourceValue", "9"), hyperbandEta=1)
    ) == ["algoDef.hyperbandEta: must be a number > 1, got 1"]
    clash = problems_of(hyperband_payload(("ResourceName", "learning_rate"), ("ResourceValue", "9")))
    assert len(clash) == 1
    assert clash[0].startswith(
        "algoDef.algoParams[0].value (ResourceName): 'learning_rate' is also a hyperParams"
    )


def test_hyperband_params_stay_warnings_elsewhere() -> None:
    data = hyperband_payload(("ResourceName", "epochs"), ("ResourceValue", "0"), algorithm="Random")
    spec = parse_spec(data)
    joined = "\n".join(spec.warnings)
    assert "hyperbandEta" in joined and "(ResourceName)" in joined and "(ResourceValue)" in joined


NATIVE = """
model: train.py
algorithm: {name: hyperband, resource_name: epochs, resource_value: 27, eta: 3, seed: 1}
objective: {metric: loss, direction: minimize}
max_trials: 30
space:
  lr: {type: float, low: 0.001, high: 0.1, log: true}
"""


def test_native_hyperband() -> None:
    spec = parse_spec(yaml.safe_load(NATIVE))
    assert spec.algorithm.params == {"ResourceName": "epochs", "ResourceValue": "27", "RandomSeed": "1"}
    assert spec.algorithm.eta == 3.0
    opt = create_optimizer(spec, seed=1)
    assert isinstance(opt, Hyperband)
    assert isinstance(opt.settings, HyperbandSettings) and opt.settings.seed == 1
    assert (opt.resource_name, opt.max_resource, opt.eta) == ("epochs", 27, 3.0)
    assert [c["epochs"] for c in opt.ask(3)] == [1, 1, 1]


def test_native_problems() -> None:
    data = yaml.safe_load(NATIVE)
    data["algorithm"] = {"name": "hyperband", "resource_value": 0}
    assert problems_of(data) == [
        "algorithm.resource_value: must be an integer >= 1, got 0",
        "algorithm.resource_name: required for Hyperband",
    ]
    data["algorithm"] = "hyperband"
    got = problems_of(data)
    assert len(got) == 2 and got[0].startswith("algorithm: resource_name is required for Hyperband")
    data["algorithm"] = {"name": "hyperband", "resource_name": "lr", "resource_value": 9}
    [clash] = problems_of(data)
    assert clash.startswith("algorithm.resource_name: 'lr' is also a space name")
