"""WMLA payloads (IBM's own and variants) and the native form parse into the expected ExperimentSpec."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.space import CategoricalParam, NumericParam
from app.spec import ExperimentSpec, SpecError, load_spec, parse_spec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "wmla"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"hpo_submit_{name}.json").read_text())


def minimal(**algo: Any) -> dict[str, Any]:
    """The reference's minimal illustrative request, with algoDef overrides."""
    data: dict[str, Any] = {
        "modelSpec": {
            "sigName": "ig1",
            "args": "--exec-start PyTorch --model-main train.py --model-dir mymodel",
        },
        "algoDef": {
            "algorithm": "Random",
            "maxRunTime": 60,
            "maxJobNum": 10,
            "maxParalleJobNum": 2,
            "objectiveMetric": "loss",
            "objective": "minimize",
        },
        "hyperParams": [
            {
                "name": "learning_rate",
                "type": "Range",
                "dataType": "DOUBLE",
                "minDbVal": 0.001,
                "maxDbVal": 0.1,
            }
        ],
    }
    data["algoDef"].update(algo)
    return data


# --- IBM's payloads ----------------------------------------------------------------------
def test_random_pytorch_payload() -> None:
    data = fixture("random_pytorch_mnist_learning_journey")
    spec = parse_spec(data)
    assert spec.source == "wmla"
    assert spec.name is None
    assert spec.algorithm.name == "random"
    assert spec.algorithm.display_name == "Random"
    assert spec.limits.max_trials == 10
    assert spec.limits.max_parallel == 2
    assert spec.limits.max_run_time_s == 3600
    assert spec.objective.metric == "loss"
    assert spec.objective.direction == "minimize"
    [lr] = spec.space.params
    assert isinstance(lr, NumericParam)
    assert (lr.type, lr.name, lr.low, lr.high, lr.step, lr.power) == (
        "float",
        "learning_rate",
        0.001,
        0.1,
        None,
        None,
    )
    assert spec.model.main == "pytorch_mnist_HPO.py"
    assert spec.model.model_dir == "pytorch_hpo"
    assert spec.model.framework == "PyTorch"
    assert spec.model.python_version == "3.6"
    assert spec.model.sig_name == "spark233"
    assert spec.model.args == ()
    assert spec.model.data_path is None
    assert spec.model.options["debug-level"] == "debug"
    assert spec.resources.gpus == 1
    assert spec.resources.gpu_type == "any"
    assert spec.resources.queue == "trials.any.x1"
    assert spec.warnings == ()
    assert spec.raw == data


def test_hyperband_payload() -> None:
    spec = parse_spec(fixture("hyperband_tf_mnist"))
    assert spec.algorithm.name == "hyperband"
    assert spec.algorithm.eta == 3.0
    assert spec.algorithm.params == {"ResourceName": "epochs", "ResourceValue": "81"}
    assert spec.limits.max_trials == 8
    assert spec.limits.max_parallel == 4
    assert spec.limits.max_run_time_s is None
    [lr] = spec.space.params
    assert isinstance(lr, NumericParam)
    assert lr.type == "float"
    assert lr.step == 0.002  # "0.002" as a string in the payload
    assert lr.size == 50
    assert spec.model.main == "convolutional_network.py"
    assert spec.model.model_dir == "tf-model"
    assert spec.model.args == (
        "--trainImagesFile",
        "/dlidata/tf_mnist/train-images-idx3-ubyte.gz",
        "--trainLabelsFile",
        "/dlidata/tf_mnist/train-labels-idx1-ubyte.gz",
        "--testImagesFile",
        "/dlidata/tf_mnist/t10k-images-idx3-ubyte.gz",
        "--testLabelsFile",
        "/dlidata/tf_mnist/t10k-labels-idx1-ubyte.gz",
    )
    assert not any(a in spec.model.args for a in ("--debug-level", "debug", "--gpuPerWorker", "--exec-start"))
    assert spec.resources.queue == "trials.any.x1"
    assert spec.warnings == ()


def test_grid_payload_with_leftovers() -> None:
    spec = parse_spec(fixture("experimentgridsearch_tf_mnist"))
    assert spec.algorithm.name == "grid"
    assert spec.algorithm.display_name == "ExperimentGridSearch"
    assert spec.limits.max_trials == 2
    assert len(spec.space) == 0
    assert spec.model.model_dir is None
    assert spec.model.args[0] == "--trainImagesFile"
    assert len(spec.model.args) == 8
    assert spec.experiments == (
        {
            "learning_rate": 0.1,
            "optimizer": "Adam",
            "opt_decay": 0.4882855458519536,
            "beta1": 0.7,
            "beta2": 0.8982816529517174,
        },
        {"learning_rate": 0.2, "optimizer": "Adam"},
    )
    assert isinstance(spec.experiments[0]["learning_rate"], float)
    assert isinstance(spec.experiments[0]["optimizer"], str)
    joined = "\n".join(spec.warnings)
    assert "hyperbandEta" in joined
    assert "algoDef.algoParams[0] (ResourceName)" in joined
    assert "algoDef.algoParams[1] (ResourceValue)" in joined
    assert spec.algorithm.eta is None


def test_fixture_payloads_are_verbatim_copies() -> None:
    shared = Path(__file__).resolve().parents[3] / "shared" / "reference" / "wmla-payloads"
    if not shared.is_dir():
        pytest.skip("no shared reference checkout next to the repository")
    for path in FIXTURES.glob("*.json"):
        assert json.loads(path.read_text()) == json.loads((shared / path.name).read_text())


# --- variants ------------------------------------------------------------------------------
def test_minimal_request_and_defaults() -> None:
    data = minimal()
    del data["algoDef"]["maxParalleJobNum"]
    del data["algoDef"]["maxRunTime"]
    del data["algoDef"]["maxJobNum"]
    spec = parse_spec(data)
    assert spec.limits.max_parallel == 1
    assert spec.limits.max_trials is None
    assert spec.limits.max_run_time_s is None
    assert spec.resources.is_cpu
    assert spec.resources.queue == "trials.cpu"
    assert spec.model.sig_name == "ig1"


def test_max_paralle_job_variant() -> None:
    data = minimal()
    del data["algoDef"]["maxParalleJobNum"]
    data["algoDef"]["maxParalleJob"] = 3
    assert parse_spec(data).limits.max_parallel == 3
    data["algoDef"]["maxParalleJobNum"] = 3  # both, agreeing
    assert parse_spec(data).limits.max_parallel == 3


def test_fractional_minutes_and_extensions() -> None:
    data = minimal(maxRunTime=0.1, trialTimeout=30, killOnTimeout=True, syncBatches=True)
    limits = parse_spec(data).limits
    assert limits.max_run_time_s == pytest.approx(6.0)
    assert limits.trial_timeout_s == 30
    assert limits.kill_on_timeout is True
    assert limits.sync_batches is True


def test_case_insensitive_names() -> None:
    data = minimal(algorithm="tPe", objective="MAXIMIZE")
    data["hyperParams"] = [
        {"name": "lr", "type": "range", "dataType": "double", "minDbVal": 0.1, "maxDbVal": 1},
        {"name": "n", "type": "RANGE", "dataType": "Int", "minIntVal": 1, "maxIntVal": 4},
        {"name": "opt", "type": "DISCRETE", "dataType": "string", "discreateStrVal": ["sgd", "adam"]},
    ]
    spec = parse_spec(data)
    assert spec.algorithm.name == "tpe"
    assert spec.objective.direction == "maximize"
    assert spec.objective.sign == -1.0
    lr, n, opt = spec.space.params
    assert isinstance(lr, NumericParam) and lr.type == "float"
    assert isinstance(n, NumericParam) and n.type == "int" and n.values() == [1, 2, 3, 4]
    assert isinstance(opt, CategoricalParam) and opt.value_type == "str" and opt.choices == ("sgd", "adam")


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("Random", "random"),
        ("TPE", "tpe"),
        ("Tpe", "tpe"),
        ("bayesian", "bayesian"),
        ("HYPERBAND", "hyperband"),
        ("experimentGridSearch", "grid"),
    ],
)
def test_algorithm_names(given: str, canonical: str) -> None:
    data = minimal(algorithm=given)
    if canonical == "grid":
        data["experiments"] = [
            {"hyperParams": [{"name": "learning_rate", "dataType": "DOUBLE", "fixedVal": "0.1"}]}
        ]
    if canonical == "hyperband":  # its budget settings are required
        data["algoDef"]["algoParams"] = [
            {"name": "ResourceName", "value": "epochs"},
            {"name": "ResourceValue", "value": "9"},
        ]
    assert parse_spec(data).algorithm.name == canonical


def test_numbers_as_strings() -> None:
    data = minimal(
        algorithm="TPE", algoParams=[{"name": "WarmUp", "value": 5}, {"name": "GoodRatio", "value": "0.3"}]
    )
    data["hyperParams"] = [
        {
            "name": "lr",
            "type": "Range",
            "dataType": "DOUBLE",
            "minDbVal": "-2",
            "maxDbVal": "0",
            "power": "10",
        },
        {
            "name": "units",
            "type": "Range",
            "dataType": "INT",
            "minIntVal": 16,
            "maxIntVal": 256,
            "step": "16",
        },
        {"name": "b", "type": "Range", "dataType": "DOUBLE", "minDbVal": 0.01, "maxDbVal": 1.0, "step": 0.01},
    ]
    spec = parse_spec(data)
    lr, units, b = spec.space.params
    assert isinstance(lr, NumericParam) and (lr.low, lr.high, lr.power) == (-2.0, 0.0, 10.0)
    assert isinstance(units, NumericParam) and units.step == 16 and units.size == 16
    assert isinstance(b, NumericParam) and b.step == 0.01
    assert spec.algorithm.params == {"WarmUp": "5", "GoodRatio": "0.3"}


def test_zeros_in_unused_fields_are_ignored() -> None:
    data = minimal()
    data["hyperParams"] = [
        {
            "name": "batch",
            "type": "Discrete",
            "dataType": "INT",
            "minDbVal": 0,
            "maxDbVal": 0,
            "minIntVal": 0,
            "maxIntVal": 0,
            "discreteDbVal": [0.5],  # does not match dataType INT: ignored even when set
            "discreteIntVal": [32, 64, 128],
            "discreateStrVal": [],
            "step": "0",
            "power": "",
        },
        {
            "name": "lr",
            "type": "Range",
            "dataType": "DOUBLE",
            "minDbVal": 0.001,
            "maxDbVal": 0.1,
            "minIntVal": 0,
            "maxIntVal": 0,
            "discreteDbVal": [],
            "discreteIntVal": [],
            "discreateStrVal": [],
            "step": 0,
            "power": None,
        },
    ]
    spec = parse_spec(data)
    batch, lr = spec.space.params
    assert isinstance(batch, CategoricalParam)
    assert batch.choices == (32, 64, 128) and batch.value_type == "int"
    assert isinstance(lr, NumericParam) and lr.step is None and lr.power is None
    assert spec.warnings == ()


def test_discrete_double_values_are_floats_and_str_alias() -> None:
    data = minimal()
    data["hyperParams"] = [
        {"name": "drop", "type": "Discrete", "dataType": "DOUBLE", "discreteDbVal": [0, 0.5, "0.25"]},
        {"name": "opt", "type": "Discrete", "dataType": "STR", "discreteStrVal": ["sgd"]},
    ]
    drop, opt = parse_spec(data).space.params
    assert isinstance(drop, CategoricalParam) and drop.value_type == "double"
    assert drop.choices == (0.0, 0.5, 0.25)
    assert all(isinstance(c, float) for c in drop.choices)
    assert isinstance(opt, CategoricalParam) and opt.choices == ("sgd",)


def test_unknown_keys_are_warnings() -> None:
    data = minimal(foo=1)
    data["extra"] = True
    data["modelSpec"]["bar"] = "x"
    data["hyperParams"][0]["baz"] = 2
    data["hyperParams"][0]["userDefined"] = False  # echoed by WMLA responses: known
    spec = parse_spec(data)
    assert set(spec.warnings) == {
        "ignored unknown key extra",
        "ignored unknown key algoDef.foo",
        "ignored unknown key modelSpec.bar",
        "ignored unknown key hyperParams[0].baz",
    }


def test_experiments_ignored_with_warning_for_other_algorithms() -> None:
    data = minimal()
    data["experiments"] = [{"hyperParams": [{"name": "x", "dataType": "INT", "fixedVal": "1"}]}]
    spec = parse_spec(data)
    assert spec.experiments == ()
    assert any("experiments" in w for w in spec.warnings)


def test_grid_experiments_convert_types() -> None:
    data = minimal(algorithm="ExperimentGridSearch", maxJobNum=-1)
    del data["hyperParams"]
    data["experiments"] = [
        {"id": 1, "hyperParams": [{"name": "n", "dataType": "INT", "fixedVal": "3"}]},
        {
            "hyperParams": [
                {"name": "n", "dataType": "int", "fixedVal": 4},
                {"name": "s", "dataType": "STR", "fixedVal": 5},
            ]
        },
    ]
    spec = parse_spec(data)
    assert spec.limits.max_trials is None
    assert spec.experiments == ({"n": 3}, {"n": 4, "s": "5"})
    assert type(spec.experiments[0]["n"]) is int
    assert type(spec.experiments[1]["s"]) is str


def test_launcher_args() -> None:
    data = minimal()
    data["modelSpec"]["args"] = (
        "--exec-start=edtPyTorch --cs-datastore-meta type=fs,data_path=mnist --numWorker 2 "
        "--epochs 3 --model-main=src/train.py --edt-options maxWorkers=4 --appName app1 "
        "--batch-size 64 --model-dir mymodel --name 'two words'"
    )
    model = parse_spec(data).model
    assert model.main == "src/train.py"
    assert model.model_dir == "mymodel"
    assert model.framework == "edtPyTorch"
    assert model.data_path == "mnist"
    assert model.args == ("--epochs", "3", "--batch-size", "64", "--name", "two words")
    assert model.options == {
        "exec-start": "edtPyTorch",
        "cs-datastore-meta": "type=fs,data_path=mnist",
        "numWorker": "2",
        "model-main": "src/train.py",
        "edt-options": "maxWorkers=4",
        "appName": "app1",
        "model-dir": "mymodel",
    }


def test_launcher_args_as_list() -> None:
    data = minimal()
    data["modelSpec"]["args"] = ["--model-main", "train.py", "--lr", "0.1", "--workerDeviceNum", "2"]
    spec = parse_spec(data)
    assert spec.model.main == "train.py"
    assert spec.model.args == ("--lr", "0.1")
    assert spec.resources.queue == "trials.any.x2"


@pytest.mark.parametrize(
    ("sig_name", "queue"),
    [
        ("a100", "trials.a100.x1"),
        ("A100", "trials.a100.x1"),
        ("H-100", "trials.h100.x1"),
        ("ig1", "trials.any.x1"),
    ],
)
def test_sig_name_gpu_type(sig_name: str, queue: str) -> None:
    data = minimal()
    data["modelSpec"] = {"sigName": sig_name, "args": "--gpuPerWorker 1 --model-main train.py"}
    assert parse_spec(data).resources.queue == queue


def test_zero_gpus_is_cpu_even_with_gpu_sig_name() -> None:
    data = minimal()
    data["modelSpec"] = {"sigName": "a100", "args": "--gpuPerWorker 0 --model-main train.py"}
    assert parse_spec(data).resources.queue == "trials.cpu"


@pytest.mark.parametrize(
    ("args", "queue"),
    [("--gpuPerWorker 2 --numWorker 2", "trials.any.x4"),
     ("--gpuPerWorker 1 --edt-options maxWorkers=3,minWorkers=1", "trials.any.x3"),
     ("--gpuPerWorker 1 --numWorker 2 --edt-options maxWorkers=4", "trials.any.x2"),
     ("--numWorker 2", "trials.cpu")],
)  # fmt: skip
def test_distributed_training_asks_for_all_its_gpus(args: str, queue: str) -> None:
    data = minimal()
    data["modelSpec"] = {"args": f"{args} --model-main train.py"}
    spec = parse_spec(data)
    assert spec.resources.queue == queue and spec.resources.launcher == "torchrun"


def test_bad_edt_options_name_the_flag() -> None:
    data = minimal()
    data["modelSpec"] = {"args": "--gpuPerWorker 1 --edt-options maxWorkers=zero --model-main train.py"}
    with pytest.raises(SpecError, match="maxWorkers"):
        parse_spec(data)


def test_algo_params_validated_and_kept() -> None:
    data = minimal(
        algorithm="Bayesian",
        maxJobNum=20,
        algoParams=[
            {"name": "RandomSeed", "value": "7"},
            {"name": "InitPoints", "value": "5"},
            {"name": "Noiseless", "value": "false"},
            {"name": "CubeSize", "value": "2000"},
        ],
    )
    spec = parse_spec(data)
    assert spec.algorithm.params == {
        "RandomSeed": "7",
        "InitPoints": "5",
        "Noiseless": "false",
        "CubeSize": "2000",
    }
    assert spec.warnings == ()


def test_additional_metrics() -> None:
    data = minimal(additionalMetrics={"acc": "Maximize", "loss": "minimize", "time": "whatever"})
    spec = parse_spec(data)
    assert spec.objective.additional == {"acc": "maximize", "loss": "minimize", "time": "latest"}
    assert any("time" in w for w in spec.warnings)


def test_plugin_algorithm_hook() -> None:
    from app.spec.algorithms import installed_plugins

    data = minimal(algorithm="myPlugin", algoParams=[{"name": "random_seed", "value": 3}])
    with pytest.raises(SpecError):
        parse_spec(data)
    with installed_plugins({"MyPlugin"}):
        spec = parse_spec(data)
    assert parse_spec(minimal(algorithm="optuna:CmaEsSampler")).algorithm.name == "optuna:CmaEsSampler"
    assert spec.algorithm.name == "MyPlugin"
    assert spec.algorithm.params == {"random_seed": "3"}
    assert spec.warnings == ()


def test_native_gpu_type_defaults() -> None:
    base = yaml.safe_load(NATIVE_HYPERBAND)
    assert parse_spec(base | {"resources": {"gpu_type": "A-100"}}).resources.queue == "trials.a100.x1"
    assert parse_spec(base | {"resources": {"gpus": 2}}).resources.queue == "trials.any.x2"
    cpu = parse_spec(base | {"resources": {"gpu_type": "a100", "gpus": 0}})
    assert cpu.resources.queue == "trials.cpu"
    assert any("gpu_type" in w for w in cpu.warnings)
    assert parse_spec(base | {"resources": None}).resources.is_cpu
    own = parse_spec(base | {"resources": {"gpus": 2, "launcher": "Python"}}).resources
    assert own.launcher == "python" and own.queue == "trials.any.x2"
    with pytest.raises(SpecError, match="launcher"):
        parse_spec(base | {"resources": {"gpus": 2, "launcher": "mpirun"}})


def test_hpo_name() -> None:
    data = minimal()
    data["hpoName"] = "my-exp_1.2"
    assert parse_spec(data).name == "my-exp_1.2"


# --- native form ---------------------------------------------------------------------------
NATIVE_HYPERBAND = """
model:
  main: convolutional_network.py
  dir: tf-model
algorithm: {name: hyperband, eta: 3, resource_name: epochs, resource_value: 81}
objective: {metric: loss, direction: minimize}
max_trials: 8
max_parallel: 4
max_minutes: null
resources: {gpus: 1}
space:
  learning_rate: {type: float, low: 0.001, high: 0.1, step: 0.002}
"""


def test_native_equivalent_of_wmla_payload() -> None:
    wmla = parse_spec(fixture("hyperband_tf_mnist"))
    native = parse_spec(yaml.safe_load(NATIVE_HYPERBAND))
    assert native.source == "native"
    assert native.space == wmla.space
    assert native.limits == wmla.limits
    assert native.objective == wmla.objective
    assert native.algorithm == wmla.algorithm
    assert native.resources == wmla.resources
    assert native.model.main == wmla.model.main
    assert native.model.model_dir == wmla.model.model_dir


def test_native_full_form() -> None:
    data = yaml.safe_load(
        """
name: digits-tune
model:
  main: train.py
  dir: digits
  args: --epochs 5 --name 'a b'
  data_path: mnist
algorithm: {name: tpe, seed: 3, warm_up: 10, good_ratio: 0.3}
metric: accuracy
direction: Maximize
max_trials: -1
max_parallel: 2
max_minutes: 30
trial_timeout: 600
kill_on_timeout: true
sync_batches: false
resources: {gpu_type: a100, gpus: 2}
env: {OMP_NUM_THREADS: 4, MODE: fast}
space:
  lr: {type: float, low: 1.0e-4, high: 0.1, log: true}
  hidden: {type: int, low: 16, high: 256, step: 16}
  batch: {type: integer, low: 16, high: 256, log: true}
  wd: {type: double, low: -6, high: -2, power: 10}
  opt: {type: choice, choices: [sgd, adam]}
  depth: {choices: [1, 2, 3]}
  drop: {type: cat, choices: [0, 0.5]}
  small: {type: float, low: 1e-5, high: 1e-3}
"""
    )
    spec = parse_spec(data)
    assert spec.name == "digits-tune"
    assert spec.model.main == "train.py" and spec.model.model_dir == "digits"
    assert spec.model.args == ("--epochs", "5", "--name", "a b")
    assert spec.model.data_path == "mnist"
    assert spec.algorithm.name == "tpe"
    assert spec.algorithm.params == {"RandomSeed": "3", "WarmUp": "10", "GoodRatio": "0.3"}
    assert spec.objective.metric == "accuracy" and spec.objective.direction == "maximize"
    assert spec.limits.max_trials is None
    assert spec.limits.max_parallel == 2
    assert spec.limits.max_run_time_s == 1800
    assert spec.limits.trial_timeout_s == 600
    assert spec.limits.kill_on_timeout is True
    assert spec.resources.queue == "trials.a100.x2"
    assert spec.env == {"OMP_NUM_THREADS": "4", "MODE": "fast"}
    p = {param.name: param for param in spec.space.params}
    assert p["lr"].log is True and p["lr"].type == "float"
    assert p["hidden"].step == 16 and p["hidden"].type == "int"
    assert p["batch"].log is True and p["batch"].type == "int"
    assert p["wd"].power == 10
    assert p["opt"].choices == ("sgd", "adam") and p["opt"].value_type == "str"
    assert p["depth"].choices == (1, 2, 3) and p["depth"].value_type == "int"
    assert p["drop"].choices == (0.0, 0.5) and p["drop"].value_type == "double"
    assert (p["small"].low, p["small"].high) == (1e-5, 1e-3)  # PyYAML reads 1e-5 as a string
    assert spec.warnings == ()


def test_native_grid_over_finite_space_and_experiments() -> None:
    base: dict[str, Any] = {
        "model": "train.py",
        "algorithm": "grid",
        "objective": {"metric": "loss", "direction": "minimize"},
        "space": {
            "n": {"type": "int", "low": 1, "high": 3},
            "opt": {"type": "categorical", "choices": ["a", "b"]},
        },
    }
    spec = parse_spec(base)
    assert spec.space.size == 6 and spec.experiments == ()
    with_list = copy.deepcopy(base) | {"experiments": [{"n": 1, "opt": "a"}, {"n": 3, "lr": 0.5}]}
    assert parse_spec(with_list).experiments == ({"n": 1, "opt": "a"}, {"n": 3, "lr": 0.5})


def test_native_unknown_keys_and_unused_settings_warn() -> None:
    data = {
        "model": {"main": "train.py", "colour": "red"},
        "algorithm": {"name": "random", "seed": 1, "warm_up": 5},
        "objective": {"metric": "loss", "direction": "minimize"},
        "space": {"x": {"type": "float", "low": 0, "high": 1, "color": 1}},
        "note": "hello",
    }
    spec = parse_spec(data)
    assert spec.algorithm.params == {"RandomSeed": "1", "WarmUp": "5"}
    assert set(spec.warnings) == {
        "ignored unknown key note",
        "ignored unknown key model.colour",
        "ignored unknown key space.x.color",
        "ignored algorithm.warm_up: not used by Random",
    }


# --- files ---------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
def test_load_spec_files(tmp_path: Path, suffix: str) -> None:
    data = fixture("hyperband_tf_mnist")
    path = tmp_path / f"spec{suffix}"
    path.write_text(json.dumps(data) if suffix == ".json" else yaml.safe_dump(data))
    spec = load_spec(path)
    assert isinstance(spec, ExperimentSpec)
    assert spec == parse_spec(data)


def test_load_native_yaml(tmp_path: Path) -> None:
    path = tmp_path / "exp.yml"
    path.write_text(NATIVE_HYPERBAND)
    assert load_spec(str(path)).algorithm.name == "hyperband"


def test_load_spec_source_in_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model: train.py\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.source == str(path)
    assert str(path) in str(info.value)


def test_sig_name_naming_a_served_pool_selects_it() -> None:
    from app.services.experiments import route_to_pool

    data = minimal()
    data["modelSpec"] = {"sigName": "gpu-pool-1", "args": "--gpuPerWorker 2 --model-main train.py"}
    spec = parse_spec(data)
    assert spec.resources.queue == "trials.any.x2"  # not a GPU type we know by name
    assert route_to_pool(spec, {"gpupool1"}).resources.queue == "trials.gpupool1.x2"
    assert route_to_pool(spec, {"a100"}).resources.queue == "trials.any.x2"
