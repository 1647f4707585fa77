"""The shipped examples parse and describe the same search."""

from __future__ import annotations

from pathlib import Path

from app.spec import load_spec

DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits"


def test_digits_specs_parse_to_the_same_search() -> None:
    wmla, native = load_spec(DIGITS / "experiment.json"), load_spec(DIGITS / "experiment.yaml")
    assert wmla.source == "wmla" and native.source == "native"
    for spec in (wmla, native):
        assert spec.algorithm.name == "tpe"
        assert spec.limits.max_trials == 12 and spec.limits.max_parallel == 2
        assert spec.objective.metric == "accuracy" and spec.objective.direction == "maximize"
        assert spec.model.main == "train.py" and spec.model.args == ("--epochs", "5")
        assert spec.space.names == ["learning_rate", "batch_size", "hidden_size", "optimizer"]
        assert spec.resources.is_cpu and spec.warnings == ()
        assert (DIGITS / spec.model.main).is_file()
    assert wmla.space["hidden_size"] == native.space["hidden_size"]
    assert wmla.space["optimizer"] == native.space["optimizer"]
    assert wmla.space["batch_size"].values() == native.space["batch_size"].values()


def test_early_stopping_examples_parse() -> None:
    hyperband = load_spec(DIGITS / "experiment_hyperband.json")
    assert hyperband.algorithm.name == "hyperband" and hyperband.algorithm.params["ResourceName"] == "epochs"
    asha = load_spec(DIGITS / "experiment_asha.yaml")
    assert asha.scheduler is not None
    assert asha.scheduler.type == "asha" and asha.scheduler.resource == "epochs"
    assert asha.warnings == () and hyperband.warnings == ()


def test_guide_specs_parse() -> None:
    full, quick = load_spec(DIGITS / "experiment.yaml"), load_spec(DIGITS / "quick.yaml")
    assert quick.space == full.space and quick.objective == full.objective  # the same search, smaller
    assert quick.limits.max_trials == 4 and quick.model.args == ("--epochs", "2") and quick.warnings == ()
    broken = load_spec(DIGITS / "experiment_broken.yaml")
    assert broken.algorithm.name == "grid" and broken.warnings == ()
    assert "lbfgs" in broken.space["optimizer"].choices  # the value train.py does not know


def test_the_function_example_parses_and_names_a_function_its_module_has() -> None:
    spec = load_spec(DIGITS / "experiment_function.yaml")
    assert spec.model.mode == "function" and spec.model.function == "train" and spec.warnings == ()
    source = (DIGITS / spec.model.main).read_text()
    assert f"def {spec.model.function}(config" in source
    quick = load_spec(DIGITS / "quick.yaml")
    assert spec.space.names[:4] == quick.space.names  # the same search, with epochs fixed
