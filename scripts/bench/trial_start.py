"""Trial start-up cost: a fresh interpreter per trial (subprocess), the same started ahead (the slot's
spare interpreter, workers.prespawn) and a fork of a pre-warmed server (forkserver).

Two measurements, each for a no-op script with and without `import torch`:
  start     from the runner's decision to start (just before workers.process.spawn, Spares.spawn
            or ForkServers.spawn) to the script's first line, and to the line after its imports
            (the spare had 0.5 s to start, as it has while the slot's previous trial runs);
  trial     a whole no-op trial through TrialRunner.run (claim, events, code copy, config.json,
            process, results, upload) against a real Redis (a private one unless --redis-url).
The forkserver's own start (its preload) happens once per worker process and is shown apart; so
does a function server's (its first call imports the module). Function rows: the same no-op as a
function (`model: {main: fn.py, function: train}`), called in the slot's kept process.

    .venv/bin/python scripts/bench/trial_start.py [--reps 20] [--torch-reps 8] [--write-docs]
"""

from __future__ import annotations

import argparse
import json
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
from app.codepack import pack_directory, sha256  # noqa: E402
from app.config import Settings  # noqa: E402
from app.keys import code_key, events_stream  # noqa: E402
from app.messages import CodeRef, TrialTask  # noqa: E402
from scripts.bench.docs import replace_section  # noqa: E402
from workers.forkserver import ForkServers  # noqa: E402
from workers.prespawn import Spares  # noqa: E402
from workers.process import spawn, stop_process  # noqa: E402
from workers.runner import TrialRunner  # noqa: E402

SCRIPT = """import time
first = time.time()
{imports}
import json, os
ready = time.time()
with open(os.path.join(os.environ["RESULT_DIR"], "times.json"), "w") as fh:
    json.dump({{"first": first, "ready": ready}}, fh)
with open(os.path.join(os.environ["RESULT_DIR"], "val_dict_list.json"), "w") as fh:
    json.dump([{{"steps": 1, "loss": 0.0}}], fh)
"""
FUNCTION = """import time
{imports}
import json, os


def train(config):
    first = time.time()
    with open(os.path.join(os.environ["RESULT_DIR"], "times.json"), "w") as fh:
        json.dump({{"first": first, "ready": first}}, fh)  # imports: done once, by the first call
    return {{"steps": 1, "loss": 0.0}}
"""
# (label, mode, import torch in the script, preload); mode "spare": subprocess trials in spares
SCENARIOS = [
    ("subprocess, started on demand", "subprocess", False, ()),
    ("subprocess, spare interpreter (default)", "spare", False, ()),
    ("forkserver", "forkserver", False, ()),
    ("subprocess, started on demand, script imports torch", "subprocess", True, ()),
    ("subprocess, spare interpreter, script imports torch", "spare", True, ()),
    ("forkserver, script imports torch, preload: [torch]", "forkserver", True, ("torch",)),
    ("function (kept process)", "function", False, ()),
    ("function (kept process), module imports torch", "function", True, ()),
]
SPARE_LEAD_S = 0.5


def _code(folder: Path, with_torch: bool) -> Path:
    model = folder / ("torch_noop" if with_torch else "noop")
    model.mkdir(parents=True, exist_ok=True)
    imports = "import torch" if with_torch else ""
    (model / "train.py").write_text(SCRIPT.format(imports=imports))
    (model / "fn.py").write_text(FUNCTION.format(imports=imports))
    (model / "config.json").write_text("{}")  # a function is called with ./config.json
    return model


def _quantiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def start_latency(
    tmp: Path,
    servers: ForkServers,
    spares: Spares,
    mode: str,
    model: Path,
    preload: tuple[str, ...],
    reps: int,
):
    """(first-line latencies, ready latencies) in seconds."""
    first, ready = [], []
    for i in range(reps):
        run = tmp / f"start-{mode}-{model.name}-{len(preload)}-{i}"
        (run / "log").mkdir(parents=True)
        env = {**servers.env, "RESULT_DIR": str(run)}
        out, err = run / "log" / "stdout", run / "log" / "stderr"
        if mode == "spare":
            spares.refill(sys.executable)
            time.sleep(SPARE_LEAD_S)
        decided = time.time()
        if mode == "forkserver":
            proc = servers.spawn(sys.executable, preload, main="train.py", args=[], cwd=model, env=env,
                                 stdout=out, stderr=err)  # fmt: skip
        elif mode == "function":
            call = (model / "fn.py", "train", "loss")
            proc = servers.spawn(sys.executable, preload, main="fn.py", args=[], cwd=model, env=env,
                                 stdout=out, stderr=err, function=call)  # fmt: skip
        elif mode == "spare":
            proc = spares.spawn(sys.executable, main="train.py", args=[], cwd=model, env=env, stdout=out,
                                stderr=err)  # fmt: skip
            if proc is None:
                raise RuntimeError("the spare interpreter was not usable")
        else:
            proc = spawn([sys.executable, "train.py"], cwd=model, env=env, stdout=out, stderr=err)
        code = proc.wait(timeout=120)
        if mode != "function":  # a function server stays for the next call, as in a slot
            stop_process(proc, 0.1)
        if code != 0:
            raise RuntimeError(f"{mode} trial failed: {err.read_text()}")
        times = json.loads((run / "times.json").read_text())
        first.append(times["first"] - decided)
        ready.append(times["ready"] - decided)
    return first, ready


def whole_trials(
    runner: TrialRunner, client: redis.Redis, model: Path, mode: str, preload: tuple[str, ...], reps: int
) -> list[float]:
    data = pack_directory(model, model.name)
    digest = sha256(data)
    client.hset(code_key(digest), mapping={"filename": f"{model.name}.modelDir.tar", "data": data})
    walls = []
    for i in range(reps):
        exec_id = f"bench-{mode}-{model.name}-{len(preload)}-{i}-{time.time_ns()}"
        task = TrialTask(
            experiment=exec_id, trial_id=i, exec_id=exec_id, number=i, attempt=1, params={},
            code=CodeRef(sha256=digest, filename=f"{model.name}.modelDir.tar"),
            main="fn.py" if mode == "function" else "train.py", model_dir=model.name,
            objective_metric="loss", preload=list(preload),
            mode=mode if mode in ("forkserver", "function") else "subprocess",
            function="train" if mode == "function" else None,
        )  # fmt: skip
        started = time.perf_counter()
        event = runner.run(task)
        walls.append(time.perf_counter() - started)
        if event is None or event.status != "ok" or event.notes:
            raise RuntimeError(f"{mode} trial: {event and (event.status, event.reason, event.notes)}")
        client.delete(events_stream(exec_id))
    return walls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=20, help="repetitions without torch")
    parser.add_argument("--torch-reps", type=int, default=8, help="repetitions with import torch")
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        embedded = None
        url = args.redis_url
        if url is None:
            embedded = EmbeddedRedis(tmp / "redis").start()
            url = embedded.url
        client = redis.Redis.from_url(url)
        settings = Settings(home=tmp / "home", broker_url=url, stop_poll_s=0.05)
        runners = {  # whole trials: spares on (the default) or off
            "spare": TrialRunner(settings, client, worker="bench/0", slots=2),
            "subprocess": TrialRunner(
                settings.model_copy(update={"prespawn": False}), client, worker="bench/1", slots=2
            ),
        }
        runners["forkserver"] = runners["function"] = runners["spare"]
        runner = runners["spare"]
        servers = ForkServers(runner.forkservers.env)
        spares = Spares(runner.spares.env)
        try:
            for label, mode, with_torch, preload in SCENARIOS:
                model = _code(tmp / "code", with_torch)
                reps = args.torch_reps if with_torch else args.reps
                server_start = None
                if mode in ("forkserver", "function"):  # the once-per-worker-process start, apart
                    started = time.perf_counter()
                    start_latency(tmp / "warm", servers, spares, mode, model, preload, 1)
                    server_start = time.perf_counter() - started
                whole_trials(runners[mode], client, model, mode, preload, 1)  # untimed: spares, caches
                first, ready = start_latency(tmp, servers, spares, mode, model, preload, reps)
                walls = whole_trials(runners[mode], client, model, mode, preload, reps)
                row = (label, reps, _quantiles(first), _quantiles(ready), _quantiles(walls), server_start)
                rows.append(row)
                print(rows[-1], flush=True)
        finally:
            servers.close()
            spares.close()
            runner.forkservers.close()
            for each in runners.values():
                each.spares.close()
            if embedded:
                embedded.stop()
    load_after = Path("/proc/loadavg").read_text().split()[:3]
    lines = [
        "Start = from the runner's decision to start a trial to the script's first line, and to the line "
        "after its imports (ready); trial = a whole no-op trial through `TrialRunner.run` (claim, events, "
        "code copy, config.json, process, results zip and upload) on a real Redis, back to back. Median / "
        "p90 in ms. Spare interpreter: started while the slot's previous trial ran (for `start`, "
        f"{SPARE_LEAD_S:g} s before; for whole no-op trials back to back, only as long as the previous "
        "trial). Forkserver: one server per worker process, started once (its preload) and then forked "
        "per trial. Function: the same no-op as a function called in the slot's kept process (its start, "
        "once, includes the module's import); its first line is the function's.",
        "",
        "| mode | reps | start: first line | start: ready | whole trial | server start (once) |",
        "|---|---|---|---|---|---|",
    ]
    for label, reps, first, ready, walls, server_start in rows:
        once = "-" if server_start is None else f"{server_start * 1000:.0f}"
        cells = [
            f"{first[0] * 1000:.1f} / {first[1] * 1000:.1f}",
            f"{ready[0] * 1000:.1f} / {ready[1] * 1000:.1f}",
            f"{walls[0] * 1000:.0f} / {walls[1] * 1000:.0f}",
        ]
        lines.append(f"| {label} | {reps} | {' | '.join(cells)} | {once} |")
    table = "\n".join(lines)
    print(table)
    print(f"load average before {' '.join(load_before)}, after {' '.join(load_after)}")
    if args.write_docs:
        note = (
            f"Command: `.venv/bin/python scripts/bench/trial_start.py --reps {args.reps} --torch-reps "
            f"{args.torch_reps} --write-docs`, {date.today()}, {os.cpu_count()} cores, "
            f"{platform.machine()}, Linux {platform.release()}, Python {platform.python_version()}; "
            "machine shared with other work, "
            f"load average (1/5/15 min) {' '.join(load_before)} before, {' '.join(load_after)} after."
        )
        replace_section(
            ROOT / "docs" / "benchmarks.md",
            "trial_start",
            "## Trial start-up: subprocess, spare interpreter, forkserver, function",
            table + "\n\n" + note,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
