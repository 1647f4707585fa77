"""Hyperband (Li et al., JMLR 2018) with WMLA semantics: every rung is a new trial.

A trial's configuration is a *base* configuration drawn from the search space plus
`{resource_name: budget}` (WMLA `ResourceName`), the integer budget of its rung (1..R, see
`hyperband_math.budget`). Trials of one base at growing budgets share a checkpoint directory
(the coordinator keys it on the configuration without the budget), so a training script may
continue from the previous rung, but it does not have to. One base never has two trials at once,
and its budgets only grow from one trial to the next, so that checkpoint is always a valid start.

Schedule. Brackets run in the standard order s = s_max..0 and then repeat: the j-th *bracket
instance* runs bracket s_max - (j mod (s_max + 1)). Inside an instance successive halving is
synchronous: once every trial of rung i has a result, the best n_{i+1} bases of rung i (lowest
loss; ties by the order they joined the instance) are promoted to rung i + 1. Failed trials (and
NaN losses) rank last and are never promoted: a rung keeps only finished trials, so a rung where
everything failed ends its instance early. To keep every slot busy, `ask(n)` returns, in this
order and never more than n:

1. promotions that are ready, oldest instance first, best first;
2. new bases for the current instance's rung 0;
3. new bases for the next instances' rung 0 (they open early while older ones wait).

It never proposes a (base, budget) that is already proposed or running. In an infinite space it
therefore returns [] only when asked for nothing; in a finite space it also returns [] while the
only bases left are busy in older instances (the coordinator asks again after the next result),
and for good (the experiment ends "exhausted") once every base has run with budget R.

State. Nothing is kept between calls but `proposed` and `history`: each call replays `proposed`
in order against the results in `history`, so an optimizer rebuilt after a restart
(`mark_proposed(all trials in number order)`, then `tell(all finished)`) continues exactly, and
the interleaving of those calls does not matter.

- Results are matched to rungs by (base, budget): the last observation of that configuration
  wins, `loss = None` is a failure. Rung i + 1 of an instance is a pure function of its rung 0
  and rung i's results, and results never change once known, so promotions are the same
  whenever they are computed.
- A proposal whose base is *active* in an instance (in its newest rung, which still waits for
  results) is that instance's promotion. Any other proposal *joins* the instance being filled:
  the k-th join goes to the instance whose slice of the cumulative rung-0 sizes (81, 34, 15, 8,
  5, 81, 34, ... for R = 81, eta = 3) holds k. In an infinite space every join is a new base, so
  "a base seen before is a promotion".
- The k-th join's base is drawn with `rng_for(k)` (k counts joins, not proposals, so streams do
  not depend on how promotions interleave), preferring bases never used before. A finite space
  that has used all its bases reuses inactive ones whose earlier trials all had smaller budgets
  than the instance's rung 0; when no base can ever join the instance any more, its rung 0 closes
  short (`hyperband_math.rung_sizes` shrinks its later rungs) and the next instance starts.
- Rounding can give two rungs of a bracket the same integer budget (eta close to 1): the
  promotion then reuses the result it already has instead of running the same trial again.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel

from app.optimizers.base import Optimizer
from app.optimizers.hyperband_math import Bracket, brackets, rung_sizes
from app.optimizers.settings import HyperbandSettings
from app.space import Config, SearchSpace, Value, config_key

BaseKey = tuple  # config_key of a base configuration
TrialKey = tuple[BaseKey, Value | None]  # (base, budget)
Chain = tuple[list[list[BaseKey]], bool]  # rungs computed so far, and whether the last is complete

_TRIES = 64  # random draws before a small finite space is listed
_LIST_LIMIT = 100_000  # larger finite spaces are never listed: more random draws instead
_MANY_TRIES = 10_000


def _finished(loss: float | None) -> bool:
    """A result that can be ranked: failed trials (None) and NaN losses never are."""
    return loss is not None and not math.isnan(loss)


@dataclass
class _Instance:
    """One run of a bracket."""

    index: int
    bracket: Bracket
    budgets: list[int]  # integer budget of each rung
    members: list[BaseKey] = field(default_factory=list)  # rung 0, in join order
    closed: bool = False  # rung 0 takes no more bases (full, or no base can ever join it)
    chain: Chain | None = None  # cached once closed (results do not change within one call)


class _State:
    """What `ask` needs, replayed from (proposed, history, running); private to one call."""

    def __init__(self, opt: Hyperband, running: Sequence[Config]) -> None:
        self.opt = opt
        self.size = opt.space.size
        self.results: dict[TrialKey, float | None] = {}
        for obs in opt.history:
            bkey, _, budget = opt.split(obs.config)
            self.results[(bkey, budget)] = obs.loss
        self.bases: dict[BaseKey, Config] = {}  # every base seen, first appearance first
        self.used: set[BaseKey] = set()
        self.taken: set[TrialKey] = set()
        self.top: dict[BaseKey, int] = {}  # the largest budget each base was proposed with
        # rung-0 budget r -> how many bases already ran at r or more (they can no longer join at r)
        self.spent: dict[int, int] = {budgets[0]: 0 for budgets in opt.budgets}
        self.latest: dict[BaseKey, _Instance] = {}  # the newest instance each base joined
        self.instances: list[_Instance] = []
        self.joins = 0
        self.exhausted = False
        for config in opt.proposed:
            bkey, base, budget = opt.split(config)
            self.bases.setdefault(bkey, base)
            inst = self.filling()  # first close an instance no base can fill any more: it may promote
            joins = (
                inst is not None
                and budget == inst.budgets[0]
                and not self.is_promotion(bkey, budget)
                and self.eligible(bkey, inst)
            )
            if joins:
                assert inst is not None
                self.join(inst, bkey)
            self.take(bkey, budget)  # a promotion, or foreign to this schedule: it only blocks its key
        for config in running:
            bkey, base, budget = opt.split(config)
            self.bases.setdefault(bkey, base)
            self.take(bkey, budget)
        self.filling()  # close an instance that no base can fill any more, so it can promote

    # --- bookkeeping -------------------------------------------------------------------
    def take(self, bkey: BaseKey, budget: Value | None) -> None:
        self.taken.add((bkey, budget))
        if isinstance(budget, int) and budget > self.top.get(bkey, 0):
            old = self.top.get(bkey, 0)
            self.top[bkey] = budget
            for r0 in self.spent:
                if old < r0 <= budget:
                    self.spent[r0] += 1
        self.used.add(bkey)

    def join(self, inst: _Instance, bkey: BaseKey) -> None:
        inst.members.append(bkey)
        self.latest[bkey] = inst
        self.joins += 1
        if len(inst.members) >= inst.bracket.n:
            inst.closed = True

    def filling(self) -> _Instance | None:
        """The instance new bases join, opening the next one when needed; None when no instance
        of a whole Hyperband loop can get a base any more (finite space, every base ran with R)."""
        if self.exhausted:
            return None
        empty = 0
        while True:
            if not self.instances or self.instances[-1].closed:
                self.instances.append(self.opt.instance(len(self.instances)))
            inst = self.instances[-1]
            if self.can_fill(inst):
                return inst
            inst.closed = True  # no base can ever join it: rung 0 closes short
            empty = empty + 1 if not inst.members else 0
            if empty >= len(self.opt.brackets):
                self.exhausted = True  # for good: bases only ever get larger budgets
                return None

    def can_fill(self, inst: _Instance) -> bool:
        """Some base never ran at this instance's rung-0 budget or above (it may be busy now)."""
        return self.size is None or self.spent[inst.budgets[0]] < self.size

    # --- rungs ---------------------------------------------------------------------------
    def chain(self, inst: _Instance) -> Chain:
        """The rungs of a closed instance as far as results allow."""
        if inst.chain is not None:
            return inst.chain
        sizes = rung_sizes(inst.bracket, len(inst.members), self.opt.eta)
        joined = {b: i for i, b in enumerate(inst.members)}
        rungs = [list(inst.members)]
        complete = False
        for i, budget in enumerate(inst.budgets):
            rung = rungs[i]
            complete = all((b, budget) in self.results for b in rung)
            if not complete or i == len(inst.budgets) - 1:
                break
            finished = [b for b in rung if _finished(self.results[(b, budget)])]
            finished.sort(key=lambda b: (self.results[(b, budget)], joined[b]))
            promoted = finished[: sizes[i + 1]]
            if not promoted:
                break  # everything failed: the instance ends here
            rungs.append(promoted)
        inst.chain = (rungs, complete)
        return inst.chain

    def is_active(self, bkey: BaseKey) -> bool:
        """The base is in the newest rung of its instance, which still waits for results."""
        inst = self.latest.get(bkey)
        if inst is None:
            return False
        if not inst.closed:
            return True
        rungs, complete = self.chain(inst)
        return not complete and bkey in rungs[-1]

    def is_promotion(self, bkey: BaseKey, budget: Value | None) -> bool:
        inst = self.latest.get(bkey)
        if inst is None or not inst.closed or (bkey, budget) in self.taken:
            return False
        rungs, _ = self.chain(inst)
        return any(bkey in rungs[i] and inst.budgets[i] == budget for i in range(1, len(rungs)))

    def promotions(self) -> Iterator[tuple[BaseKey, int]]:
        """Ready promotions not yet proposed: oldest instance first, then rung, then rank."""
        for inst in self.instances:
            if not inst.closed:
                continue
            rungs, _ = self.chain(inst)
            for i in range(1, len(rungs)):
                for bkey in rungs[i]:
                    if (bkey, inst.budgets[i]) not in self.taken:  # equal rounded budgets: ran already
                        yield bkey, inst.budgets[i]

    def eligible(self, bkey: BaseKey, inst: _Instance) -> bool:
        """May join `inst` now: every earlier trial of the base had a smaller budget than its rung 0
        (so the shared checkpoint is a valid start) and the base is not busy in another instance."""
        return self.top.get(bkey, 0) < inst.budgets[0] and not self.is_active(bkey)


class Hyperband(Optimizer):
    name = "hyperband"

    def __init__(
        self,
        space: SearchSpace,
        settings: BaseModel,
        *,
        seed: int,
        max_trials: int | None = None,
        experiments: Sequence[Config] = (),
    ) -> None:
        super().__init__(space, settings, seed=seed, max_trials=max_trials, experiments=experiments)
        if not isinstance(settings, HyperbandSettings):
            raise TypeError(f"Hyperband needs HyperbandSettings, got {type(settings).__name__}")
        if settings.resource_name in space.names:
            raise ValueError(f"ResourceName {settings.resource_name!r} is also a search-space parameter")
        self.resource_name: str = settings.resource_name
        self.max_resource = int(settings.resource_value)
        self.eta = float(settings.eta)
        self.brackets: list[Bracket] = brackets(self.max_resource, self.eta)
        self.budgets = [b.budgets(self.max_resource) for b in self.brackets]

    # --- the interface ---------------------------------------------------------------
    def ask(self, n: int, running: Sequence[Config] = ()) -> list[Config]:
        state = _State(self, running)
        out: list[Config] = []
        for bkey, budget in list(state.promotions()):
            if len(out) >= n:
                return out
            out.append({**state.bases[bkey], self.resource_name: budget})
            state.take(bkey, budget)
        while len(out) < n:
            inst = state.filling()
            if inst is None:
                break  # a finite space where every base ran with budget R
            base = self._draw(state, inst)
            if base is None:
                break  # the bases left are busy in older instances: wait for their results
            bkey, budget = config_key(base), inst.budgets[0]
            out.append({**base, self.resource_name: budget})
            state.bases.setdefault(bkey, base)
            state.take(bkey, budget)
            state.join(inst, bkey)
        return out

    # --- helpers -----------------------------------------------------------------------
    def split(self, config: Config) -> tuple[BaseKey, Config, Value | None]:
        """(base key, base configuration, budget) of a proposal."""
        base = {k: v for k, v in config.items() if k != self.resource_name}
        budget = config.get(self.resource_name)
        if isinstance(budget, float) and budget.is_integer():
            budget = int(budget)  # 3.0 after a round trip through a float-only store
        return config_key(base), base, budget

    def instance(self, j: int) -> _Instance:
        """The j-th bracket instance, empty."""
        k = j % len(self.brackets)
        return _Instance(index=j, bracket=self.brackets[k], budgets=self.budgets[k])

    def _draw(self, state: _State, inst: _Instance) -> Config | None:
        """The base of the next join, from rng_for(number of joins so far): a never-used base
        when there is one, else (finite spaces) an eligible used one, else None."""
        rng: np.random.Generator = self.rng_for(state.joins)
        size = self.space.size
        listable = size is not None and size <= _LIST_LIMIT
        tries = _TRIES if listable else _MANY_TRIES
        for _ in range(tries):
            config = self.space.sample(rng)
            if config_key(config) not in state.used:
                return config
        if size is None:
            return None  # practically unreachable: a continuous space repeating a draw 10,000 times
        if listable and len(state.used) < size:
            fresh = [c for c in self.space.grid() if config_key(c) not in state.used]
            if fresh:
                return fresh[int(rng.integers(len(fresh)))]
        for _ in range(tries):
            config = self.space.sample(rng)
            if state.eligible(config_key(config), inst):
                return config
        if not listable:
            return None
        left = [c for c in self.space.grid() if state.eligible(config_key(c), inst)]
        return left[int(rng.integers(len(left)))] if left else None
