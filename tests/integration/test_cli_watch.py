"""`hpo status NAME --watch` against a real `hpo serve --cpu` (the session's `live_server`): on a
terminal (a pty) and piped, until the experiment ends; exit 0 FINISHED, 1 STOPPED, 130 on Ctrl-C."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.client import HpoClient
from tests.conftest import LiveServer
from tests.helpers import QUAD, quad_spec_file

ROOT = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _spec(path: Path, **overrides: Any) -> Path:
    space = {
        "x": {"type": "float", "low": 0.0, "high": 1.0},
        "c": {"type": "categorical", "choices": ["a", "b"]},
        "sleep": {"type": "categorical", "choices": [3.0]},
    }
    options: dict[str, Any] = {"model": {"main": "train.py"}, "algorithm": {"name": "random", "seed": 11},
                               "max_trials": 4, "space": space}  # fmt: skip
    return quad_spec_file(path, **{**options, **overrides})


@pytest.fixture()
def alice(live_server: LiveServer) -> Iterator[HpoClient]:
    with HpoClient(live_server.url, user="alice", password=live_server.users["alice"]) as client:
        yield client


def _env(live_server: LiveServer, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPO_")}
    env.update(
        HPO_URL=live_server.url, HPO_USER="alice", HPO_PASSWORD=live_server.users["alice"],
        HPO_CREDENTIALS=str(tmp_path / "no-credentials"), PYTHONPATH=str(ROOT), COLUMNS="160", **extra,
    )  # fmt: skip
    return env


def _watch_cmd(name: str) -> list[str]:
    return [sys.executable, "-m", "app.cli", "status", name, "--watch", "--interval", "0.3"]


def _run_in_pty(cmd: list[str], env: dict[str, str], timeout_s: float) -> tuple[int, str]:
    """Run with a terminal as stdin/stdout/stderr (so rich draws its Live display); all it wrote."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env={**env, "TERM": "xterm"})
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return code, ANSI.sub("", b"".join(chunks).decode(errors="replace"))


def _first_line(proc: subprocess.Popen, timeout_s: float) -> str:
    """The first line a piped watcher prints (it prints one as soon as it has polled)."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    assert ready, "the watcher printed nothing"
    return proc.stdout.readline()


def test_watch_follows_an_experiment_until_it_finishes(
    live_server: LiveServer, alice: HpoClient, tmp_path: Path
) -> None:
    name = f"watch-ok-{uuid.uuid4().hex[:6]}"
    alice.submit(_spec(tmp_path / "ok.yaml"), QUAD, name=name)  # 4 trials of 3 s, 2 at a time
    env = _env(live_server, tmp_path)
    piped = subprocess.Popen(_watch_cmd(name), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, stdin=subprocess.DEVNULL)  # fmt: skip
    first = _first_line(piped, 60)
    assert re.match(r"(SUBMITTED|RUNNING) [0-3]/4 running", first), first  # it watches a live experiment
    code, screen = _run_in_pty(_watch_cmd(name), env, timeout_s=90)
    out, err = piped.communicate(timeout=30)
    out = first + out

    assert code == 0, screen
    assert "FINISHED" in screen and "4/4" in screen
    assert "━" in screen  # the progress bar
    assert re.search(r"elapsed[│\s]+\d+m\d\ds", screen)
    best = re.findall(r"best[│\s]+[\d.e-]+ \(#\d\)  (.*?)\s*│", screen)
    assert best and {p.split("=")[0] for p in best[-1].split()} == {"x", "c", "sleep"}, screen

    assert piped.returncode == 0, err
    lines = out.splitlines()
    progress = [line for line in lines if re.match(r"(SUBMITTED|RUNNING|FINISHED) \d/4 running", line)]
    assert len(progress) >= 2, out  # a line per change while it ran
    done = [int(line.split()[1].split("/")[0]) for line in progress]
    assert done == sorted(done) and done[0] < 4, out
    assert progress[-1].startswith("FINISHED 4/4 running 0 failed 0 best ")
    assert re.search(r"state[│\s]+FINISHED", out) and re.search(r"progress[│\s]+━+\s+4/4", out)
    assert alice.experiment(name)["state"] == "FINISHED"


def test_watch_exits_1_when_stopped_and_130_on_ctrl_c(
    live_server: LiveServer, alice: HpoClient, tmp_path: Path
) -> None:
    name = f"watch-hang-{uuid.uuid4().hex[:6]}"
    space = {
        "x": {"type": "float", "low": 0.0, "high": 1.0},
        "mode": {"type": "categorical", "choices": ["hang"]},
    }
    alice.submit(_spec(tmp_path / "hang.yaml", max_trials=2, max_parallel=1, space=space), QUAD, name=name)
    env = _env(live_server, tmp_path)
    popen = {"env": env, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True,
             "stdin": subprocess.DEVNULL}  # fmt: skip
    interrupted = subprocess.Popen(_watch_cmd(name), **popen)
    stopped = subprocess.Popen(_watch_cmd(name), **popen)
    try:
        first = {proc.pid: _first_line(proc, 60) for proc in (interrupted, stopped)}  # both are watching
        deadline = time.monotonic() + 30
        while alice.experiment(name)["counts"]["running"] < 1:
            assert time.monotonic() < deadline, "no trial started"
            time.sleep(0.3)
        interrupted.send_signal(signal.SIGINT)
        out, err = interrupted.communicate(timeout=15)
        assert interrupted.returncode == 130, err
        assert "interrupted" in err
        assert first[interrupted.pid].startswith(("SUBMITTED", "RUNNING"))

        alice.stop(name, force=True)
        out, err = stopped.communicate(timeout=30)
        assert stopped.returncode == 1, err
        assert first[stopped.pid].startswith(("SUBMITTED", "RUNNING"))
        assert re.search(r"^RUNNING 0/2 running 1 failed 0 best -$", first[stopped.pid] + out, re.M), out
        assert re.search(r"^STOPPED \d/2 running 0 failed \d best - \(stopped on request\)$", out, re.M), out
    finally:
        for proc in (interrupted, stopped):
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        if alice.experiment(name)["state"] not in ("FINISHED", "FAILED", "STOPPED"):
            alice.stop(name, force=True)
