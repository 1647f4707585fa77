"""Sampler quality benchmark: Random, TPE and Bayesian on Branin (2-D) and Hartmann6 (6-D).

Each run is a sequential ask(1) / tell loop with the objective evaluated in-process, and reports
the simple regret f_best - f* after `--evals` evaluations over `--seeds` seeds, next to the numbers
measured for Optuna / scikit-optimize in reference/benchmarks.md §4.4. Exits 1 when TPE or
Bayesian does not beat Random's median regret on a function.

    .venv/bin/python scripts/bench/quality.py [--seeds 10] [--evals 50] [--jobs 2] [--write-docs]
    python -m scripts.bench.quality --functions branin --algorithms tpe --set tpe.good_ratio=0.1
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app.optimizers import optimizer_class  # noqa: E402
from app.optimizers.base import Observation  # noqa: E402
from app.optimizers.settings import SETTINGS_CLASSES  # noqa: E402
from app.space import Config, NumericParam, SearchSpace  # noqa: E402
from scripts.bench.docs import replace_section  # noqa: E402

DOCS = ROOT / "docs" / "benchmarks.md"

# --- test functions (reference/benchmarks.md §1) ---------------------------------------------


def branin(c: Config) -> float:
    x1, x2 = float(c["x1"]), float(c["x2"])
    a, b, cc, r, s, t = 1.0, 5.1 / (4 * np.pi**2), 5 / np.pi, 6.0, 10.0, 1 / (8 * np.pi)
    return float(a * (x2 - b * x1**2 + cc * x1 - r) ** 2 + s * (1 - t) * np.cos(x1) + s)


_H6_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_H6_A = np.array(
    [
        [10, 3, 17, 3.5, 1.7, 8],
        [0.05, 10, 17, 0.1, 8, 14],
        [3, 3.5, 1.7, 10, 17, 8],
        [17, 8, 0.05, 10, 0.1, 14],
    ]
)
_H6_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)


def hartmann6(c: Config) -> float:
    x = np.array([float(c[f"x{i}"]) for i in range(1, 7)])
    return float(-np.sum(_H6_ALPHA * np.exp(-np.sum(_H6_A * (x - _H6_P) ** 2, axis=1))))


@dataclass(frozen=True)
class Problem:
    fn: Callable[[Config], float]
    space: SearchSpace
    optimum: float


def _floats(bounds: Sequence[tuple[float, float]]) -> SearchSpace:
    return SearchSpace(
        params=tuple(
            NumericParam(type="float", name=f"x{i}", low=lo, high=hi) for i, (lo, hi) in enumerate(bounds, 1)
        )
    )


PROBLEMS: dict[str, Problem] = {
    "branin": Problem(branin, _floats([(-5.0, 10.0), (0.0, 15.0)]), 0.397887),
    "hartmann6": Problem(hartmann6, _floats([(0.0, 1.0)] * 6), -3.32237),
}
ALGORITHMS = ("random", "tpe", "bayesian")

# reference/benchmarks.md §4.4: median [min, max] regret at 50 evaluations, 10 seeds.
REFERENCE: dict[str, dict[str, str]] = {
    "branin": {
        "random": "0.884 [0.127, 2.84] (Optuna Random)",
        "tpe": "0.0667 [0.0081, 0.464] (Optuna TPE)",
        "bayesian": "0.000394 [4.6e-05, 0.0013] (skopt GP)",
    },
    "hartmann6": {
        "random": "1.742 [1.21, 2.44] (Optuna Random)",
        "tpe": "0.245 [0.186, 0.551] (Optuna TPE)",
        "bayesian": "0.122 [0.00087, 1.73] (skopt GP)",
    },
}

REFERENCE_NOTE = (
    "Reference column: reference/benchmarks.md §4.4 (library defaults, Optuna 5.0 / scikit-optimize "
    "0.10.2, seeds 0..9, same functions and budget), measured outside this repository."
)

# --- running ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunResult:
    function: str
    algorithm: str
    seed: int
    regret: float
    seconds_per_trial: float


def run_one(function: str, algorithm: str, seed: int, evals: int, overrides: dict[str, Any]) -> RunResult:
    """One seeded optimisation run; `overrides` are settings fields (e.g. {"good_ratio": 0.1})."""
    problem = PROBLEMS[function]
    settings = SETTINGS_CLASSES[algorithm](**overrides)
    opt = optimizer_class(algorithm)(problem.space, settings, seed=seed, max_trials=evals)
    best = float("inf")
    spent = 0.0
    for _ in range(evals):
        t0 = time.perf_counter()
        config = opt.ask(1)[0]
        opt.mark_proposed([config])
        spent += time.perf_counter() - t0
        loss = problem.fn(config)
        t0 = time.perf_counter()
        opt.tell([Observation(config, loss)])
        spent += time.perf_counter() - t0
        best = min(best, loss)
    return RunResult(function, algorithm, seed, best - problem.optimum, spent / evals)


def _run_task(task: tuple[str, str, int, int, dict[str, Any]]) -> RunResult:
    return run_one(*task)


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def summarise(results: Sequence[RunResult], functions: Sequence[str], algorithms: Sequence[str]) -> str:
    lines = [
        "| Function | Algorithm | Regret median [min, max] | ms per ask+tell | Reference (library) |",
        "|---|---|---|---|---|",
    ]
    for f in functions:
        for a in algorithms:
            rs = [r for r in results if r.function == f and r.algorithm == a]
            if not rs:
                continue
            reg = [r.regret for r in rs]
            ms = 1000 * statistics.fmean(r.seconds_per_trial for r in rs)
            cell = f"{_fmt(statistics.median(reg))} [{_fmt(min(reg))}, {_fmt(max(reg))}]"
            lines.append(f"| {f} | {a} | {cell} | {ms:.1f} | {REFERENCE[f].get(a, '')} |")
    return "\n".join(lines)


def verdicts(results: Sequence[RunResult], functions: Sequence[str], algorithms: Sequence[str]) -> list[str]:
    """'PASS ...' / 'FAIL ...' lines: does each model-based searcher beat Random's median regret?"""
    out: list[str] = []
    if "random" not in algorithms:
        return out
    for f in functions:
        med = {
            a: statistics.median(r.regret for r in results if r.function == f and r.algorithm == a)
            for a in algorithms
        }
        for a in algorithms:
            if a == "random":
                continue
            ok = med[a] < med["random"]
            verb = "beats" if ok else "does NOT beat"
            out.append(
                f"{'PASS' if ok else 'FAIL'} {f}: {a} median {_fmt(med[a])} {verb} "
                f"random median {_fmt(med['random'])}"
            )
    return out


def _parse_overrides(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, _, value = item.partition("=")
        algo, _, field = key.partition(".")
        if not field or not value:
            raise SystemExit(f"--set expects ALGORITHM.FIELD=VALUE, got {item!r}")
        if algo not in SETTINGS_CLASSES or field not in SETTINGS_CLASSES[algo].model_fields:
            raise SystemExit(f"--set: {algo!r} has no setting {field!r}")
        out.setdefault(algo, {})[field] = _coerce(value)
    return out


def _coerce(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    try:
        return int(text)
    except ValueError:
        return float(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeds per function and algorithm")
    parser.add_argument("--evals", type=int, default=50, help="evaluations per run")
    parser.add_argument("--functions", default=",".join(PROBLEMS), help="comma-separated")
    parser.add_argument("--algorithms", default=",".join(ALGORITHMS), help="comma-separated")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="ALGO.FIELD=VALUE",
        help="override a setting, e.g. tpe.good_ratio=0.1 (repeatable)",
    )
    parser.add_argument("--write-docs", action="store_true", help=f"update the section in {DOCS}")
    args = parser.parse_args(argv)
    functions = [f for f in args.functions.split(",") if f]
    algorithms = [a for a in args.algorithms.split(",") if a]
    for f in functions:
        if f not in PROBLEMS:
            parser.error(f"unknown function {f!r}; choose from {', '.join(PROBLEMS)}")
    for a in algorithms:
        if a not in ALGORITHMS:
            parser.error(f"unknown algorithm {a!r}; choose from {', '.join(ALGORITHMS)}")
    overrides = _parse_overrides(args.set)

    tasks = [
        (f, a, s, args.evals, overrides.get(a, {}))
        for f in functions
        for a in algorithms
        for s in range(args.seeds)
    ]
    # Slowest first so the pool finishes together.
    tasks.sort(key=lambda t: (t[1] != "bayesian", t[0] != "hartmann6"))
    t0 = time.perf_counter()
    if args.jobs > 1:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            results = list(pool.map(_run_task, tasks))
    else:
        results = [_run_task(t) for t in tasks]
    wall = time.perf_counter() - t0

    table = summarise(results, functions, algorithms)
    checks = verdicts(results, functions, algorithms)
    argv_text = " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    command = f".venv/bin/python scripts/bench/quality.py {argv_text}".rstrip()
    note = (
        f"Simple regret f_best - f* after {args.evals} evaluations, {args.seeds} seeds "
        f"(0..{args.seeds - 1}), sequential ask(1)/tell, objective in-process; time is the "
        "searcher's own (ask + tell)."
    )
    if overrides:
        note += f" Settings overrides: {overrides}."
    print(table)
    print()
    print("\n".join(checks))
    print(f"\nwall time {wall:.0f} s")

    if args.write_docs:
        machine = (
            f"{os.cpu_count()} cores, {platform.machine()}, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, --jobs {args.jobs}; machine shared with other work"
        )
        body = "\n".join(
            [
                note,
                REFERENCE_NOTE,
                "",
                table,
                "",
                *[f"- {c}" for c in checks],
                "",
                f"Command: `{command}`  ",
                f"Date: {dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}  ",
                f"Machine: {machine}; wall time {wall:.0f} s.",
            ]
        )
        replace_section(DOCS, "quality", "## Sampler quality (Branin, Hartmann6)", body)
        print(f"wrote {DOCS}")
    return 0 if all(c.startswith("PASS") for c in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
