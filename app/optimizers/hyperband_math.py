"""Hyperband bracket arithmetic (Li et al., "Hyperband: a novel bandit-based approach to
hyperparameter optimization", JMLR 18, 2018). Pure: no numpy, no I/O.

With R the largest resource one configuration may get (WMLA `ResourceValue`) and eta the
reduction factor:

    s_max = floor(log_eta(R))                 the most exploratory bracket
    B     = (s_max + 1) * R                   the budget of each bracket
    for s = s_max, s_max - 1, ..., 0:         one bracket per s, most exploratory first
        n = ceil(B / R * eta**s / (s + 1))    configurations in its first rung
        r = R * eta**(-s)                     their resource
        rung i = 0..s (successive halving):
            n_i = floor(n * eta**(-i))        configurations kept in rung i
            r_i = r * eta**i                  the resource each of them gets (r_s = R)

Example, R = 81, eta = 3 (s_max = 4), as (n_i, r_i) per rung:

    s=4: (81,1) (27,3) (9,9) (3,27) (1,81)
    s=3: (34,3) (11,9) (3,27) (1,81)
    s=2: (15,9) (5,27) (1,81)
    s=1: (8,27) (2,81)
    s=0: (5,81)

The arithmetic is exact: eta is read as the decimal it was written as (3.0 -> 3, 1.1 -> 11/10)
and powers, floors and ceilings are taken on fractions, so R = eta**k gives s_max = k and never
k - 1 through a float logarithm. Integer resources (epochs, steps) come from `budget(r, R)`: r
rounded to the nearest integer (halves up), at least 1 and at most R.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

MAX_BRACKETS = 64  # s_max + 1 above this means eta is too close to 1 for R: refuse


@dataclass(frozen=True)
class Rung:
    n: int  # configurations in this rung
    r: float  # resource each one gets (exact value; `budget` makes it an integer)


@dataclass(frozen=True)
class Bracket:
    s: int  # bracket index: s + 1 rungs, s = s_max is the most exploratory
    n: int  # configurations in rung 0
    r: float  # resource of rung 0
    rungs: list[Rung]

    @property
    def trials(self) -> int:
        """Trials the bracket runs when every rung is a new trial (WMLA): sum of n_i."""
        return sum(rung.n for rung in self.rungs)

    @property
    def total_budget(self) -> float:
        """Resource the bracket spends when every rung trains from scratch: sum of n_i * r_i."""
        return sum(rung.n * rung.r for rung in self.rungs)

    def budgets(self, max_resource: int) -> list[int]:
        """The integer resource of each rung (see `budget`)."""
        return [budget(rung.r, max_resource) for rung in self.rungs]


def _exact(eta: float | int | Fraction) -> Fraction:
    """eta as the decimal it was written as: Fraction(repr(1.1)) == 11/10, not the binary float."""
    if isinstance(eta, Fraction):
        return eta
    if isinstance(eta, int):
        return Fraction(eta)
    if not math.isfinite(eta):
        raise ValueError(f"eta must be a finite number, got {eta!r}")
    return Fraction(repr(float(eta)))


def _check(max_resource: int, eta: Fraction) -> None:
    if int(max_resource) != max_resource or max_resource < 1:
        raise ValueError(f"the maximum resource R must be an integer >= 1, got {max_resource!r}")
    if eta <= 1:
        raise ValueError(f"eta must be greater than 1, got {float(eta)!r}")


def max_bracket(max_resource: int, eta: float | int | Fraction) -> int:
    """s_max = floor(log_eta(R)), by an exact integer loop: the largest s with eta**s <= R."""
    q = _exact(eta)
    _check(max_resource, q)
    s, power = 0, q
    while power <= max_resource:
        s += 1
        if s >= MAX_BRACKETS:
            raise ValueError(
                f"eta {float(q):g} with R = {max_resource} gives more than {MAX_BRACKETS} brackets"
            )
        power *= q
    return s


def budget(r: float, max_resource: int) -> int:
    """The integer resource for an exact resource r: nearest integer (halves round up), at least 1
    (a trial always trains) and at most R (rounding never exceeds the maximum)."""
    return max(1, min(int(max_resource), math.floor(r + 0.5)))


def _floor(x: Fraction) -> int:
    return x.numerator // x.denominator


def _ceil(x: Fraction) -> int:
    return -((-x.numerator) // x.denominator)


def brackets(max_resource: int, eta: float | int | Fraction = 3) -> list[Bracket]:
    """Every bracket for R = `max_resource`, in the order Hyperband runs them: s_max down to 0."""
    q = _exact(eta)
    s_max = max_bracket(max_resource, q)
    R = Fraction(int(max_resource))
    out: list[Bracket] = []
    for s in range(s_max, -1, -1):
        n = _ceil(Fraction(s_max + 1) * q**s / (s + 1))  # ceil(B/R * eta**s / (s+1)), B = (s_max+1)*R
        r = R / q**s
        rungs = [Rung(n=_floor(n / q**i), r=float(r * q**i)) for i in range(s + 1)]
        out.append(Bracket(s=s, n=n, r=float(r), rungs=rungs))
    return out


def rung_sizes(bracket: Bracket, n0: int, eta: float | int | Fraction) -> list[int]:
    """Rung sizes when rung 0 holds only `n0` configurations (a finite space ran out): floor(n0 *
    eta**-i), at least 1 so the bracket still reaches R, never more than the bracket's own n_i.
    With n0 = bracket.n this is exactly [rung.n for rung in bracket.rungs]."""
    if n0 <= 0:
        return [0 for _ in bracket.rungs]
    q = _exact(eta)
    return [min(rung.n, max(1, _floor(Fraction(n0) / q**i))) for i, rung in enumerate(bracket.rungs)]


def cycle_trials(all_brackets: list[Bracket]) -> int:
    """Trials in one full Hyperband loop (every bracket once), each rung being a new trial."""
    return sum(b.trials for b in all_brackets)


def cycle_budget(all_brackets: list[Bracket]) -> float:
    """Resource spent by one full Hyperband loop when every trial trains from scratch."""
    return sum(b.total_budget for b in all_brackets)
