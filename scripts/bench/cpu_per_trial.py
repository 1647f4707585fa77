"""CPU per no-op trial, by process, through the real stack (why throughput is what it is).

Runs one experiment of N no-op trials on 2 slots as scripts/bench/service.py does (`hpo run`'s
stack: this process is the coordinator, one Celery worker with its pool processes, forkserver
servers whose forked trials are counted when reaped, Redis at --redis-url) and reads each
process's user+system CPU time from /proc at the measured experiment's first coordinator tick
and at its end. Linux only.

    .venv/bin/python scripts/bench/cpu_per_trial.py [--trials 1000] [--mode forkserver] [--redis-url URL]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scripts.bench.machine import storage  # noqa: E402
from scripts.bench.service import WORKDIR, run_ours  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> tuple[float, float] | None:
    """(own user+system, reaped children's user+system) in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK, (int(fields[13]) + int(fields[14])) / TICK


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            out += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
    except OSError:
        pass
    return out


def _label(pid: int, me: int) -> str:
    if pid == me:
        return "coordinator (this process)"
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_text().split("\0")
    except OSError:
        return "?"
    text = " ".join(cmd)
    if "redis-server" in text:
        return "redis-server"
    if "forkserver_server.py" in text:
        return "forkserver server + its forked trials"
    if "function_server.py" in text:
        return "function server (the trials' calls)"
    if "app.cli worker" in text:
        return "Celery worker main" if me in _parents(pid) else "Celery pool process"
    return text[:60]


def _parents(pid: int) -> list[int]:
    try:
        return [int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])]
    except OSError:
        return []


def _snapshot(redis_pid: int | None) -> dict[int, tuple[str, tuple[float, float]]]:
    me, out, todo = os.getpid(), {}, [os.getpid()]
    while todo:
        pid = todo.pop()
        todo += _children(pid)
        cpu = _cpu(pid)
        if cpu is not None:
            out[pid] = (_label(pid, me), cpu)
    if redis_pid is not None and (cpu := _cpu(redis_pid)) is not None:
        out[redis_pid] = ("redis-server", cpu)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--mode", default="forkserver", choices=["subprocess", "forkserver", "function"])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9", help="flushed first")
    parser.add_argument("--workdir", type=Path, default=WORKDIR, help="where the run's home is made")
    args = parser.parse_args()
    found = subprocess.run(["pgrep", "-f", "redis-server"], capture_output=True, text=True).stdout.split()
    redis_pid = int(found[0]) if found else None  # the first Redis server on the machine, if any
    before: dict[int, tuple[str, tuple[float, float]]] = {}
    after: dict[int, tuple[str, tuple[float, float]]] = {}

    def progress(done: int, total: int) -> None:
        if not before:
            before.update(_snapshot(redis_pid))

    def at_end(*_: object) -> dict[str, object]:
        after.update(_snapshot(redis_pid))
        return {}

    import redis

    redis.Redis.from_url(args.redis_url).flushdb()  # the benchmark's experiment names repeat: start clean
    run = run_ours(trials=args.trials, slots=2, sleep_s=0.0, redis_url=args.redis_url, mode=args.mode,
                   progress=progress, after=at_end, workdir=args.workdir)  # fmt: skip
    n = args.trials
    totals: dict[str, float] = {}
    for pid, (label, (own, reaped)) in after.items():
        start = before.get(pid, (label, (0.0, 0.0)))[1]
        totals[label] = totals.get(label, 0.0) + (own - start[0]) + (reaped - start[1])
    wall = run.t1 - run.t0
    print(f"{n} no-op trials ({args.mode}) on 2 slots in {wall:.2f} s: {n / wall:.1f} trials/s")
    print("| process | CPU ms per trial |\n|---|---|")
    for label, seconds in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"| {label} | {1000 * seconds / n:.2f} |")
    print(f"| all | {1000 * sum(totals.values()) / n:.2f} |")
    load = os.getloadavg()[0]
    print(f"(CPU time of the measured experiment only; {os.cpu_count()} cores, load {load:.2f})")
    print(f"({storage(args.workdir)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
