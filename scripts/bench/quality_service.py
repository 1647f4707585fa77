"""Search quality through the full service: one seeded run per algorithm, against the same run in one process.

    .venv/bin/python scripts/bench/quality_service.py [--problems branin,mixed]
        [--algorithms random,tpe,bayesian] [--evals 50] [--seed 0] [--redis-url URL] [--write-docs]

The quality tables (scripts/bench/quality.py) drive each searcher through its interface in one
process. Here the same problem, searcher and seed run as an experiment through `hpo run`'s stack:
Redis, one Celery worker, the coordinator, SQLite, each evaluation a function trial
(scripts/bench/trials/problem_fn.py), one at a time (max_parallel 1, nothing queued ahead), so the
searcher sees the same history as in the in-process loop. Reported: the regret both ways and how
many proposals are identical. A searcher whose fit has a time budget (bayesian) may part ways once
the two fits stop at different points; random and TPE must match exactly.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app.codepack import pack_directory  # noqa: E402
from app.config import Settings  # noqa: E402
from app.local_stack import LocalStack  # noqa: E402
from app.services.experiments import submit  # noqa: E402
from app.space import SearchSpace  # noqa: E402
from app.spec import ExperimentSpec, parse_spec  # noqa: E402
from scripts.bench import machine  # noqa: E402
from scripts.bench.docs import replace_section  # noqa: E402
from scripts.bench.problems import PROBLEMS, Config, problem  # noqa: E402
from scripts.bench.quality import run_one, single_threaded  # noqa: E402
from scripts.bench.report import footer  # noqa: E402
from scripts.bench.service import TRIALS_DIR, drive, redis_or_private  # noqa: E402
from scripts.bench.timing import check, markdown_table  # noqa: E402

DOCS = ROOT / "docs" / "benchmarks.md"
HEADING = "## Sampler quality (Branin, Hartmann6, mixed, digits; ours vs Optuna)"
EXACT = ("random", "tpe")  # no time budget anywhere: the service must propose exactly the same


@dataclass(frozen=True)
class Pair:
    problem: str
    algorithm: str
    local: list[tuple[Config, float]]
    service: list[tuple[Config, float]]

    @property
    def same_prefix(self) -> int:
        """How many proposals agree from the first on (configs and losses)."""
        n = 0
        for (c1, l1), (c2, l2) in zip(self.local, self.service, strict=False):
            if c1 != c2 or l1 != l2:
                break
            n += 1
        return n

    def regret(self, history: list[tuple[Config, float]]) -> float:
        return max(min(loss for _, loss in history) - problem(self.problem).optimum, 0.0)


def native_space(space: SearchSpace) -> dict[str, dict[str, Any]]:
    """The native spec's `space:` for a problem's SearchSpace (defaults left out)."""
    out = {}
    for p in space.params:
        d = p.model_dump(exclude_none=True, exclude={"name"})
        if d.get("log") is False:
            del d["log"]
        if d.get("value_type") == "str":
            del d["value_type"]
        if "choices" in d:
            d["choices"] = list(d["choices"])
        out[p.name] = d
    return out


def service_spec(problem_name: str, algorithm: str, seed: int, evals: int) -> ExperimentSpec:
    prob = problem(problem_name)
    spec = parse_spec(
        {
            "name": f"quality-{problem_name}-{algorithm}-{seed}",
            "model": {
                "main": "problem_fn.py",
                "dir": "trials",
                "mode": "function",
                "function": "trial",
                "preload": ["numpy"],
            },
            "algorithm": {"name": algorithm, "seed": seed},
            "objective": {"metric": "loss", "direction": "minimize"},
            "max_trials": evals,
            "max_parallel": 1,
            "env": {"BENCH_ROOT": str(ROOT), "BENCH_PROBLEM": problem_name},
            "space": native_space(prob.space),
        }
    )
    if spec.space != prob.space:  # the searcher must see the very space of the in-process run
        raise SystemExit(f"{problem_name}: the spec's space differs from the problem's: {spec.space}")
    return spec


def through_service(stack: LocalStack, spec: ExperimentSpec, code: bytes) -> list[tuple[Config, float]]:
    exp = submit(stack.store, spec, code, "trials.modelDir.tar")
    drive(stack, exp, None)
    assert exp.id is not None
    trials = stack.store.trials(exp.id)
    failed = [t for t in trials if t.objective is None]
    if failed:
        raise SystemExit(f"{spec.name}: trial {failed[0].number} has no result ({failed[0].reason})")
    return [(t.params, float(t.objective)) for t in sorted(trials, key=lambda t: t.number)]  # type: ignore[arg-type]


def run_pairs(
    problems: list[str], algorithms: list[str], seed: int, evals: int, redis_url: str
) -> list[Pair]:
    pairs = []
    code = pack_directory(TRIALS_DIR, "trials")
    with tempfile.TemporaryDirectory(prefix="hpo-bench-quality-") as tmp:
        settings = Settings(home=Path(tmp), broker_url=redis_url, lookahead=0)
        with LocalStack(settings, slots=1, queues=["trials.cpu"], gpus=[]) as stack:
            for p in problems:
                for a in algorithms:
                    print(f"  {p} / {a} ...", file=sys.stderr, flush=True)
                    local: list[tuple[Config, float]] = []
                    run_one(p, a, seed, (evals,), {}, history=local)
                    pairs.append(
                        Pair(p, a, local, through_service(stack, service_spec(p, a, seed, evals), code))
                    )
    return pairs


def report(pairs: list[Pair], evals: int, seed: int) -> tuple[str, list[str]]:
    rows = [
        [
            p.problem,
            p.algorithm,
            f"{p.regret(p.local):.3g}",
            f"{p.regret(p.service):.3g}",
            f"{p.same_prefix} of {evals}",
        ]
        for p in pairs
    ]
    table = markdown_table(
        ["Problem", "Algorithm", f"regret @ {evals}, in one process", "through the service", "same"],
        rows,
    )
    checks = [_verdict(p, evals) for p in pairs]
    intro = (
        f"One seeded run (seed {seed}, {evals} evaluations) per searcher through the full service "
        "(Redis, a Celery worker, the coordinator, SQLite; function trials, max_parallel 1, nothing "
        "queued ahead) against the same run in one process (the quality tables' loop). Random and "
        "TPE must propose exactly the same; Bayesian's fit has a time budget, so it may part ways "
        "once a fit stops elsewhere."
    )
    return intro + "\n\n" + table, checks


def _verdict(p: Pair, evals: int) -> str:
    """Random and TPE: every proposal identical. Bayesian (a time-budgeted fit): identical, or a
    regret no worse than twice the in-process run's."""
    same = p.same_prefix == evals
    detail = f"{p.same_prefix} of {evals} proposals identical"
    if p.algorithm in EXACT:
        return check(f"{p.problem}/{p.algorithm} through the service", same, detail)
    close = same or p.regret(p.service) <= 2 * p.regret(p.local)
    return check(
        f"{p.problem}/{p.algorithm} through the service", close, detail + " (else: regret within 2x)"
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--problems", default=",".join(PROBLEMS), help="comma-separated")
    parser.add_argument("--algorithms", default="random,tpe,bayesian", help="comma-separated")
    parser.add_argument("--evals", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--redis-url", default=None, help="default: a private Redis for the run")
    parser.add_argument("--write-docs", action="store_true", help=f"update the section in {DOCS}")
    args = parser.parse_args(argv)
    problems = [p for p in args.problems.split(",") if p]
    for p in problems:
        if p not in PROBLEMS:
            parser.error(f"unknown problem {p!r}; choose from {', '.join(PROBLEMS)}")
    algorithms = [a for a in args.algorithms.split(",") if a]
    for a in algorithms:
        if a not in ("random", "tpe", "bayesian"):
            parser.error(f"unknown algorithm {a!r}; choose from random, tpe, bayesian")
    single_threaded()
    before, started = machine.loadavg(), time.monotonic()
    with redis_or_private(args.redis_url) as url:
        pairs = run_pairs(problems, algorithms, args.seed, args.evals, url)
    body, checks = report(pairs, args.evals, args.seed)
    command = ".venv/bin/python scripts/bench/quality_service.py " + " ".join(shlex.quote(a) for a in argv)
    foot = footer(
        command.rstrip(),
        machine.now(),
        machine.describe(),
        before,
        machine.loadavg(),
        time.monotonic() - started,
        machine.code_version(ROOT),
    )
    text = body + "\n\n" + "\n".join(checks) + "\n\n" + foot
    print(text)
    if args.write_docs:
        replace_section(DOCS, "quality_service", HEADING, text)
        print(f"written to {DOCS} (section quality_service)")
    return 0 if all(c.startswith("- PASS") for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
