"""Our side of the dispatch benchmarks: one experiment through the real service.

The stack is `hpo run`'s (app.local_stack.LocalStack): the given Redis, a SQLite store in a
temporary folder, one real Celery worker process with N slots (`hpo worker`), and the
coordinator driving the experiment in this process, exactly as `hpo run` drives it. A warm-up
experiment of `slots` trials runs first (worker start-up, code cache), then the clock starts at
the measured experiment's submission and stops when the coordinator has finished it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.codepack import pack_directory
from app.config import Settings
from app.local_stack import LocalStack
from app.services.experiments import submit
from app.spec import ExperimentSpec, SpecError, parse_spec
from app.store.models import Experiment, TrialState
from scripts.bench.machine import peak_rss_mb, rss_mb
from scripts.bench.timing import Interval

TRIALS_DIR = Path(__file__).resolve().parent / "trials"
# Where a run's home (trial directories, SQLite, results) is made unless told: the temp folder.
# What a new file costs there is part of what a trial costs (machine.storage reports it).
WORKDIR = Path(tempfile.gettempdir())
MAIN = "noop.py"
FUNCTION_MAIN, FUNCTION = "noop_fn.py", "trial"  # mode function: the same trial as a function
MODES = ("subprocess", "forkserver", "function")


class ModeUnsupported(Exception):
    """The spec parser does not accept the requested trial mode (yet)."""


@dataclass
class OursRun:
    trials: int
    slots: int
    t0: float
    t1: float
    intervals: list[Interval]
    states: dict[str, int]
    coordinator_peak_mb: float | None = None  # this process's VmHWM (the coordinator runs here)
    worker_peak_mb: float | None = None  # the Celery worker's main process VmHWM
    rss_trace: list[tuple[int, float]] = field(default_factory=list)  # (trials done, RSS MB)
    db_bytes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def bench_spec(
    *, trials: int, parallel: int, sleep_s: float, mode: str, log_path: Path | None, name: str
) -> ExperimentSpec:
    """The native spec of a benchmark experiment; ModeUnsupported when `mode` is not accepted."""
    model: dict[str, Any] = {"main": MAIN, "dir": "trials"}
    if mode != "subprocess":
        model.update({"mode": mode, "preload": ["json"]})
    if mode == "function":
        model.update({"main": FUNCTION_MAIN, "function": FUNCTION})
    env = {"BENCH_SLEEP": repr(float(sleep_s))}
    if log_path is not None:
        env["BENCH_LOG"] = str(log_path)
    raw = {
        "name": name,
        "model": model,
        "algorithm": {"name": "random", "seed": 1},
        "objective": {"metric": "loss", "direction": "minimize"},
        "max_trials": trials,
        "max_parallel": parallel,
        "env": env,
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
    }
    try:
        spec = parse_spec(raw)
    except SpecError as exc:
        if mode != "subprocess":
            raise ModeUnsupported(f"`model: {{mode: {mode}}}` is refused by the spec parser: {exc}") from exc
        raise
    if mode != "subprocess":
        ignored = [w for w in spec.warnings if "mode" in w or "preload" in w]
        if ignored or getattr(spec.model, "mode", None) != mode:
            why = "; ".join(ignored) or "the parsed launcher has no `mode`"
            raise ModeUnsupported(f"`model: {{mode: {mode}}}` is not accepted by the spec parser yet ({why})")
    return spec


@contextlib.contextmanager
def redis_or_private(url: str | None) -> Iterator[str]:
    """`url`, or a private Redis started for the run (and stopped after it) when none is given."""
    if url is not None:
        yield url
        return
    from app.broker import EmbeddedRedis

    with tempfile.TemporaryDirectory(prefix="hpo-bench-redis-") as tmp:
        embedded = EmbeddedRedis(Path(tmp) / "redis").start()
        try:
            yield embedded.url
        finally:
            embedded.stop()


def check_mode(mode: str) -> None:
    """Raise ModeUnsupported early, before any stack is started."""
    bench_spec(trials=1, parallel=1, sleep_s=0.0, mode=mode, log_path=None, name="probe")


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def drive(stack: LocalStack, exp: Experiment, on_tick: Callable[[Any], None] | None) -> float:
    """Run a coordinator for `exp` until it has finished it; the time it noticed."""
    assert exp.id is not None
    coordinator = stack.coordinator(only=[exp.id])
    done: list[float] = []
    deadline = time.monotonic() + 6 * 3600

    def finished() -> bool:
        if exp.id in coordinator.finished:
            done.append(time.time())
            return True
        lost = stack.worker_lost()
        if lost or time.monotonic() > deadline:
            raise RuntimeError(lost or "the experiment did not finish in time")
        return False

    try:
        coordinator.run(should_stop=finished, on_tick=on_tick)
    finally:
        coordinator.close()
    return done[0]


def run_ours(
    *,
    trials: int,
    slots: int,
    sleep_s: float,
    redis_url: str,
    mode: str = "subprocess",
    parallel: int | None = None,
    after: Callable[[LocalStack, Experiment, Path], dict[str, Any]] | None = None,
    progress: Callable[[int, int], None] | None = None,
    workdir: Path = WORKDIR,
) -> OursRun:
    """One measured experiment of `trials` trials on `slots` slots, its home in a fresh folder under
    `workdir`; `after` runs with the stack up."""
    parallel = parallel or slots
    check_mode(mode)
    code = pack_directory(TRIALS_DIR, "trials")
    workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hpo-bench-", dir=workdir) as tmp:
        home = Path(tmp)
        settings = Settings(home=home, broker_url=redis_url)
        stack = LocalStack(settings, slots=slots, queues=["trials.cpu"], gpus=[])
        with stack:
            warm = bench_spec(
                trials=slots, parallel=slots, sleep_s=0.0, mode=mode, log_path=None, name="bench-warmup"
            )
            drive(stack, submit(stack.store, warm, code, "trials.modelDir.tar"), None)
            log_path = home / "trials.jsonl"
            spec = bench_spec(
                trials=trials, parallel=parallel, sleep_s=sleep_s, mode=mode, log_path=log_path, name="bench"
            )
            trace: list[tuple[int, float]] = []
            next_sample = [0.0]
            pid = os.getpid()

            def on_tick(coordinator: Any) -> None:
                now = time.monotonic()
                if now < next_sample[0]:
                    return
                next_sample[0] = now + 0.5
                rt = coordinator.runtimes.get(exp.id)
                done = 0 if rt is None else rt.counts.finished + rt.counts.failed
                value = rss_mb(pid)
                if value is not None:
                    trace.append((done, value))
                if progress is not None:
                    progress(done, trials)

            t0 = time.time()
            exp = submit(stack.store, spec, code, "trials.modelDir.tar")
            t1 = drive(stack, exp, on_tick)
            coordinator_peak = peak_rss_mb(pid)
            assert exp.id is not None
            states: dict[str, int] = {}
            for t in stack.store.trials(exp.id):
                states[t.state] = states.get(t.state, 0) + 1
            worker = stack.worker
            worker_peak = peak_rss_mb(worker.proc.pid) if worker and worker.proc else None
            records = read_log(log_path)
            # a subprocess trial's parent is its slot's pool process; a forked trial's is not known
            # to be one per slot, so those are assigned to slots by time (timing.assign_slots)
            intervals = [
                Interval(r["start"], r["end"], str(r["ppid"]) if mode == "subprocess" else None)
                for r in records
            ]
            db_bytes = sum(p.stat().st_size for p in home.glob("hpo.db*") if p.is_file())  # + WAL
            extra = after(stack, exp, home) if after is not None else {}
            return OursRun(
                trials=trials,
                slots=slots,
                t0=t0,
                t1=t1,
                intervals=intervals,
                states=states,
                coordinator_peak_mb=coordinator_peak,
                worker_peak_mb=worker_peak,
                rss_trace=trace,
                db_bytes=db_bytes,
                extra=extra,
            )


def finished_count(run: OursRun) -> int:
    return run.states.get(TrialState.FINISHED, 0)
