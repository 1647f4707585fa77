"""scripts/enqueue.py: variants from sweeps, and end to end against a real `hpo serve`."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from app.spec import parse_spec

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "enqueue.py"
QUAD = ROOT / "tests" / "fixtures" / "quad"
DIGITS = ROOT / "examples" / "digits"
QUAD_SPEC = """
model: {main: train.py}
algorithm: {name: random, seed: 1}
objective: {metric: loss, direction: minimize}
max_trials: 6
max_parallel: 2
space:
  x: {type: float, low: 0.0, high: 1.0}
  y: {type: float, low: 0.0, high: 1.0}
  c: {type: categorical, choices: [a, b]}
"""


def _module():
    spec = importlib.util.spec_from_file_location("enqueue", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _run(args: list[str], password: str | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPO_")}
    env.update(PYTHONPATH=str(ROOT), COLUMNS="200", HPO_CREDENTIALS="/nonexistent/credentials")
    if password is not None:
        env["HPO_PASSWORD"] = password
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def test_sweeps_fix_or_narrow_parameters_in_both_spec_forms() -> None:
    enqueue = _module()
    variants = enqueue.build_variants(
        [DIGITS / "experiment.yaml", DIGITS / "experiment.json"],
        ["hidden_size=32,128", "learning_rate=1e-3:1e-2"],
        ["max_trials=3", "algoDef.maxJobNum=3"],
        "t",
    )
    assert [name for name, _ in variants] == [
        f"t-experiment.{kind}-hidden_size-{size}-learning_rate-1e-3_1e-2"
        for kind in ("yaml", "json")
        for size in (32, 128)
    ]
    for name, doc in variants:
        spec = parse_spec(doc)
        assert list(spec.space["hidden_size"].choices) == [int(name.split("-")[3])]
        assert spec.limits.max_trials == 3, name
    native = [doc for _, doc in variants if "space" in doc]
    assert native[0]["space"]["learning_rate"] == {"type": "float", "low": 0.001, "high": 0.01, "log": True}
    assert native[0]["space"]["hidden_size"] == {"type": "categorical", "choices": [32]}
    wmla = [doc for _, doc in variants if "hyperParams" in doc]
    lr = next(p for p in wmla[0]["hyperParams"] if p["name"] == "learning_rate")
    assert (lr["minDbVal"], lr["maxDbVal"], lr["power"]) == (0.001, 0.01, "10")  # exponents, as the spec's


def test_bad_values_are_refused_before_anything_is_submitted() -> None:
    proc = _run([str(DIGITS / "experiment.json"), "--model-dir", str(DIGITS), "--sweep", "hidden_size=abc",
                 "--url", "http://127.0.0.1:9"])  # fmt: skip
    assert proc.returncode == 2
    assert "hyperParams[2].discreteIntVal[0]: must be an integer" in proc.stderr
    proc = _run([str(DIGITS / "experiment.yaml"), "--model-dir", str(DIGITS), "--sweep", "hidden_size=1.5"])
    assert proc.returncode == 2 and "hidden_size: an int parameter takes a whole number" in proc.stderr


def test_a_sweep_end_to_end(live_server, tmp_path: Path) -> None:
    spec = tmp_path / "quad.yaml"
    spec.write_text(QUAD_SPEC)
    prefix = f"enq-{uuid.uuid4().hex[:6]}"
    args = [str(spec), "--model-dir", str(QUAD), "--sweep", "c=a,b", "--set", "max_trials=2", "--prefix",
            prefix, "--url", live_server.url, "--user", "alice", "--poll", "0.5", "--json"]  # fmt: skip
    proc = _run(args, password=live_server.users["alice"])
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "best results" in proc.stdout
    for c in ("a", "b"):
        assert f"submitted {prefix}-c-{c}" in proc.stderr
        row = next(line for line in proc.stdout.splitlines() if f"{prefix}-c-{c} " in line)
        assert "FINISHED" in row and "2 ok" in row and f"c={c}" in row
    assert f"{prefix}-c-a" in proc.stderr and "2/2" in proc.stderr  # the progress bars
    rows = {row["name"]: row for row in json.loads(proc.stdout.splitlines()[-1])}
    a, b = rows[f"{prefix}-c-a"], rows[f"{prefix}-c-b"]
    assert a["best_params"]["c"] == "a" and b["best_params"]["c"] == "b"
    # the same seed proposes the same x and y in both; c=b costs exactly 0.5 more (tests/fixtures/quad)
    assert b["best_value"] - a["best_value"] == pytest.approx(0.5)


def test_exit_1_when_an_experiment_ends_without_a_result(live_server, tmp_path: Path) -> None:
    spec = tmp_path / "quad.yaml"
    spec.write_text(QUAD_SPEC)
    name = f"enq-fail-{uuid.uuid4().hex[:6]}"
    args = [str(spec), "--model-dir", str(QUAD), "--set", "space.mode={choices: [exit1]}", "--set",
            "max_trials=1", "--prefix", name, "--url", live_server.url, "--user", "alice",
            "--poll", "0.5"]  # fmt: skip
    proc = _run(args, password=live_server.users["alice"])
    assert proc.returncode == 1, proc.stderr + proc.stdout
    row = next(line for line in proc.stdout.splitlines() if name in line)
    assert "FINISHED" in row and "1 failed" in row
