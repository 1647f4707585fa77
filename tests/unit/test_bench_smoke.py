"""The dispatch benchmark end to end at a tiny size, and its pieces that need no service."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.spec import parse_spec
from scripts.bench.service import MAIN, TRIALS_DIR, ModeUnsupported, bench_spec

ROOT = Path(__file__).resolve().parents[2]


def test_noop_trial_follows_the_wmla_contract(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"x": 0.25}))
    log = tmp_path / "log.jsonl"
    env = {**os.environ, "RESULT_DIR": str(tmp_path), "BENCH_LOG": str(log), "BENCH_SLEEP": "0.05",
           "DLI_EXECID": "e-1"}  # fmt: skip
    subprocess.run([sys.executable, str(TRIALS_DIR / MAIN)], cwd=tmp_path, env=env, check=True)
    assert json.loads((tmp_path / "val_dict_list.json").read_text()) == [{"steps": 1, "loss": 0.25}]
    (line,) = log.read_text().splitlines()
    record = json.loads(line)
    assert record["id"] == "e-1"
    assert 0.05 <= record["end"] - record["start"] < 1.0


def test_bench_spec_and_trial_modes() -> None:
    spec = bench_spec(trials=10, parallel=2, sleep_s=0.5, mode="subprocess", log_path=None, name="b")
    assert spec.limits.max_trials == 10 and spec.env["BENCH_SLEEP"] == "0.5"
    assert not spec.warnings
    # forkserver: either the parser takes `model.mode`, or the harness says it does not
    raw = {
        "model": {"main": MAIN, "mode": "forkserver"},
        "algorithm": {"name": "random"},
        "objective": {"metric": "loss", "direction": "minimize"},
        "space": {"x": {"type": "float", "low": 0, "high": 1}},
        "max_trials": 1,
    }
    accepted = getattr(parse_spec(raw).model, "mode", None) == "forkserver"
    try:
        fork = bench_spec(trials=10, parallel=2, sleep_s=0.0, mode="forkserver", log_path=None, name="b")
    except ModeUnsupported as exc:
        assert not accepted
        assert "forkserver" in str(exc)
    else:
        assert accepted and fork.model.mode == "forkserver"  # type: ignore[attr-defined]


@pytest.mark.slow
def test_throughput_end_to_end_with_a_private_redis() -> None:
    """`throughput --trials 20 --pairs 1`: our service and Optuna both finish every trial; a table
    is printed, and the bar is checked on the median of the table's pair and one more."""
    proc = subprocess.run(
        [sys.executable, "-m", "scripts.bench", "throughput", "--trials", "20", "--pairs", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "20/20" in line]
    assert len(rows) == 2, proc.stdout
    assert "subprocess (WMLA script)" in rows[0] and "in-process objective" in rows[1]
    assert "throughput:" in proc.stdout and "Per-trial overhead =" in proc.stdout
    assert "then 1 more, alternating which side goes first" in proc.stdout
    assert "median of 2 pairs" in proc.stdout
