"""WMLA Hyperband end to end: rungs as trials, promotions, checkpoints shipped between rungs."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from app.config import Settings
from app.store.artifacts import FileArtifactStore
from app.store.models import TrialState
from app.store.repository import Store
from tests.helpers import FIXTURES, drive, quad_spec, submit_quad

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.usefixtures("cpu_worker")
def test_first_bracket_promotes_the_best_and_rungs_resume(store: Store, settings: Settings) -> None:
    spec = quad_spec(
        algorithm={"name": "hyperband", "resource_name": "epochs", "resource_value": 9, "eta": 3, "seed": 4},
        max_trials=13,  # exactly the first bracket: 9 at 1 epoch, 3 at 3, 1 at 9
        max_parallel=1,  # with more slots the next bracket opens early while a rung waits
        space={
            "q": {"type": "float", "low": 0.0, "high": 1.0},
            "pause": {"type": "categorical", "choices": [0.05]},
        },
    )
    exp = submit_quad(store, spec, FIXTURES / "curve")
    drive(store, settings, [exp.id], timeout_s=120)
    trials = store.trials(exp.id)
    assert [t.params["epochs"] for t in trials] == [1] * 9 + [3] * 3 + [9]  # (never bundled: not asked ahead)
    assert all(t.state == TrialState.FINISHED for t in trials)
    first = sorted(trials[:9], key=lambda t: t.objective)
    promoted = {t.params["q"] for t in trials[9:12]}
    assert promoted == {t.params["q"] for t in first[:3]}  # the best third goes on
    assert trials[12].params["q"] == min(promoted)
    for t in trials[9:]:
        probe = json.loads(
            zipfile.ZipFile(
                io.BytesIO(FileArtifactStore(settings.artifacts_dir).get_result(t.result_path))
            ).read("probe.json")
        )
        previous = 1 if t.params["epochs"] == 3 else 3
        assert probe["resumed_from"] == previous, t.params  # continued from the shipped checkpoint
        steps = [p.step for p in store.metric_points(t.id)]  # this rung trained only the epochs after
        assert steps == list(range(previous + 1, t.params["epochs"] + 1))


def test_ibm_hyperband_payload_runs_with_the_digits_model(tmp_path: Path) -> None:
    """IBM's Hyperband payload with the digits example in place of its TensorFlow model."""
    payload = json.loads((FIXTURES / "wmla" / "hpo_submit_hyperband_tf_mnist.json").read_text())
    args = payload["modelSpec"]["args"]
    payload["modelSpec"]["args"] = args.replace("convolutional_network.py", "train.py").replace(
        "tf-model", "digits"
    )
    spec = tmp_path / "hyperband.json"
    spec.write_text(json.dumps(payload))
    model = tmp_path / "digits"
    shutil.copytree(ROOT / "examples" / "digits", model)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPO_")}
    env.update(HPO_HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "run", str(spec), "--model-dir", str(model), "--cpu", "--json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert summary["state"] == "FINISHED" and summary["trials"]["finished"] == 8  # maxJobNum 8
    best = summary["best"]["hyperParameters"]
    assert best["epochs"] == 1  # as IBM observed: the first bracket's rung 0 (81 configs at r = 1)
    assert 0.001 <= best["learning_rate"] <= 0.1
    assert (
        abs((best["learning_rate"] - 0.001) / 0.002 - round((best["learning_rate"] - 0.001) / 0.002)) < 1e-6
    )


@pytest.mark.usefixtures("cpu_worker")
def test_waiting_rungs_do_not_idle_slots(store: Store, settings: Settings) -> None:
    spec = quad_spec(
        algorithm={"name": "hyperband", "resource_name": "epochs", "resource_value": 9, "eta": 3, "seed": 4},
        max_trials=20,
        max_parallel=3,
        space={
            "q": {"type": "float", "low": 0.0, "high": 1.0},
            "pause": {"type": "categorical", "choices": [0.1]},
        },
    )
    exp = submit_quad(store, spec, FIXTURES / "curve")
    drive(store, settings, [exp.id], timeout_s=120)
    trials = store.trials(exp.id)
    assert len(trials) == 20 and all(t.state == TrialState.FINISHED for t in trials)
    ends = sorted(t.ended_at.timestamp() for t in trials)
    created = sorted(t.created_at.timestamp() for t in trials)
    assert max(created[i + 3] - ends[i] for i in range(len(trials) - 3)) < 2.0  # slots refilled at once
    budgets = [t.params["epochs"] for t in trials]
    assert budgets.count(9) >= 1 and set(budgets) == {1, 3, 9}
