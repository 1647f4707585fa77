"""Native `model.mode` / `model.preload` / `model.function`: validated with the field named, carried
to the worker."""

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
        ({"mode": "fork"}, "model.mode: must be one of forkserver, function, subprocess, got 'fork'"),
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
    assert spec.warnings == ("ignored model.preload: used only with mode: forkserver or function",)


def test_the_task_carries_the_mode_and_a_task_without_it_is_a_subprocess() -> None:
    spec = parse_spec(_native(mode="forkserver", preload=["numpy"]))
    experiment = SimpleNamespace(name="e", owner=None)
    trial = SimpleNamespace(id=1, exec_id="e-1", number=0, attempt=1, params={"lr": 0.01})
    task = build_task(experiment, spec, trial, CodeRef(sha256="0" * 64, filename="t.py"))  # type: ignore[arg-type]
    assert (task.mode, task.preload) == ("forkserver", ["numpy"])
    old = task.model_dump(exclude={"mode", "preload"})  # from a coordinator that predates the fields
    assert TrialTask.model_validate(old).mode == "subprocess"


def test_a_function_implies_mode_function() -> None:
    spec = parse_spec(_native(function="train"))
    assert (spec.model.mode, spec.model.function, spec.model.main) == ("function", "train", "train.py")
    assert spec.warnings == ()
    spec = parse_spec(_native(mode="Function", function=" objective ", preload=["numpy", "torch"]))
    assert (spec.model.mode, spec.model.function) == ("function", "objective")
    assert spec.model.preload == ("numpy", "torch") and spec.warnings == ()  # imported by the process
    assert parse_spec(_native()).model.function is None


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (
            {"mode": "function"},
            ["model.function: is required with mode: function (the name of the callable in main)"],
        ),
        (
            {"mode": "subprocess", "function": "train"},
            ["model.function: is used only with mode: function, not mode: subprocess"],
        ),
        (
            {"mode": "forkserver", "function": "train"},
            ["model.function: is used only with mode: function, not mode: forkserver"],
        ),
        (
            {"main": "train.sh", "function": "train"},
            ["model.main: must be a .py file with mode: function, got 'train.sh'"],
        ),
        (
            {"function": "train-model"},
            ["model.function: must be the name of a function in main, like train, got 'train-model'"],
        ),
        (
            {"mode": "function", "function": "mod.train"},
            ["model.function: must be the name of a function in main, like train, got 'mod.train'"],
        ),
        ({"mode": "function", "function": 3}, ["model.function: must be a string, got 3"]),
        (
            {"function": "class"},  # a keyword is no function name
            ["model.function: must be the name of a function in main, like train, got 'class'"],
        ),
    ],
)
def test_bad_function_settings_name_the_field(model: dict[str, Any], expected: list[str]) -> None:
    assert _problems(_native(**model)) == expected


def test_the_task_carries_the_function() -> None:
    spec = parse_spec(_native(function="train", preload=["numpy"]))
    experiment = SimpleNamespace(name="e", owner=None)
    trial = SimpleNamespace(id=1, exec_id="e-1", number=0, attempt=1, params={"lr": 0.01})
    task = build_task(experiment, spec, trial, CodeRef(sha256="0" * 64, filename="t.py"))  # type: ignore[arg-type]
    assert (task.mode, task.function, task.preload, task.main) == ("function", "train", ["numpy"], "train.py")
    old = task.model_dump(exclude={"function"})  # from a coordinator that predates the field
    assert TrialTask.model_validate(old).function is None
