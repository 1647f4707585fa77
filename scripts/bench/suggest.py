"""Time per suggestion: our TPE and Bayesian next to Optuna's TPESampler and GPSampler, same run.

For each size N the searcher is given N finished observations (uniform random configurations of
the 6-D Hartmann space with their values) and then timed over `--reps` suggestions: each one is
tell(the previous proposal, with its value) + ask(1), so the history grows N, N+1, ... Ours goes
through our optimizer interface; Optuna gets the N observations with `study.add_trials` into an
in-memory study (storage cost is not measured) and is timed on `study.ask()` + `study.tell()`.
One untimed suggestion first takes imports and warm-up out. Reports the median per suggestion.

Bars (issue 9): our TPE at 1,000 observations no slower than Optuna's TPE; our Bayesian at 200
observations under 1 s per suggestion.

    .venv/bin/python scripts/bench/suggest.py [--reps 10] [--gp-reps 3] [--write-docs]
    .venv/bin/python scripts/bench/suggest.py --quick     # smaller sizes, fewer repetitions
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
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app.optimizers import optimizer_class  # noqa: E402
from app.optimizers.base import Observation  # noqa: E402
from app.optimizers.settings import SETTINGS_CLASSES  # noqa: E402
from app.space import Config, SearchSpace  # noqa: E402
from scripts.bench.docs import replace_section  # noqa: E402
from scripts.bench.optuna_peer import distributions, make_sampler  # noqa: E402
from scripts.bench.problems import problem  # noqa: E402
from scripts.bench.quality import single_threaded  # noqa: E402

DOCS = ROOT / "docs" / "benchmarks.md"
SIZES = {"tpe": (100, 1_000, 5_000), "bayesian": (50, 200, 500)}
QUICK_SIZES = {"tpe": (100, 1_000), "bayesian": (50, 200)}
PEER = {"tpe": "optuna-tpe", "bayesian": "optuna-gp"}
DATA_SEED = 7


def history(space: SearchSpace, fn: Callable[[Config], float], n: int) -> list[Observation]:
    rng = np.random.default_rng(DATA_SEED)
    configs = [space.sample(rng) for _ in range(n)]
    return [Observation(c, fn(c)) for c in configs]


def time_ours(algorithm: str, n: int, reps: int) -> list[float]:
    """Seconds per tell(1) + ask(1) after n observations, `reps` times (first untimed)."""
    prob = problem("hartmann6")
    opt = optimizer_class(algorithm)(prob.space, SETTINGS_CLASSES[algorithm](), seed=0)
    obs = history(prob.space, prob.fn, n)
    opt.mark_proposed([o.config for o in obs])
    opt.tell(obs)
    config = opt.ask(1)[0]  # warm-up: imports, caches
    out: list[float] = []
    for _ in range(reps):
        t0 = time.perf_counter()
        opt.mark_proposed([config])
        opt.tell([Observation(config, prob.fn(config))])
        config = opt.ask(1)[0]
        out.append(time.perf_counter() - t0)
    return out


def time_optuna(peer: str, n: int, reps: int) -> list[float]:
    """Seconds per study.tell(previous) + study.ask() after n trials added, in-memory storage."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    prob = problem("hartmann6")
    dists = distributions(prob.space)
    study = optuna.create_study(sampler=make_sampler(peer, 0), direction="minimize")
    study.add_trials(
        [
            optuna.trial.create_trial(params=o.config, distributions=dists, value=o.loss)
            for o in history(prob.space, prob.fn, n)
        ]
    )
    trial = study.ask(dists)  # warm-up
    out: list[float] = []
    for _ in range(reps):
        t0 = time.perf_counter()
        study.tell(trial, prob.fn(trial.params))
        trial = study.ask(dists)
        out.append(time.perf_counter() - t0)
    return out


def _ms(seconds: float) -> str:
    ms = 1000 * seconds
    return f"{ms:.1f}" if ms < 100 else f"{ms:.0f}"


def verdicts(rows: dict[tuple[str, int], float]) -> list[str]:
    out: list[str] = []
    if ("tpe", 1_000) in rows and ("optuna-tpe", 1_000) in rows:
        ours, peer = rows[("tpe", 1_000)], rows[("optuna-tpe", 1_000)]
        ok = ours <= peer
        out.append(
            f"{'PASS' if ok else 'FAIL'} TPE at 1,000 observations: {_ms(ours)} ms per suggestion, "
            f"Optuna TPE {_ms(peer)} ms (ratio {ours / peer:.2f}; bar <= 1)"
        )
    if ("bayesian", 200) in rows:
        ours = rows[("bayesian", 200)]
        ok = ours < 1.0
        peer_text = f"; Optuna GP {_ms(rows[('optuna-gp', 200)])} ms" if ("optuna-gp", 200) in rows else ""
        out.append(
            f"{'PASS' if ok else 'FAIL'} Bayesian at 200 observations: {_ms(ours)} ms per suggestion "
            f"(bar < 1000 ms){peer_text}"
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--reps", type=int, default=10, help="timed suggestions per TPE size")
    parser.add_argument("--gp-reps", type=int, default=3, help="timed suggestions per GP size")
    parser.add_argument("--quick", action="store_true", help="sizes 100/1,000 and 50/200, 3 and 2 reps")
    parser.add_argument("--write-docs", action="store_true", help=f"update the section in {DOCS}")
    args = parser.parse_args(argv)
    sizes = QUICK_SIZES if args.quick else SIZES
    if args.quick:
        args.reps, args.gp_reps = 3, 2

    single_threaded()
    rows: dict[tuple[str, int], float] = {}
    lines = [
        "| Searcher | Observations | ours: ms per suggestion | Optuna: ms per suggestion | ours / Optuna |",
        "|---|---|---|---|---|",
    ]
    t_start = time.perf_counter()
    for algorithm, ns in sizes.items():
        reps = args.reps if algorithm == "tpe" else args.gp_reps
        peer = PEER[algorithm]
        for n in ns:
            ours = statistics.median(time_ours(algorithm, n, reps))
            theirs = statistics.median(time_optuna(peer, n, reps))
            rows[(algorithm, n)], rows[(peer, n)] = ours, theirs
            line = f"| {algorithm} vs {peer} | {n:,} | {_ms(ours)} | {_ms(theirs)} | {ours / theirs:.2f} |"
            lines.append(line)
            print(line, flush=True)
    wall = time.perf_counter() - t_start
    table = "\n".join(lines)
    checks = verdicts(rows)
    print()
    print(table)
    print()
    print("\n".join(checks))
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?"
    print(f"\nwall time {wall:.0f} s, load average {load}")

    if args.write_docs:
        argv_text = " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
        machine = (
            f"{os.cpu_count()} cores, {platform.machine()}, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}; machine shared with other work, load average at the "
            f"end {load}"
        )
        note = (
            "Time per suggestion (tell of the previous proposal + ask(1)) after N finished observations "
            "of uniform random configurations on the 6-D Hartmann space, median of "
            f"{args.reps} (TPE) / {args.gp_reps} (GP) suggestions after an untimed one, all in one process "
            "and one run. Optuna: TPESampler / GPSampler with library defaults on an in-memory study "
            "filled by `study.add_trials` (storage cost not measured). Ours: default settings "
            "(Bayesian: `fit_budget_s` 0.5, hyperparameters fitted on 300 random rows above 300 "
            "observations). One BLAS and one torch thread for both (Optuna's GP uses torch; without "
            "the optional `greenlet` package it runs its L-BFGS-B restarts one after another)."
        )
        body = "\n".join(
            [
                note,
                "",
                table,
                "",
                *[f"- {c}" for c in checks],
                "",
                f"Command: `.venv/bin/python scripts/bench/suggest.py {argv_text}`".rstrip() + "  ",
                f"Date: {dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}  ",
                f"Machine: {machine}; wall time {wall:.0f} s.",
            ]
        )
        replace_section(DOCS, "suggest", "## Time per suggestion (TPE, GP)", body)
        print(f"wrote {DOCS}")
    return 0 if not any(c.startswith("FAIL") for c in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
