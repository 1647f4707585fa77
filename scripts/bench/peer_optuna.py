"""The peer of the dispatch benchmarks: Optuna with JournalStorage on the same Redis.

`slots` worker processes (spawned, so each imports Optuna itself) load one study and, once all
are ready, run `study.optimize(objective, n_trials=trials/slots)` with a RandomSampler over the
same one-float space. The objective either sleeps in-process (Optuna's fastest mode) or runs the
same WMLA-contract script as our trials as a subprocess (config.json in, val_dict_list.json out:
the like-for-like comparison). The clock starts when the processes are released and stops when
the last `optimize` returns.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts.bench.service import MAIN, TRIALS_DIR, read_log
from scripts.bench.timing import Interval

OBJECTIVES = ("inprocess", "subprocess")


@dataclass
class PeerRun:
    trials: int
    slots: int
    t0: float
    t1: float
    intervals: list[Interval]
    complete: int
    objective: str


def _storage(url: str) -> Any:
    import warnings

    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalRedisBackend

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # the Redis journal backend is "experimental"
        return JournalStorage(JournalRedisBackend(url))


def _worker(
    url: str,
    study_name: str,
    n_trials: int,
    sleep_s: float,
    objective_kind: str,
    log_path: str,
    ready: Any,
    go: Any,
    out: Any,
) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(
        study_name=study_name, storage=_storage(url), sampler=optuna.samplers.RandomSampler(seed=os.getpid())
    )
    records: list[tuple[float, float]] = []
    script = str(TRIALS_DIR / MAIN)
    work = Path(tempfile.mkdtemp(prefix="optuna-trials-"))

    def inprocess(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        start = time.time()
        if sleep_s > 0:
            time.sleep(sleep_s)
        records.append((start, time.time()))
        return x

    def as_subprocess(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        folder = work / f"t{trial.number}"
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"x": x}))
        env = {
            **os.environ,
            "RESULT_DIR": str(folder),
            "BENCH_LOG": log_path,
            "BENCH_SLEEP": repr(sleep_s),
            "DLI_EXECID": f"optuna-{trial.number}",
        }
        subprocess.run([sys.executable, script], cwd=folder, env=env, check=True, stdin=subprocess.DEVNULL)
        points = json.loads((folder / "val_dict_list.json").read_text())
        return float(points[-1]["loss"])

    ready.release()
    go.wait()
    study.optimize(inprocess if objective_kind == "inprocess" else as_subprocess, n_trials=n_trials)
    out.put((os.getpid(), time.time(), records))


def run_optuna(
    *, trials: int, slots: int, sleep_s: float, redis_url: str, objective: str = "inprocess"
) -> PeerRun:
    """Run `trials` trials over `slots` processes; each process does its share (trials/slots)."""
    import optuna

    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = f"bench-{os.getpid()}-{time.time_ns()}"
    optuna.create_study(study_name=name, storage=_storage(redis_url), direction="minimize")
    shares = [trials // slots + (1 if i < trials % slots else 0) for i in range(slots)]
    ctx = mp.get_context("spawn")
    ready, go, out = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    with tempfile.TemporaryDirectory(prefix="optuna-bench-") as tmp:
        log_path = str(Path(tmp) / "trials.jsonl")
        procs = [
            ctx.Process(
                target=_worker, args=(redis_url, name, share, sleep_s, objective, log_path, ready, go, out)
            )
            for share in shares
        ]
        for p in procs:
            p.start()
        for _ in procs:
            if not ready.acquire(timeout=120):
                raise RuntimeError("an Optuna worker did not start")
        time.sleep(0.2)  # let every process reach go.wait()
        t0 = time.time()
        go.set()
        results = [out.get(timeout=6 * 3600) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        t1 = max(r[1] for r in results)
        if objective == "inprocess":
            intervals = [Interval(s, e, str(pid)) for pid, _, recs in results for s, e in recs]
        else:
            intervals = [Interval(r["start"], r["end"], str(r["ppid"])) for r in read_log(Path(log_path))]
    study = optuna.load_study(study_name=name, storage=_storage(redis_url))
    complete = sum(1 for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE)
    return PeerRun(trials, slots, t0, t1, intervals, complete, objective)
