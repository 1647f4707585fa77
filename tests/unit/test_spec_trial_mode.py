"""Native `model.mode` / `model.preload`: validated with the field named, carried to the worker."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from app.coordinator.dispatch import build_task
from app.messages import CodeRef, TrialTask
from app.spec import SpecError, parse_spec


def _native(**model: Any) -> dict[str, Any]:
    return {
        "model": {"main": "train.py", **model},
        "algorithm": "random",
        "objective": {"metric": "loss", "direction": "minimize"},
        "max_trials": 3,
        "space": {"lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True}},
    }


def _problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as err:
        parse_spec(data)
    return [f"{p.path}: {p.message}" for p in err.value.problems]


def test_subprocess_is_the_default_and_forkserver_is_opt_in() -> None:
    assert parse_spec(_native()).model.mode == "subprocess"
    spec = parse_spec(_native(mode="ForkServer", preload=["torch", "numpy", "torch.nn", "numpy"]))
    assert spec.model.mode == "forkserver" and spec.model.preload == ("torch", "numpy", "torch.nn")
    assert parse_spec(_native(mode="forkserver", preload="torch, numpy")).model.preload == ("torch", "numpy")


def test_wmla_payloads_stay_subprocess() -> None:
    data = {
        "modelSpec": {"args": "--exec-start PyTorch --model-main train.py --model-dir m"},
        "algoDef": {
            "algorithm": "Random",
            "maxJobNum": 2,
            "objectiveMetric": "loss",
            "objective": "minimize",
        },
        "hyperParams": [
            {"name": "lr", "type": "Range", "dataType": "DOUBLE", "minDbVal": 0.1, "maxDbVal": 0.5}
        ],
    }
    assert parse_spec(data).model.mode == "subprocess"


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ({"mode": "fork"}, "model.mode: must be one of forkserver, subprocess, got 'fork'"),
        ({"mode": 3}, "model.mode: must be a string, got 3"),
        (
            {"mode": "forkserver", "preload": {"a": 1}},
            "model.preload: must be a list of module names, got an object",
        ),
        (
            {"mode": "forkserver", "preload": ["torch", "os.path/x"]},
            "model.preload[1]: must be a module name like numpy or torch.nn, got 'os.path/x'",
        ),
        (
            {"mode": "forkserver", "preload": [7]},
            "model.preload[0]: must be a module name like numpy or torch.nn, got 7",
        ),
        (
            {"mode": "forkserver", "preload": "np; rm"},
            "model.preload: must be a module name like numpy or torch.nn, got 'np; rm'",
        ),
    ],
)
def test_bad_values_name_the_field(model: dict[str, Any], expected: str) -> None:
    assert _problems(_native(**model)) == [expected]


def test_preload_without_forkserver_is_ignored_with_a_warning() -> None:
    spec = parse_spec(_native(preload=["torch"]))
    assert spec.model.preload == ()
    assert "ignored model.preload: used only with mode: forkserver" in spec.warnings


def test_the_task_carries_the_mode_and_a_task_without_it_is_a_subprocess() -> None:
    spec = parse_spec(_native(mode="forkserver", preload=["numpy"]))
    experiment = SimpleNamespace(name="e", owner=None)
    trial = SimpleNamespace(id=1, exec_id="e-1", number=0, attempt=1, params={"lr": 0.01})
    task = build_task(experiment, spec, trial, CodeRef(sha256="0" * 64, filename="t.py"))  # type: ignore[arg-type]
    assert (task.mode, task.preload) == ("forkserver", ["numpy"])
    old = task.model_dump(exclude={"mode", "preload"})  # from a coordinator that predates the fields
    assert TrialTask.model_validate(old).mode == "subprocess"
