"""Early-stopping schedulers in both spec forms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.spec import SpecError, parse_spec
from app.spec.model import SchedulerSpec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "wmla"


def _native(**scheduler) -> dict:
    return {
        "model": {"main": "train.py"},
        "algorithm": {"name": "tpe", "seed": 1},
        "objective": {"metric": "loss", "direction": "minimize"},
        "space": {"lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True}},
        "scheduler": scheduler,
    }


def _wmla(*params: tuple[str, str], algorithm: str = "TPE") -> dict:
    data = json.loads((FIXTURES / "hpo_submit_random_pytorch_mnist_learning_journey.json").read_text())
    data["algoDef"]["algorithm"] = algorithm
    data["algoDef"]["algoParams"] = [{"name": n, "value": v} for n, v in params]
    return data


def test_native_scheduler() -> None:
    spec = parse_spec(_native(type="ASHA", resource="epochs", max=27, eta=3, grace=1, brackets=2))
    assert spec.scheduler == SchedulerSpec(type="asha", resource="epochs", max=27, eta=3, grace=1, brackets=2)
    median = parse_spec(_native(type="median", max=10, grace=2, min_samples=4)).scheduler
    assert median is not None and median.min_samples == 4 and median.resource is None


def test_wmla_early_stop_composes_with_any_searcher() -> None:
    spec = parse_spec(
        _wmla(("EarlyStop", "ASHA"), ("ResourceName", "epochs"), ("ResourceValue", "27"), ("WarmUp", "5"))
    )
    assert spec.scheduler == SchedulerSpec(type="asha", resource="epochs", max=27)
    assert spec.algorithm.name == "tpe" and spec.warnings == ()  # consumed, not "unused"


@pytest.mark.parametrize(
    ("scheduler", "path", "fragment"),
    [
        ({"type": "hyperband"}, "scheduler.type", "asha or median"),
        ({"type": "asha", "max": 0}, "scheduler.max", "> 0"),
        ({"type": "asha", "eta": 1}, "scheduler.eta", "> 1"),
        ({"type": "asha", "max": 9, "grace": 9}, "scheduler.grace", "smaller than max"),
        ({"type": "asha", "max": 9, "grace": 1, "brackets": 3}, "scheduler.brackets", "at most 2"),
        ({"type": "median", "min_samples": 0}, "scheduler.min_samples", "integer"),
        ({"type": "asha", "resource": "../x"}, "scheduler.resource", "config.json key"),
        ({"type": "asha", "max": "many"}, "scheduler.max", "> 0"),
    ],
)
def test_bad_native_scheduler(scheduler: dict, path: str, fragment: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(_native(**scheduler))
    assert any(p.path == path and fragment in p.message for p in err.value.problems), err.value


def test_bad_wmla_early_stop() -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(_wmla(("EarlyStop", "ASHA"), ("ResourceValue", "-3")))
    assert [str(p) for p in err.value.problems] == [
        "algoDef.algoParams[1].value (ResourceValue): must be a number > 0, got '-3'"
    ]
    with pytest.raises(SpecError) as err:
        parse_spec(
            _wmla(
                ("EarlyStop", "ASHA"),
                ("ResourceName", "epochs"),
                ("ResourceValue", "9"),
                algorithm="Hyperband",
            )
        )
    assert any("cannot be combined with Hyperband" in p.message for p in err.value.problems)
