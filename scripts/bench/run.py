"""Dispatch benchmarks of issue 9 against the real service, with Optuna as the peer in the same run.

    .venv/bin/python -m scripts.bench WORKLOAD [--quick] [--trials N] [--mode MODE[,MODE]]
                                      [--redis-url redis://HOST:PORT/DB] [--write-docs]
    .venv/bin/python scripts/bench/run.py ...   (the same)

    .venv/bin/python -m scripts.bench quality|quality-service|suggest [their flags]
        (scripts/bench/quality.py, quality_service.py, suggest.py)

WORKLOAD: overhead (200 x sleep(0.5) on 2 slots: wall / ideal), throughput (1,000 no-op trials:
trials/s, per-trial overhead p50/p95), scale (one 10,000-trial experiment: overhead first vs last
1,000, coordinator and API memory, API answer times), or all. Our side is `hpo run`'s stack
(Redis, one Celery worker with the slots, the coordinator, SQLite in a temporary folder); the
peer is Optuna's JournalStorage on the same Redis with as many processes. Without --redis-url a
private Redis is started; with it, that URL's database is FLUSHED before every run: give one that
nothing else uses. --write-docs writes the tables into the `dispatch` section of docs/benchmarks.md
(each workload in its own block, so one workload can be rerun alone).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.bench import machine  # noqa: E402
from scripts.bench.docs import replace_section  # noqa: E402
from scripts.bench.report import footer, replace_block, section_body  # noqa: E402
from scripts.bench.service import MODES, WORKDIR, redis_or_private  # noqa: E402
from scripts.bench.workloads import OVERHEAD_DEF, Config, Section, overhead, scale, throughput  # noqa: E402

WORKLOADS = ("overhead", "throughput", "scale")
FULL = {"overhead": 200, "throughput": 1000, "scale": 10_000}
QUICK = {"overhead": 40, "throughput": 200, "scale": 2000}
DOCS = ROOT / "docs" / "benchmarks.md"
HEADING = "## Dispatch: overhead, throughput and scale against Optuna"


def _modes(text: str) -> str:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    wrong = [m for m in modes if m not in MODES]
    if wrong or not modes:
        raise argparse.ArgumentTypeError(f"modes are {', '.join(MODES)}; got {text!r}")
    return ",".join(modes)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench", description=(__doc__ or "").strip().splitlines()[0]
    )
    parser.add_argument("workload", choices=(*WORKLOADS, "all"))
    parser.add_argument("--quick", action="store_true", help="smaller counts: " + str(QUICK))
    parser.add_argument("--trials", type=int, default=None, help="trial count of the (single) workload")
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=None, help="experiment max_parallel (default: slots)")
    parser.add_argument(
        "--mode",
        type=_modes,
        default="subprocess",
        help="trial modes measured beside subprocess, comma-separated (native `model: {mode: ...}`): "
        + ", ".join(MODES),
    )
    parser.add_argument(
        "--redis-url", default=None, help="Redis to use; its database is flushed before each run"
    )
    parser.add_argument(
        "--scale-peer", action="store_true", help="also run Optuna at the scale workload's size"
    )
    parser.add_argument("--reps", type=int, default=20, help="API requests per route (scale)")
    parser.add_argument(
        "--pairs",
        type=int,
        default=2,
        help="throughput: further runs of the fastest mode and Optuna; the 2x bar takes the median pair",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=WORKDIR,
        help=f"where each run's home (trial directories, SQLite, results) is made (default {WORKDIR})",
    )
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args(argv)
    if args.trials is not None and args.workload == "all":
        parser.error("--trials needs a single workload")
    if args.trials is not None and args.trials < 2 * args.slots:
        parser.error(f"--trials must be at least {2 * args.slots}")
    return args


def _counts(args: argparse.Namespace) -> dict[str, int]:
    counts = dict(QUICK if args.quick else FULL)
    if args.trials is not None:
        counts[args.workload] = args.trials
    return counts


def run_workloads(args: argparse.Namespace, redis_url: str) -> list[tuple[str, Section]]:
    import redis

    def flush() -> None:  # only the database of `redis_url` (a private server, or the one given)
        client = redis.Redis.from_url(redis_url)
        client.flushdb()
        client.close()

    cfg = Config(
        redis_url=redis_url,
        slots=args.slots,
        mode=args.mode,
        parallel=args.parallel,
        workdir=args.workdir,
        pairs=args.pairs,
        flush=flush,
        log=lambda s: print(s, file=sys.stderr, flush=True),
    )
    counts = _counts(args)
    chosen = WORKLOADS if args.workload == "all" else (args.workload,)
    out: list[tuple[str, Section]] = []
    for name in chosen:
        print(f"{name} ...", file=sys.stderr, flush=True)
        if name == "overhead":
            section = overhead(cfg, counts[name])
        elif name == "throughput":
            section = throughput(cfg, counts[name])
        else:
            section = scale(cfg, counts[name], peer=args.scale_peer, reps=args.reps)
        print("\n" + section.text() + "\n", flush=True)
        out.append((name, section))
    return out


def command_line(argv: list[str] | None) -> str:
    return ".venv/bin/python -m scripts.bench " + shlex.join(sys.argv[1:] if argv is None else argv)


def write_docs(sections: list[tuple[str, Section]], foot: str) -> None:
    text = DOCS.read_text() if DOCS.exists() else ""
    body = section_body(text, "dispatch")
    if "<!-- dispatch.definition:begin -->" not in body:
        body = ""  # an older layout of this section: start afresh
    body = replace_block(body, "dispatch.definition", OVERHEAD_DEF)
    for name, section in sections:
        body = replace_block(body, f"dispatch.{name}", section.text() + "\n\n" + foot)
    replace_section(DOCS, "dispatch", HEADING, body)


SEARCHER_BENCHES = {
    "quality": "scripts.bench.quality",
    "quality-service": "scripts.bench.quality_service",
    "suggest": "scripts.bench.suggest",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SEARCHER_BENCHES:  # in-process searcher benchmarks: their own flags
        import importlib

        return int(importlib.import_module(SEARCHER_BENCHES[argv[0]]).main(argv[1:]))
    args = parse_args(argv)
    before = machine.loadavg()
    started = time.monotonic()
    print(f"machine: {machine.describe()}; load before {before}", flush=True)
    with redis_or_private(args.redis_url) as url:
        sections = run_workloads(args, url)
    after = machine.loadavg()
    wall = time.monotonic() - started
    foot = footer(
        command_line(argv),
        machine.now(),
        machine.describe(),
        before,
        after,
        wall,
        machine.code_version(ROOT),
        machine.storage(args.workdir),
    )
    print(OVERHEAD_DEF + "\n\n" + foot)
    checks = [c for _, s in sections for c in s.checks]
    print("\nsummary against issue 9's bars:\n" + "\n".join(checks))
    if args.write_docs:
        write_docs(sections, foot)
        print(f"written to {DOCS} (section dispatch)")
    incomplete = [c for c in checks if c.startswith("- FAIL") and c.endswith("trials finished")]
    return 1 if incomplete else 0  # a missed bar is a result, not an error; lost trials are an error


if __name__ == "__main__":
    sys.exit(main())
