"""Dashboard data for a 10,000-trial experiment, over real HTTP, with the answers checked.

Reuses api_scale's store (one finished experiment, ~5 % FAILED) and adds 10 metric points per
trial (100,000 rows). The real app runs under uvicorn in a thread; httpx (bearer token) measures:

- GET /api/v1/dashboard/experiments/{name}, cold: the plot cache emptied before every request, so
  the history, parallel coordinates and importance are computed from all trials each time
- the same, warm: the trials did not change, so one fingerprint query and the learning curves
- GET /api/v1/dashboard/experiments/{name}/trials sorted by the metric, first page and offset 9,000

and checks the bodies (history covers every finished trial and ends at the best value, parallel
coordinates are capped at 1,000 rows and include the best trial, the table's order and total).

    .venv/bin/python scripts/bench/dashboard_scale.py [--trials 10000] [--reps 10] [--write-docs]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import insert, select, update  # noqa: E402

from app.api.app import create_app  # noqa: E402
from app.api.server_thread import ServerThread  # noqa: E402
from app.config import Settings  # noqa: E402
from app.store.models import MetricPoint, Trial  # noqa: E402
from scripts.bench.api_scale import NAME, USER, build_store, timed  # noqa: E402
from scripts.bench.docs import replace_section  # noqa: E402

POINTS = 10


def add_points(store, trials: int) -> None:  # type: ignore[no-untyped-def]
    with store.engine.begin() as conn:
        rows = conn.execute(select(Trial.id, Trial.objective)).all()
        batch = []
        for trial_id, objective in rows:
            final = objective if objective is not None else 2.5
            for seq in range(POINTS):
                loss = final * (1 + (POINTS - 1 - seq) * 0.2)
                batch.append({"trial_id": trial_id, "attempt": 1, "seq": seq, "step": seq + 1,
                              "values": {"loss": loss, "accuracy": 1 - loss / 4}})  # fmt: skip
            if len(batch) >= 20_000:
                conn.execute(insert(MetricPoint.__table__), batch)  # type: ignore[attr-defined]
                batch = []
        if batch:
            conn.execute(insert(MetricPoint.__table__), batch)  # type: ignore[attr-defined]


def check_dashboard(facts: dict):  # type: ignore[no-untyped-def]
    def check(response: httpx.Response) -> None:
        plots = response.json()["plots"]
        history = plots["history"]
        assert history["total"] == facts["finished"], history["total"]
        assert abs(history["best"][-1] - facts["best_value"]) < 1e-12
        parallel = plots["parallel"]
        assert len(parallel["objective"]) == 1000 and parallel["total"] == facts["finished"]
        assert facts["best_number"] in parallel["numbers"]
        assert {d["name"] for d in plots["importance"]} == {
            "learning_rate",
            "batch_size",
            "optimizer",
            "dropout",
        }
        assert plots["curves"] and all(len(c["value"]) == POINTS for c in plots["curves"])

    return check


def check_table(offset: int, facts: dict):  # type: ignore[no-untyped-def]
    def check(response: httpx.Response) -> None:
        body = response.json()
        assert body["total"] == facts["trials"]
        values = [t["objective"] for t in body["items"]]
        finite = [v for v in values if v is not None]
        assert finite == sorted(finite), "not sorted by the metric"
        if offset == 0:
            assert body["items"][0]["number"] == facts["best_number"]

    return check


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    deep = max(args.trials - 1000, 0)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        store, facts = build_store(home, args.trials)
        add_points(store, args.trials)
        app = create_app(Settings(home=home), store, cpu_only=True, has_gpus=False)
        cache = app.state.ctx.plot_cache
        base = f"/api/v1/dashboard/experiments/{NAME}"
        with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=120) as login:
            token = login.post("/api/v1/tokens", auth=USER).json()["token"]
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=server.url, timeout=120, headers=headers) as client:
                client.get(base)  # warm the connection and the code paths
                results = []

                class Cold(httpx.Client):  # empties the plot cache before each request
                    def get(self, *a, **k):  # type: ignore[no-untyped-def,override]
                        cache._items.clear()
                        return client.get(*a, **k)

                results.append(
                    (
                        "experiment page data, cold (computed)",
                        timed(Cold(), base, args.reps, check_dashboard(facts)),
                    )
                )

                class OneMoreEnded(httpx.Client):  # a trial ends between requests: incremental refresh
                    def get(self, *a, **k):  # type: ignore[no-untyped-def,override]
                        with store.engine.begin() as conn:
                            conn.execute(
                                update(Trial)
                                .where(Trial.number == random.randrange(args.trials))
                                .values(ended_at=datetime.now(UTC))
                            )
                        return client.get(*a, **k)

                results.append(
                    (
                        "experiment page data, after a trial ended (incremental)",
                        timed(OneMoreEnded(), base, args.reps, check_dashboard(facts)),
                    )
                )
                results.append(
                    (
                        "experiment page data, warm (cached)",
                        timed(client, base, args.reps, check_dashboard(facts)),
                    )
                )
                table = f"{base}/trials?sort=objective&limit=50"
                results.append(
                    (
                        "trial table by metric, first page",
                        timed(client, table, args.reps, check_table(0, facts)),
                    )
                )
                deep_page = f"{table}&offset={deep}"
                deep_result = timed(client, deep_page, args.reps, check_table(deep, facts))
                results.append((f"trial table by metric, offset {deep}", deep_result))
    lines = [
        f"One finished experiment of {args.trials:,} trials ({facts['failed']} FAILED) with {POINTS} metric "
        f"points each, SQLite (WAL), the real app under uvicorn on 127.0.0.1, httpx with a bearer token, "
        "one request at a time; every answer checked (history over all finished trials ending at the "
        "best value, 1,000 parallel-coordinates rows including the best trial, importances of the 4 "
        "parameters, learning curves, the table's order and total).",
        "",
        "| request | median (ms) | p95 (ms) | n | response (KB) |",
        "|---|---|---|---|---|",
    ]
    for label, r in results:
        ms = f"{r['median'] * 1000:.1f} | {r['p95'] * 1000:.1f}"
        lines.append(f"| {label} | {ms} | {r['n']} | {r['bytes'] / 1024:.1f} |")
    lines += [
        "",
        "Cold is what the first viewer pays after the API starts: every trial row read once into columns "
        "(numpy arrays), then the plots computed as vectorized passes and downsampled (history: every "
        "improvement plus an even sample, at most 1,500 points; parallel coordinates: the best 500 and an "
        "even sample of the rest). After a trial ended, only the trials that have not ended or ended since "
        "the last read are read again and written into a copy of the columns, and the plots recomputed "
        "from those. Warm is every refresh in between: a fingerprint query (count, starts, ends, "
        "attempts) and the learning curves of at most 24 trials.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {load_before:.1f} before and {os.getloadavg()[0]:.1f} after (1 min; other work on "
        "the machine slows every row), "
        f"`scripts/bench/dashboard_scale.py --trials {args.trials} --reps {args.reps}`.",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write_docs:
        replace_section(ROOT / "docs" / "benchmarks.md", "dashboard", "## Dashboard at 10,000 trials", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
