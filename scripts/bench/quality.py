"""Searcher quality: our Random, TPE and Bayesian against Optuna's Random, TPE and GP samplers.

Problems (scripts/bench/problems.py): Branin, Hartmann6, a mixed integer/categorical problem and a
real training task (the digits MLP's final validation error, a precomputed table). Every run is a
sequential ask(1) / tell loop in one process, each searcher driven through our optimizer interface
(Optuna through `optuna_peer.OptunaPeer`, one live study, library defaults, seeded). Reports the
median and quartiles of the simple regret f_best - f* after each budget in `--evals` over `--seeds`
seeds, and PASS/FAIL for issue 9's bars at the largest budget:

- our TPE's median regret <= Optuna TPE's on at least 3 of the 4 problems;
- our Bayesian's median regret <= Optuna GP's on at least 3 of the 4 problems;
- Random matches its expected value: on every problem our Random's median lies inside the 95 %
  band of the median of `--seeds` random-search runs, simulated by Monte Carlo from 20,000
  uniform draws of the same space.

    .venv/bin/python scripts/bench/quality.py [--seeds 10] [--evals 50,100] [--jobs 2] [--write-docs]
    .venv/bin/python scripts/bench/quality.py --quick            # 3 seeds, 25/50 evaluations
    .venv/bin/python scripts/bench/quality.py --algorithms bayesian,optuna-gp --seeds 4 \\
        --section quality_gp --write-docs                      # the slow GP pair on its own
    .venv/bin/python scripts/bench/quality.py --problems branin --algorithms tpe,optuna-tpe \\
        --first-seed 100 --set tpe.good_ratio=0.1
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app.optimizers import optimizer_class  # noqa: E402
from app.optimizers.base import Observation, Optimizer  # noqa: E402
from app.optimizers.settings import SETTINGS_CLASSES, RandomSettings  # noqa: E402
from scripts.bench.docs import replace_section  # noqa: E402
from scripts.bench.optuna_peer import SAMPLERS, OptunaPeer  # noqa: E402
from scripts.bench.problems import PROBLEMS, Config, problem  # noqa: E402

DOCS = ROOT / "docs" / "benchmarks.md"
OURS = ("random", "tpe", "bayesian")
ALGORITHMS = (*OURS, *SAMPLERS)
PEER = {"tpe": "optuna-tpe", "bayesian": "optuna-gp", "random": "optuna-random"}
MC_DRAWS = 20_000
MC_REPLICATES = 4_000
MC_SEED = 20_261_128


@dataclass(frozen=True)
class RunResult:
    problem: str
    algorithm: str
    seed: int
    regrets: tuple[float, ...]  # simple regret after each budget of `evals`
    seconds_per_trial: float


def make_optimizer(
    name: str, problem_name: str, seed: int, evals: int, overrides: dict[str, Any]
) -> Optimizer:
    space = problem(problem_name).space
    if name in SAMPLERS:
        return OptunaPeer(space, RandomSettings(), seed=seed, sampler=name, max_trials=evals)
    settings = SETTINGS_CLASSES[name](**overrides)
    return optimizer_class(name)(space, settings, seed=seed, max_trials=evals)


def run_one(
    problem_name: str,
    algorithm: str,
    seed: int,
    evals: Sequence[int],
    overrides: dict[str, Any],
    history: list[tuple[Config, float]] | None = None,
) -> RunResult:
    """One seeded run of max(evals) evaluations; `overrides` are settings fields of our searchers;
    each (config, loss) is appended to `history` when given."""
    prob = problem(problem_name)
    opt = make_optimizer(algorithm, problem_name, seed, max(evals), overrides)
    best = float("inf")
    spent = 0.0
    regrets: list[float] = []
    for i in range(1, max(evals) + 1):
        t0 = time.perf_counter()
        config = opt.ask(1)[0]
        opt.mark_proposed([config])
        spent += time.perf_counter() - t0
        loss = prob.fn(config)
        t0 = time.perf_counter()
        opt.tell([Observation(config, loss)])
        spent += time.perf_counter() - t0
        best = min(best, loss)
        if history is not None:
            history.append((config, loss))
        if i in evals:
            regrets.append(max(best - prob.optimum, 0.0))
    opt.close()
    return RunResult(problem_name, algorithm, seed, tuple(regrets), spent / max(evals))


def single_threaded() -> None:
    """One BLAS / torch thread per process for every searcher: on a shared 2-core machine more
    threads only contend (Optuna's GP uses torch, ours numpy/scipy)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def _run_task(task: tuple[str, str, int, tuple[int, ...], dict[str, Any]]) -> RunResult:
    return run_one(*task)


# --- statistics (pure) ---------------------------------------------------------------------------


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    q1, med, q3 = np.quantile(np.asarray(values, dtype=float), [0.25, 0.5, 0.75])
    return float(q1), float(med), float(q3)


def random_median_band(
    values: np.ndarray, evals: int, seeds: int, rng: np.random.Generator, replicates: int = MC_REPLICATES
) -> tuple[float, float, float]:
    """(2.5 %, 50 %, 97.5 %) quantiles of the median over `seeds` runs of min-of-`evals` uniform
    draws, `values` being regrets of uniform random configurations (Monte Carlo)."""
    picks = rng.integers(len(values), size=(replicates, seeds, evals))
    medians = np.median(values[picks].min(axis=2), axis=1)
    lo, mid, hi = np.quantile(medians, [0.025, 0.5, 0.975])
    return float(lo), float(mid), float(hi)


def uniform_regrets(problem_name: str, draws: int = MC_DRAWS) -> np.ndarray:
    prob = problem(problem_name)
    rng = np.random.default_rng(MC_SEED)
    return np.array([prob.fn(prob.space.sample(rng)) - prob.optimum for _ in range(draws)])


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def medians(results: Sequence[RunResult], problem_name: str, algorithm: str, at: int) -> float | None:
    rs = [r.regrets[at] for r in results if r.problem == problem_name and r.algorithm == algorithm]
    return quartiles(rs)[1] if rs else None


def summarise(
    results: Sequence[RunResult], problems: Sequence[str], algorithms: Sequence[str], evals: Sequence[int]
) -> str:
    head = " | ".join(f"regret @ {e}: median [q1, q3]" for e in evals)
    lines = [
        f"| Problem | Algorithm | {head} | ms per ask+tell |",
        "|---|---|" + "---|" * len(evals) + "---|",
    ]
    for p in problems:
        for a in algorithms:
            rs = [r for r in results if r.problem == p and r.algorithm == a]
            if not rs:
                continue
            cells = []
            for j in range(len(evals)):
                q1, med, q3 = quartiles([r.regrets[j] for r in rs])
                cells.append(f"{_fmt(med)} [{_fmt(q1)}, {_fmt(q3)}]")
            ms = 1000 * float(np.mean([r.seconds_per_trial for r in rs]))
            lines.append(f"| {p} | {a} | {' | '.join(cells)} | {ms:.1f} |")
    return "\n".join(lines)


def verdicts(
    results: Sequence[RunResult],
    problems: Sequence[str],
    algorithms: Sequence[str],
    evals: int,
    bands: dict[str, tuple[float, float, float]],
) -> list[str]:
    """PASS/FAIL lines for the bars at the last budget (`evals`)."""
    out: list[str] = []
    last = -1
    for ours in ("tpe", "bayesian"):
        peer = PEER[ours]
        if ours not in algorithms or peer not in algorithms:
            continue
        wins: list[str] = []
        losses: list[str] = []
        for p in problems:
            a, b = medians(results, p, ours, last), medians(results, p, peer, last)
            assert a is not None and b is not None
            (wins if a <= b else losses).append(f"{p} {_fmt(a)} vs {_fmt(b)}")
        need = min(3, len(problems))
        ok = len(wins) >= need
        out.append(
            f"{'PASS' if ok else 'FAIL'} {ours} median regret @ {evals} <= {peer}'s on {len(wins)} of "
            f"{len(problems)} problems (bar: {need}); <= on: {'; '.join(wins) or 'none'}; "
            f"> on: {'; '.join(losses) or 'none'}"
        )
    for name in ("random", "optuna-random"):
        if name not in algorithms:
            continue
        for p in problems:
            lo, mid, hi = bands[p]
            med = medians(results, p, name, last)
            assert med is not None
            ok = lo <= med <= hi
            verdict = "PASS" if ok else ("FAIL" if name == "random" else "NOTE")
            out.append(
                f"{verdict} {p}: {name} median regret @ {evals} {_fmt(med)} "
                f"{'inside' if ok else 'OUTSIDE'} the Monte-Carlo 95 % band [{_fmt(lo)}, {_fmt(hi)}] "
                f"(expected median {_fmt(mid)})"
            )
    return out


# --- command line --------------------------------------------------------------------------------


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


def _cost(task: tuple[str, str, int, tuple[int, ...], dict[str, Any]]) -> int:
    return {"bayesian": 0, "optuna-gp": 1}.get(task[1], 2)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeds per problem and algorithm")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds are first-seed.. (check on others)")
    parser.add_argument("--evals", default="50,100", help="comma-separated budgets; bars use the last")
    parser.add_argument("--problems", default=",".join(PROBLEMS), help="comma-separated")
    parser.add_argument("--algorithms", default=",".join(ALGORITHMS), help="comma-separated")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--quick", action="store_true", help="3 seeds, 25/50 evaluations (a fast check)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="ALGO.FIELD=VALUE",
        help="override a setting of our searchers, e.g. tpe.good_ratio=0.1 (repeatable)",
    )
    parser.add_argument("--write-docs", action="store_true", help=f"update the section in {DOCS}")
    parser.add_argument(
        "--section",
        default="quality",
        help="docs section to write (e.g. quality_gp for a GP-only run with fewer seeds)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.evals = 3, "25,50"
    evals = tuple(sorted({int(e) for e in args.evals.split(",") if e}))
    problems = [p for p in args.problems.split(",") if p]
    algorithms = [a for a in args.algorithms.split(",") if a]
    for p in problems:
        if p not in PROBLEMS:
            parser.error(f"unknown problem {p!r}; choose from {', '.join(PROBLEMS)}")
    for a in algorithms:
        if a not in ALGORITHMS:
            parser.error(f"unknown algorithm {a!r}; choose from {', '.join(ALGORITHMS)}")
    overrides = _parse_overrides(args.set)
    seeds = range(args.first_seed, args.first_seed + args.seeds)

    tasks = [(p, a, s, evals, overrides.get(a, {})) for p in problems for a in algorithms for s in seeds]
    tasks.sort(key=_cost)  # slowest first so the pool finishes together
    for a in algorithms:  # import before the pool forks: workers share the modules
        if a in OURS:
            optimizer_class(a)
    t0 = time.perf_counter()
    bands: dict[str, tuple[float, float, float]] = {}
    if args.jobs > 1:
        with ProcessPoolExecutor(max_workers=args.jobs, initializer=single_threaded) as pool:
            futures = [pool.submit(_run_task, t) for t in tasks]
            if any(a in algorithms for a in ("random", "optuna-random")):
                for p in problems:
                    bands[p] = random_median_band(
                        uniform_regrets(p), evals[-1], args.seeds, np.random.default_rng(MC_SEED)
                    )
            results = [f.result() for f in futures]
    else:
        single_threaded()
        results = [_run_task(t) for t in tasks]
        for p in problems:
            bands[p] = random_median_band(
                uniform_regrets(p), evals[-1], args.seeds, np.random.default_rng(MC_SEED)
            )
    wall = time.perf_counter() - t0

    table = summarise(results, problems, [a for a in ALGORITHMS if a in algorithms], evals)
    checks = verdicts(results, problems, algorithms, evals[-1], bands)
    argv_text = " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    command = f".venv/bin/python scripts/bench/quality.py {argv_text}".rstrip()
    print(table)
    print()
    print("\n".join(checks))
    print(f"\nwall time {wall:.0f} s")

    if args.write_docs:
        load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
        machine = (
            f"{os.cpu_count()} cores, {platform.machine()}, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, --jobs {args.jobs}; machine shared with other work, "
            f"load average at the end {' '.join(load)}"
        )
        note = (
            f"Simple regret f_best - f* after {' and '.join(map(str, evals))} evaluations, "
            f"{args.seeds} seeds ({seeds.start}..{seeds.stop - 1}); median [first quartile, third "
            "quartile]. Sequential ask(1)/tell, objective in-process, every searcher through our "
            "optimizer interface (Optuna: one live in-memory study, native distributions, library "
            "defaults, one BLAS and one torch thread per process). Time is the searcher's own "
            "(ask + tell). Problems: scripts/bench/problems.py "
            "(digits: nearest row of the precomputed MLP table, regret against the table's best)."
        )
        if overrides:
            note += f" Settings overrides: {overrides}."
        body = "\n".join(
            [
                note,
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
        replace_section(DOCS, args.section, f"### Sampler quality ({args.section})", body)
        print(f"wrote {DOCS}")
    return 0 if not any(c.startswith("FAIL") for c in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
