"""Parameter importance from finished trials: how much of the objective's variance each parameter explains.

For each parameter, trials are grouped (numeric values into up to `bins` quantile bins, categories by
value) and the correlation ratio eta^2 = between-group variance / total variance is computed, less
what as many random groups would explain by chance (epsilon^2); the scores are then normalized to
sum to 1. It is a marginal measure (like optuna's fANOVA importances
without the interactions): cheap enough to run on every dashboard refresh of a 10,000-trial
experiment, and honest about what it is. Fewer than `min_trials` results give no importances.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def _groups(values: Sequence[Any], bins: int) -> np.ndarray:
    """A group number per value: its quantile bin for numbers, its category otherwise."""
    kinds = {type(v) for v in values}
    if kinds <= {int, float}:
        arr = np.asarray(values, dtype=float)
        if len(np.unique(arr)) > bins:
            ranks = np.empty(len(arr), dtype=np.int64)
            ranks[np.argsort(arr, kind="stable")] = np.arange(len(arr))
            return ranks * bins // len(arr)
        return np.unique(arr, return_inverse=True)[1].reshape(-1)
    if kinds == {str}:
        return np.unique(np.asarray(values), return_inverse=True)[1].reshape(-1)
    codes: dict[str, int] = {}
    return np.fromiter((codes.setdefault(repr(v), len(codes)) for v in values), np.int64, len(values))


def eta_squared(values: Sequence[Any], objective: Sequence[float], bins: int = 10) -> float:
    y = np.asarray(objective, dtype=float)
    n = len(y)
    total = float(((y - y.mean()) ** 2).sum())
    if total <= 0:
        return 0.0
    groups = _groups(values, bins)
    counts = np.bincount(groups)
    sums = np.bincount(groups, weights=y)
    present = counts > 0
    between = float((counts[present] * (sums[present] / counts[present] - y.mean()) ** 2).sum())
    k = int(present.sum())
    if k < 2 or n <= k:
        return max(0.0, min(1.0, between / total))
    # epsilon^2: eta^2 less what `k` random groups explain by chance, so noise scores ~0
    within_mean_square = (total - between) / (n - k)
    return max(0.0, min(1.0, (between - (k - 1) * within_mean_square) / total))


def importances(
    params: Sequence[dict[str, Any]],
    objective: Sequence[float],
    names: Sequence[str],
    *,
    bins: int = 10,
    min_trials: int = 4,
) -> list[dict[str, Any]]:
    """[{name, importance}] sorted high to low; [] with fewer than `min_trials` finite results."""
    keep = [i for i, y in enumerate(objective) if y is not None and math.isfinite(y)]
    if len(keep) < min_trials:
        return []
    raw = {}
    for name in names:
        present = [i for i in keep if params[i].get(name) is not None]
        if len(present) < min_trials:
            continue
        raw[name] = eta_squared([params[i][name] for i in present], [objective[i] for i in present], bins)
    total = sum(raw.values())
    out = [{"name": n, "importance": (v / total if total > 0 else 0.0)} for n, v in raw.items()]
    return sorted(out, key=lambda d: -d["importance"])
