"""Does a GP fit hold up another experiment's dispatch? Measured with the real stack.

A Random experiment (instant trials, 2 slots) runs alone, then beside a Bayesian experiment whose
GP asks are (a) run off the loop in a separate process, as shipped, and (b) forced inline, to show
what the offloading avoids. For Random we measure the refill gap: from a trial's end (worker
clock) to the creation of the trial that takes its slot. Real Redis (a private one unless
--redis-url), a real Celery worker with 3 slots, SQLite.

    .venv/bin/python scripts/bench/dispatch_isolation.py [--trials 100] [--gp-warm 60] [--write-docs]
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from app.broker import EmbeddedRedis  # noqa: E402
from app.codepack import pack_directory  # noqa: E402
from app.config import Settings  # noqa: E402
from app.coordinator.dispatch import Publisher  # noqa: E402
from app.coordinator.loop import Coordinator  # noqa: E402
from app.local_workers import LocalWorker  # noqa: E402
from app.optimizers.bayesian import Bayesian  # noqa: E402
from app.services.experiments import submit  # noqa: E402
from app.spec import parse_spec  # noqa: E402
from app.store.artifacts import FileArtifactStore  # noqa: E402
from app.store.db import ensure_schema, make_engine  # noqa: E402
from app.store.repository import Store  # noqa: E402
from scripts.bench.docs import replace_section  # noqa: E402
from workers.celery_app import make_celery  # noqa: E402

MODEL = ROOT / "tests" / "fixtures" / "quad"
SPACE = {
    "x": {"type": "float", "low": 0.0, "high": 1.0},
    "y": {"type": "float", "low": 0.0, "high": 1.0},
    "c": {"type": "categorical", "choices": ["a", "b"]},
}


def _spec(algorithm: dict, trials: int, parallel: int):
    return parse_spec(
        {
            "model": {"main": "train.py", "dir": "quad"},
            "algorithm": algorithm,
            "objective": {"metric": "loss", "direction": "minimize"},
            "max_trials": trials,
            "max_parallel": parallel,
            "space": SPACE,
        }
    )


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def _refill_gaps(trials, parallel: int) -> list[float]:
    ends = sorted(t.ended_at.timestamp() for t in trials)
    created = sorted(t.created_at.timestamp() for t in trials)
    return [created[i + parallel] - ends[i] for i in range(len(created) - parallel)]


def scenario(store: Store, settings: Settings, name: str, args, gp: str | None) -> dict:
    """Random alone, or Random started once a Bayesian experiment has `gp_warm` trials behind it."""
    code = pack_directory(MODEL, "quad")
    client = redis.Redis.from_url(settings.broker_url)
    coord = Coordinator(
        store,
        client,
        Publisher(make_celery(settings.broker_url, include_tasks=False), client, store),
        FileArtifactStore(settings.artifacts_dir),
        settings,
    )
    deadline = time.monotonic() + 1800
    gp_exp = None
    if gp is not None:
        Bayesian.blocking = gp == "offloaded"
        gp_spec = _spec({"name": "bayesian", "seed": 1, "init_points": 5}, args.gp_warm + 1000, 1)
        gp_exp = submit(store, gp_spec, code, "quad.modelDir.tar")
        coord.run(
            should_stop=lambda: len(store.trials(gp_exp.id)) >= args.gp_warm or time.monotonic() > deadline
        )
    rnd = submit(store, _spec({"name": "random", "seed": 1}, args.trials, 2), code, "quad.modelDir.tar")
    coord.run(should_stop=lambda: rnd.id in coord.finished or time.monotonic() > deadline)
    if gp_exp is not None:
        coord.request_stop(gp_exp.id)
        coord.run(should_stop=lambda: gp_exp.id in coord.finished or time.monotonic() > deadline)
    coord.close()
    Bayesian.blocking = True
    exp = store.experiment(rnd.id)
    trials = store.trials(rnd.id)
    gaps = _refill_gaps(trials, 2)
    row = {
        "scenario": name,
        "random_wall": (exp.finished_at - exp.started_at).total_seconds(),
        "gap_median": statistics.median(gaps),
        "gap_p95": _quantile(gaps, 0.95),
        "gap_max": max(gaps),
        "gp_ask": None,
    }
    if gp_exp is not None:  # the GP's own asks while Random ran: previous trial's end -> next creation
        window = (exp.started_at, exp.finished_at)
        gp_trials = [t for t in store.trials(gp_exp.id) if t.ended_at is not None]
        asks = [
            b.created_at.timestamp() - a.ended_at.timestamp()
            for a, b in itertools.pairwise(gp_trials)
            if window[0] <= b.created_at <= window[1]
        ]
        row["gp_ask"] = (statistics.median(asks), max(asks), len(asks)) if asks else None
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100, help="Random experiment's trials")
    parser.add_argument("--gp-warm", type=int, default=60, help="Bayesian trials done before Random starts")
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        embedded = None
        url = args.redis_url
        if url is None:
            embedded = EmbeddedRedis(home / "redis").start()
            url = embedded.url
        worker = LocalWorker(
            slots=3,
            queues=["trials.cpu"],
            env={"HPO_BROKER_URL": url, "HPO_HOME": str(home)},
            log_path=home / "worker.log",
            worker_dir=home / "worker",
            name=f"bench-{os.getpid()}@%h",
        ).start()
        rows = []
        try:
            engine = make_engine(f"sqlite:///{home / 'hpo.db'}")
            ensure_schema(engine, auto_upgrade=True)
            store = Store(engine)
            settings = Settings(home=home, broker_url=url, poll_interval_s=0.2, event_block_ms=100)
            time.sleep(3)  # worker start-up
            rows.append(scenario(store, settings, "Random alone", args, None))
            rows.append(
                scenario(
                    store,
                    settings,
                    "Random + Bayesian, GP in a separate process (shipped)",
                    args,
                    "offloaded",
                )
            )
            rows.append(
                scenario(
                    store, settings, "Random + Bayesian, GP inline in the loop (for contrast)", args, "inline"
                )
            )
        finally:
            worker.stop()
            if embedded:
                embedded.stop()

    lines = [
        f"Random: {args.trials} instant trials on 2 slots, started once a Bayesian experiment (1 slot, "
        f"skopt GP, 5 random initial points) has {args.gp_warm} trials, so every GP fit it overlaps has "
        f"{args.gp_warm}+ points. Refill gap = a Random trial's end (worker clock) to the creation of the "
        "trial that takes its slot. GP ask = the Bayesian trial's end to its successor's creation "
        "(fits overlapping the Random run).",
        "",
        "| scenario | Random wall (s) | refill gap median (ms) | p95 (ms) | max (ms) "
        "| GP asks: median / max (s), count |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        gp = "-" if r["gp_ask"] is None else f"{r['gp_ask'][0]:.2f} / {r['gp_ask'][1]:.2f}, {r['gp_ask'][2]}"
        lines.append(
            f"| {r['scenario']} | {r['random_wall']:.1f} | {r['gap_median'] * 1000:.0f} | "
            f"{r['gap_p95'] * 1000:.0f} | {r['gap_max'] * 1000:.0f} | {gp} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.write_docs:
        note = (
            f"Command: `.venv/bin/python scripts/bench/dispatch_isolation.py --trials {args.trials} "
            f"--gp-warm {args.gp_warm} --write-docs`, {date.today()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}."
        )
        replace_section(
            ROOT / "docs" / "benchmarks.md",
            "dispatch_isolation",
            "## GP fits do not stall other experiments",
            table + "\n\n" + note,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
