"""Malformed specs: every mistake is reported as a Problem naming its field, never as a traceback."""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.spec import ExperimentSpec, SpecError, load_spec, parse_spec
from app.spec.native import parse_native
from app.spec.wmla import parse_wmla

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "wmla"


def wmla(**algo: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "modelSpec": {"sigName": "ig1", "args": "--exec-start PyTorch --model-main train.py --model-dir m"},
        "algoDef": {
            "algorithm": "Random",
            "maxRunTime": 60,
            "maxJobNum": 10,
            "maxParalleJobNum": 2,
            "objectiveMetric": "loss",
            "objective": "minimize",
        },
        "hyperParams": [
            {"name": "lr", "type": "Range", "dataType": "DOUBLE", "minDbVal": 0.1, "maxDbVal": 0.5},
            {"name": "n", "type": "Range", "dataType": "INT", "minIntVal": 1, "maxIntVal": 8},
        ],
    }
    data["algoDef"].update(algo)
    return data


def native(**top: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "model": {"main": "train.py"},
        "algorithm": "random",
        "objective": {"metric": "loss", "direction": "minimize"},
        "max_trials": 5,
        "space": {
            "lr": {"type": "float", "low": 0.001, "high": 0.1},
            "n": {"type": "int", "low": 1, "high": 8},
            "opt": {"type": "categorical", "choices": ["sgd", "adam"]},
        },
    }
    data.update(top)
    return data


def edit(base: dict[str, Any], fn: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    data = copy.deepcopy(base)
    fn(data)
    return data


def hp(i: int, **fields: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda d: d["hyperParams"][i].update(fields)


def args(text: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda d: d["modelSpec"].update(args=text)


def param(name: str, **fields: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda d: d["space"].__setitem__(name, fields)


def grid(experiments: Any) -> dict[str, Any]:
    data = wmla(algorithm="ExperimentGridSearch")
    del data["hyperParams"]
    if experiments is not None:
        data["experiments"] = experiments
    return data


GOOD_EXPERIMENT = {"hyperParams": [{"name": "lr", "dataType": "DOUBLE", "fixedVal": "0.1"}]}

# (id, data, expected path (equal or prefix), message fragment)
CASES: list[tuple[str, Any, str, str]] = [
    # --- WMLA: modelSpec and launcher flags
    ("modelspec-missing", edit(wmla(), lambda d: d.pop("modelSpec")), "modelSpec", "required"),
    (
        "modelspec-not-object",
        edit(wmla(), lambda d: d.update(modelSpec="x")),
        "modelSpec",
        "must be an object",
    ),
    ("args-missing", edit(wmla(), lambda d: d["modelSpec"].pop("args")), "modelSpec.args", "required"),
    ("args-number", edit(wmla(), args(5)), "modelSpec.args", "must be a string"),
    ("args-list-item", edit(wmla(), args(["--model-main", 3])), "modelSpec.args[1]", "must be a string"),
    ("args-no-main", edit(wmla(), args("--exec-start PyTorch --epochs 3")), "modelSpec.args", "--model-main"),
    (
        "args-flag-at-end",
        edit(wmla(), args("--model-main t.py --model-dir")),
        "modelSpec.args",
        "--model-dir needs",
    ),
    (
        "args-flag-then-flag",
        edit(wmla(), args("--model-main --model-dir m")),
        "modelSpec.args",
        "--model-main",
    ),
    ("args-empty-eq", edit(wmla(), args("--model-main= x")), "modelSpec.args", "--model-main needs a value"),
    (
        "args-gpus-negative",
        edit(wmla(), args("--model-main t.py --gpuPerWorker -1")),
        "modelSpec.args",
        "--gpuPerWorker",
    ),
    (
        "args-workers-text",
        edit(wmla(), args("--model-main t.py --numWorker two")),
        "modelSpec.args",
        "non-negative",
    ),
    (
        "args-datastore-type",
        edit(wmla(), args("--model-main t.py --cs-datastore-meta type=nfs")),
        "modelSpec.args",
        "type must be fs",
    ),
    ("args-unbalanced-quote", edit(wmla(), args("--model-main 't.py")), "modelSpec.args", "cannot be split"),
    (
        "args-main-escapes",
        edit(wmla(), args("--model-main ../../etc/x.py")),
        "modelSpec.args",
        "inside the model directory",
    ),
    (
        "args-gpu-flags-disagree",
        edit(wmla(), args("--model-main t.py --gpuPerWorker 1 --workerDeviceNum 2")),
        "modelSpec.args",
        "disagree",
    ),
    (
        "sig-name-number",
        edit(wmla(), lambda d: d["modelSpec"].update(sigName=5)),
        "modelSpec.sigName",
        "must be a string",
    ),
    ("hpo-name-bad", edit(wmla(), lambda d: d.update(hpoName="my exp/1")), "hpoName", "letters, digits"),
    ("hpo-name-newline", edit(wmla(), lambda d: d.update(hpoName="exp1\n")), "hpoName", "got 'exp1\\n'"),
    ("hpo-name-too-long", edit(wmla(), lambda d: d.update(hpoName="a" * 129)), "hpoName", "1-128"),
    # --- WMLA: algoDef
    ("algodef-missing", edit(wmla(), lambda d: d.pop("algoDef")), "algoDef", "required"),
    ("algodef-number", edit(wmla(), lambda d: d.update(algoDef=5)), "algoDef", "must be an object, got 5"),
    (
        "algorithm-missing",
        edit(wmla(), lambda d: d["algoDef"].pop("algorithm")),
        "algoDef.algorithm",
        "required",
    ),
    (
        "algorithm-unknown",
        wmla(algorithm="Genetic"),
        "algoDef.algorithm",
        "unknown algorithm 'Genetic'; built-in: Random",
    ),
    ("parallel-zero", wmla(maxParalleJobNum=0), "algoDef.maxParalleJobNum", "must be an integer >= 1, got 0"),
    ("parallel-bool", wmla(maxParalleJobNum=True), "algoDef.maxParalleJobNum", "got true"),
    ("parallel-variant-zero", wmla(maxParalleJob=0), "algoDef.maxParalleJob", ">= 1"),
    (
        "parallel-variants-differ",
        wmla(maxParalleJob=3),
        "algoDef.maxParalleJob",
        "conflicts with maxParalleJobNum (2)",
    ),
    ("max-jobs-zero", wmla(maxJobNum=0), "algoDef.maxJobNum", "or -1 (unlimited), got 0"),
    ("max-jobs-fraction", wmla(maxJobNum=2.5), "algoDef.maxJobNum", "must be an integer"),
    ("max-jobs-below-minus-one", wmla(maxJobNum=-5), "algoDef.maxJobNum", "got -5"),
    ("run-time-zero", wmla(maxRunTime=0), "algoDef.maxRunTime", "got 0"),
    ("run-time-text", wmla(maxRunTime="soon"), "algoDef.maxRunTime", "must be a number"),
    ("metric-empty", wmla(objectiveMetric=" "), "algoDef.objectiveMetric", "must not be empty"),
    (
        "metric-missing",
        edit(wmla(), lambda d: d["algoDef"].pop("objectiveMetric")),
        "algoDef.objectiveMetric",
        "required",
    ),
    ("objective-bad", wmla(objective="up"), "algoDef.objective", "must be one of maximize, minimize"),
    (
        "objective-missing",
        edit(wmla(), lambda d: d["algoDef"].pop("objective")),
        "algoDef.objective",
        "required",
    ),
    ("additional-list", wmla(additionalMetrics=["acc"]), "algoDef.additionalMetrics", "must be an object"),
    (
        "additional-number",
        wmla(additionalMetrics={"acc": 1}),
        "algoDef.additionalMetrics.acc",
        "minimize, maximize or latest",
    ),
    ("eta-one", wmla(algorithm="Hyperband", hyperbandEta=1), "algoDef.hyperbandEta", "must be a number > 1"),
    ("algo-params-object", wmla(algoParams={"WarmUp": "5"}), "algoDef.algoParams", "must be a list"),
    (
        "algo-param-no-value",
        wmla(algoParams=[{"name": "RandomSeed"}]),
        "algoDef.algoParams[0].value",
        "required",
    ),
    ("algo-param-no-name", wmla(algoParams=[{"value": "3"}]), "algoDef.algoParams[0].name", "required"),
    (
        "algo-param-warmup",
        wmla(
            algorithm="TPE",
            algoParams=[
                {"name": "RandomSeed", "value": "1"},
                {"name": "GoodMax", "value": 5},
                {"name": "WarmUp", "value": "2"},
            ],
        ),
        "algoDef.algoParams[2].value (WarmUp)",
        "must be greater than 2",
    ),
    (
        "algo-param-cube",
        wmla(algorithm="Bayesian", maxJobNum=50, algoParams=[{"name": "CubeSize", "value": "10"}]),
        "algoDef.algoParams[0].value (CubeSize)",
        "at least maxJobNum (50)",
    ),
    (
        "algo-param-bool",
        wmla(algorithm="Bayesian", algoParams=[{"name": "Noiseless", "value": "maybe"}]),
        "algoDef.algoParams[0].value (Noiseless)",
        "true or false",
    ),
    (
        "algo-param-duplicate",
        wmla(algoParams=[{"name": "RandomSeed", "value": "1"}, {"name": "RandomSeed", "value": "2"}]),
        "algoDef.algoParams[1].name",
        "duplicate",
    ),
    ("trial-timeout-zero", wmla(trialTimeout=0), "algoDef.trialTimeout", "must be a number > 0"),
    ("kill-on-timeout-text", wmla(killOnTimeout="maybe"), "algoDef.killOnTimeout", "true or false"),
    # --- WMLA: hyperParams
    ("hyperparams-missing", edit(wmla(), lambda d: d.pop("hyperParams")), "hyperParams", "required"),
    (
        "hyperparams-empty",
        edit(wmla(algorithm="TPE"), lambda d: d.update(hyperParams=[])),
        "hyperParams",
        "must not be empty",
    ),
    (
        "hyperparams-object",
        edit(wmla(), lambda d: d.update(hyperParams={"lr": 1})),
        "hyperParams",
        "must be a list",
    ),
    (
        "hyperparam-not-object",
        edit(wmla(), lambda d: d["hyperParams"].append("lr")),
        "hyperParams[2]",
        "must be an object",
    ),
    (
        "hyperparam-no-name",
        edit(wmla(), lambda d: d["hyperParams"][0].pop("name")),
        "hyperParams[0].name",
        "required",
    ),
    (
        "hyperparam-duplicate",
        edit(wmla(), hp(1, name="lr")),
        "hyperParams[1].name",
        "duplicate parameter name 'lr'",
    ),
    (
        "hyperparam-type",
        edit(wmla(), hp(0, type="fix")),
        "hyperParams[0].type",
        "must be one of Discrete, Range",
    ),
    ("hyperparam-datatype", edit(wmla(), hp(0, dataType="FLOAT")), "hyperParams[0].dataType", "DOUBLE"),
    (
        "range-max-not-greater",
        edit(wmla(), hp(0, maxDbVal=0.1)),
        "hyperParams[0].maxDbVal",
        "must be greater than minDbVal (0.1)",
    ),
    (
        "range-max-missing",
        edit(wmla(), lambda d: d["hyperParams"][0].pop("maxDbVal")),
        "hyperParams[0].maxDbVal",
        "required",
    ),
    ("range-min-bool", edit(wmla(), hp(0, minDbVal=False)), "hyperParams[0].minDbVal", "got false"),
    (
        "range-min-nan",
        edit(wmla(), hp(0, minDbVal=float("nan"))),
        "hyperParams[0].minDbVal",
        "must be a number",
    ),
    (
        "range-int-fraction",
        edit(wmla(), hp(1, minIntVal=1.5)),
        "hyperParams[1].minIntVal",
        "must be an integer",
    ),
    (
        "range-int-reversed",
        edit(wmla(), hp(1, minIntVal=9)),
        "hyperParams[1].maxIntVal",
        "must be greater than minIntVal (9)",
    ),
    ("range-str", edit(wmla(), hp(0, dataType="STR")), "hyperParams[0].dataType", "Range needs"),
    (
        "step-too-big",
        edit(wmla(), hp(0, step="0.5")),
        "hyperParams[0].step",
        "must be at most maxDbVal - minDbVal (0.4)",
    ),
    ("step-negative", edit(wmla(), hp(0, step=-0.1)), "hyperParams[0].step", "must be greater than 0"),
    ("step-text", edit(wmla(), hp(0, step="tiny")), "hyperParams[0].step", "must be a number"),
    ("step-int-fraction", edit(wmla(), hp(1, step="1.5")), "hyperParams[1].step", "must be an integer"),
    ("power-one", edit(wmla(), hp(0, power="1")), "hyperParams[0].power", "not 1"),
    ("power-negative", edit(wmla(), hp(0, power=-2)), "hyperParams[0].power", "greater than 0"),
    (
        "power-int-negative-min",
        edit(wmla(), hp(1, minIntVal=-2, power=10)),
        "hyperParams[1].minIntVal",
        ">= 0 with power",
    ),
    ("power-int-fraction", edit(wmla(), hp(1, power=2.5)), "hyperParams[1].power", "must be an integer"),
    (
        "power-overflow",
        edit(wmla(), hp(0, minDbVal=0, maxDbVal=1000, power=10)),
        "hyperParams[0].power",
        "floating-point range",
    ),
    (
        "discrete-empty",
        edit(wmla(), hp(1, type="Discrete", discreteIntVal=[])),
        "hyperParams[1].discreteIntVal",
        "must not be empty",
    ),
    ("discrete-missing", edit(wmla(), hp(0, type="Discrete")), "hyperParams[0].discreteDbVal", "required"),
    (
        "discrete-int-fraction",
        edit(wmla(), hp(1, type="Discrete", discreteIntVal=[1, 2.5])),
        "hyperParams[1].discreteIntVal[1]",
        "must be an integer",
    ),
    (
        "discrete-double-text",
        edit(wmla(), hp(0, type="Discrete", discreteDbVal=[0.1, "x"])),
        "hyperParams[0].discreteDbVal[1]",
        "must be a number",
    ),
    (
        "discrete-str-duplicate",
        edit(wmla(), hp(0, type="Discrete", dataType="STR", discreateStrVal=["a", "b", "a"])),
        "hyperParams[0].discreateStrVal[2]",
        "duplicate of discreateStrVal[0]",
    ),
    (
        "discrete-str-number",
        edit(wmla(), hp(0, type="Discrete", dataType="STRING", discreateStrVal=["a", 3])),
        "hyperParams[0].discreateStrVal[1]",
        "must be a string",
    ),
    # --- WMLA: experiments (ExperimentGridSearch)
    ("grid-no-experiments", grid(None), "experiments", "required for ExperimentGridSearch"),
    ("grid-empty-experiments", grid([]), "experiments", "must not be empty"),
    ("grid-experiments-object", grid({"a": 1}), "experiments", "must be a list"),
    ("grid-experiment-number", grid([GOOD_EXPERIMENT, 3]), "experiments[1]", "must be an object"),
    ("grid-experiment-no-params", grid([{"id": 1}]), "experiments[0].hyperParams", "required"),
    (
        "grid-fixed-val-int",
        grid(
            [
                {
                    "hyperParams": [
                        {"name": "a", "dataType": "INT", "fixedVal": "1"},
                        {"name": "b", "dataType": "INT", "fixedVal": "abc"},
                    ]
                }
            ]
        ),
        "experiments[0].hyperParams[1].fixedVal",
        "must be an integer for dataType INT, got 'abc'",
    ),
    (
        "grid-fixed-val-double",
        grid([{"hyperParams": [{"name": "a", "dataType": "DOUBLE", "fixedVal": "x1"}]}]),
        "experiments[0].hyperParams[0].fixedVal",
        "must be a number",
    ),
    (
        "grid-fixed-val-missing",
        grid([{"hyperParams": [{"name": "a", "dataType": "DOUBLE"}]}]),
        "experiments[0].hyperParams[0].fixedVal",
        "required",
    ),
    (
        "grid-fixed-val-bool",
        grid([{"hyperParams": [{"name": "a", "dataType": "STR", "fixedVal": True}]}]),
        "experiments[0].hyperParams[0].fixedVal",
        "got true",
    ),
    (
        "grid-datatype",
        grid([{"hyperParams": [{"name": "a", "dataType": "LONG", "fixedVal": "1"}]}]),
        "experiments[0].hyperParams[0].dataType",
        "must be one of",
    ),
    (
        "grid-duplicate-name",
        grid(
            [
                {
                    "hyperParams": [
                        {"name": "a", "dataType": "INT", "fixedVal": 1},
                        {"name": "a", "dataType": "INT", "fixedVal": 2},
                    ]
                }
            ]
        ),
        "experiments[0].hyperParams[1].name",
        "duplicate",
    ),
    # --- native
    ("native-not-mapping", ["model", "space"], "", "must be a mapping"),
    ("native-name", native(name="-bad"), "name", "starting with a letter or digit"),
    ("native-model-missing", edit(native(), lambda d: d.pop("model")), "model", "required"),
    ("native-main-missing", native(model={"dir": "x"}), "model.main", "required"),
    ("native-main-escapes", native(model={"main": "/etc/x.py"}), "model.main", "inside the model directory"),
    ("native-args-object", native(model={"main": "t.py", "args": {"a": 1}}), "model.args", "list of strings"),
    (
        "native-args-item",
        native(model={"main": "t.py", "args": ["--a", None]}),
        "model.args[1]",
        "must be a string",
    ),
    ("native-algorithm-missing", edit(native(), lambda d: d.pop("algorithm")), "algorithm", "required"),
    ("native-algorithm-unknown", native(algorithm="genetic"), "algorithm", "unknown algorithm 'genetic'"),
    ("native-algorithm-list", native(algorithm=["tpe"]), "algorithm", "must be a name or an object"),
    (
        "native-algorithm-name-unknown",
        native(algorithm={"name": "cmaes"}),
        "algorithm.name",
        "unknown algorithm",
    ),
    (
        "native-warm-up",
        native(algorithm={"name": "tpe", "warm_up": 1}),
        "algorithm.warm_up",
        "must be greater than 2",
    ),
    ("native-seed", native(algorithm={"name": "tpe", "seed": "abc"}), "algorithm.seed", "must be an integer"),
    (
        "native-setting-object",
        native(algorithm={"name": "tpe", "seed": {"a": 1}}),
        "algorithm.seed",
        "string, number or boolean",
    ),
    ("native-eta", native(algorithm={"name": "hyperband", "eta": 0.5}), "algorithm.eta", "> 1"),
    ("native-objective-missing", edit(native(), lambda d: d.pop("objective")), "objective", "required"),
    (
        "native-direction",
        native(objective={"metric": "loss", "direction": "down"}),
        "objective.direction",
        "must be one of",
    ),
    ("native-direction-missing", native(objective={"metric": "loss"}), "objective.direction", "required"),
    (
        "native-metric-number",
        native(objective={"metric": 3, "direction": "minimize"}),
        "objective.metric",
        "must be a string",
    ),
    ("native-objective-twice", native(metric="acc"), "metric", "either"),
    (
        "native-additional",
        native(objective={"metric": "a", "direction": "maximize", "additional": {"l": "avg"}}),
        "objective.additional.l",
        "must be one of",
    ),
    ("native-max-trials", native(max_trials=0), "max_trials", "got 0"),
    ("native-max-parallel", native(max_parallel=0), "max_parallel", "must be an integer >= 1, got 0"),
    ("native-max-parallel-bool", native(max_parallel=True), "max_parallel", "got true"),
    ("native-max-minutes", native(max_minutes=-3), "max_minutes", "must be a number > 0"),
    ("native-trial-timeout", native(trial_timeout=0), "trial_timeout", "> 0"),
    ("native-kill-on-timeout", native(kill_on_timeout="yes"), "kill_on_timeout", "true or false"),
    ("native-gpus-negative", native(resources={"gpus": -1}), "resources.gpus", ">= 0"),
    ("native-gpus-text", native(resources={"gpus": "2"}), "resources.gpus", "must be an integer"),
    (
        "native-gpu-type",
        native(resources={"gpu_type": 100, "gpus": 1}),
        "resources.gpu_type",
        "must be a string",
    ),
    ("native-env-reserved", native(env={"HPO_BROKER_URL": "x"}), "env.HPO_BROKER_URL", "reserved"),
    ("native-env-name", native(env={"1BAD": "x"}), "env", "not a valid environment variable name"),
    ("native-env-value", native(env={"OK": ["a"]}), "env.OK", "must be a string"),
    ("native-env-bool", native(env={"OK": True}), "env.OK", "quote it"),
    ("native-space-missing", edit(native(), lambda d: d.pop("space")), "space", "required"),
    ("native-space-empty", native(space={}), "space", "at least one parameter"),
    ("native-space-list", native(space=[{"name": "lr"}]), "space", "must be an object"),
    (
        "native-param-not-object",
        edit(native(), lambda d: d["space"].update(lr=0.1)),
        "space.lr",
        "must be an object",
    ),
    (
        "native-param-type",
        edit(native(), param("lr", type="gaussian", low=0, high=1)),
        "space.lr.type",
        "must be one of",
    ),
    ("native-param-type-missing", edit(native(), param("lr", low=0, high=1)), "space.lr.type", "required"),
    (
        "native-high-not-greater",
        edit(native(), param("lr", type="float", low=0.5, high=0.5)),
        "space.lr.high",
        "must be greater than low (0.5)",
    ),
    ("native-low-missing", edit(native(), param("lr", type="float", high=0.5)), "space.lr.low", "required"),
    (
        "native-low-text",
        edit(native(), param("lr", type="float", low="tiny", high=0.5)),
        "space.lr.low",
        "must be a number",
    ),
    (
        "native-log-nonpositive",
        edit(native(), param("lr", type="float", low=0, high=1, log=True)),
        "space.lr.low",
        "greater than 0 with log",
    ),
    (
        "native-log-step",
        edit(native(), param("lr", type="float", low=0.1, high=1, log=True, step=0.1)),
        "space.lr.log",
        "step",
    ),
    (
        "native-log-power",
        edit(native(), param("lr", type="float", low=0.1, high=1, log=True, power=10)),
        "space.lr.log",
        "power",
    ),
    (
        "native-log-text",
        edit(native(), param("lr", type="float", low=0.1, high=1, log="yes")),
        "space.lr.log",
        "true or false",
    ),
    (
        "native-int-bound",
        edit(native(), param("n", type="int", low=1.5, high=4)),
        "space.n.low",
        "must be an integer",
    ),
    (
        "native-step-zero",
        edit(native(), param("n", type="int", low=1, high=4, step=0)),
        "space.n.step",
        "greater than 0",
    ),
    (
        "native-step-int-fraction",
        edit(native(), param("n", type="int", low=1, high=4, step=1.5)),
        "space.n.step",
        "must be an integer",
    ),
    (
        "native-step-too-big",
        edit(native(), param("n", type="int", low=1, high=4, step=4)),
        "space.n.step",
        "at most high - low (3)",
    ),
    (
        "native-power-one",
        edit(native(), param("w", type="float", low=-3, high=-1, power=1)),
        "space.w.power",
        "not 1",
    ),
    (
        "native-power-int-neg",
        edit(native(), param("w", type="int", low=-3, high=1, power=2)),
        "space.w.low",
        ">= 0 with power",
    ),
    (
        "native-choices-empty",
        edit(native(), param("opt", type="categorical", choices=[])),
        "space.opt.choices",
        "must not be empty",
    ),
    ("native-choices-missing", edit(native(), param("opt", type="choice")), "space.opt.choices", "required"),
    (
        "native-choices-duplicate",
        edit(native(), param("opt", type="cat", choices=["a", "a"])),
        "space.opt.choices[1]",
        "duplicate of choices[0]",
    ),
    (
        "native-choices-object",
        edit(native(), param("opt", type="str", choices=[{"a": 1}])),
        "space.opt.choices[0]",
        "string or a number",
    ),
    (
        "native-choices-bool",
        edit(native(), param("opt", type="str", choices=[True, False])),
        "space.opt.choices[0]",
        "string or a number",
    ),
    ("native-grid-continuous", native(algorithm="grid"), "space", "finite space; continuous: lr"),
    (
        "native-grid-nothing",
        edit(native(algorithm="grid"), lambda d: d.pop("space")),
        "experiments",
        "required for grid",
    ),
    (
        "native-experiment-not-object",
        native(algorithm="grid", experiments=[{"lr": 0.1}, 5]),
        "experiments[1]",
        "must be a mapping",
    ),
    (
        "native-experiment-value",
        native(algorithm="grid", experiments=[{"lr": [0.1]}]),
        "experiments[0].lr",
        "string or a number",
    ),
    (
        "native-experiments-empty",
        native(algorithm="grid", experiments=[]),
        "experiments",
        "must not be empty",
    ),
]


def _problems(data: Any) -> list[Any]:
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    return info.value.problems


@pytest.mark.parametrize(("data", "path", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_spec(data: Any, path: str, fragment: str) -> None:
    problems = _problems(data)
    matching = [p for p in problems if (p.path == path or p.path.startswith(path)) and fragment in p.message]
    assert matching, f"no problem at {path!r} containing {fragment!r}; got {[str(p) for p in problems]}"


def test_case_table_is_large_and_distinct() -> None:
    assert len(CASES) >= 35
    assert len({c[0] for c in CASES}) == len(CASES)
    assert len({json.dumps(c[1], sort_keys=True, default=str) for c in CASES}) == len(CASES)


def test_every_case_is_valid_without_its_mistake() -> None:
    """The bases the table edits are themselves valid, so each case fails for its own reason."""
    assert isinstance(parse_spec(wmla()), ExperimentSpec)
    assert isinstance(parse_spec(native()), ExperimentSpec)
    assert isinstance(parse_spec(grid([GOOD_EXPERIMENT])), ExperimentSpec)


def test_exact_messages() -> None:
    problems = _problems(edit(wmla(maxParalleJobNum=0), hp(0, maxDbVal=0.1)))
    rendered = {str(p) for p in problems}
    assert "algoDef.maxParalleJobNum: must be an integer >= 1, got 0" in rendered
    assert "hyperParams[0].maxDbVal: must be greater than minDbVal (0.1)" in rendered
    problems = _problems(wmla(algorithm="TPE", algoParams=[{"name": "WarmUp", "value": "2"}]))
    assert [str(p) for p in problems] == ["algoDef.algoParams[0].value (WarmUp): must be greater than 2"]


def test_all_independent_mistakes_are_reported() -> None:
    data = wmla(algorithm="Genetic", maxParalleJobNum=0, objective="up", maxRunTime=0)
    data["hpoName"] = "bad name"
    data["modelSpec"]["args"] = "--exec-start PyTorch"
    data["hyperParams"][0]["maxDbVal"] = 0.05
    data["hyperParams"][1]["step"] = "2.5"
    data["hyperParams"].append(
        {"name": "lr", "type": "Discrete", "dataType": "INT", "discreteIntVal": [1, 1]}
    )
    with pytest.raises(SpecError) as info:
        parse_spec(data, source="payload.json")
    paths = {p.path for p in info.value.problems}
    assert {
        "hpoName",
        "modelSpec.args",
        "algoDef.algorithm",
        "algoDef.maxParalleJobNum",
        "algoDef.objective",
        "algoDef.maxRunTime",
        "hyperParams[0].maxDbVal",
        "hyperParams[1].step",
        "hyperParams[2].name",
        "hyperParams[2].discreteIntVal[1]",
    } <= paths
    text = str(info.value)
    assert text.startswith("invalid experiment spec payload.json:")
    assert "algoDef.maxParalleJobNum" in text and "hyperParams[1].step" in text


def test_all_native_mistakes_are_reported() -> None:
    data = native(
        max_parallel=0, env={"HPO_X": "1"}, resources={"gpus": -1}, objective={"metric": "", "direction": "x"}
    )
    data["space"]["lr"]["high"] = 0
    data["space"]["opt"]["choices"] = []
    paths = {p.path for p in _problems(data)}
    assert {
        "max_parallel",
        "env.HPO_X",
        "resources.gpus",
        "objective.metric",
        "objective.direction",
        "space.lr.high",
        "space.opt.choices",
    } <= paths


# --- junk never raises anything but SpecError ------------------------------------------------
def _deep(n: int) -> Any:
    value: Any = "x"
    for _ in range(n):
        value = [value]
    return value


def _cycle() -> list[Any]:
    a: list[Any] = []
    a.append(a)
    return a


JUNK: list[Any] = [
    None,
    [],
    3,
    1.5,
    True,
    "x",
    b"bytes",
    {},
    {"algoDef": 5},
    {"modelSpec": [], "algoDef": "x", "hyperParams": {"a": 1}, "experiments": 7},
    {"hyperParams": [None, 1, "x", [], {"name": [], "type": {}, "dataType": 1, "step": [], "power": {}}]},
    {
        "hyperParams": [
            {"name": "a", "type": "Range", "dataType": "INT", "minIntVal": "1e999", "maxIntVal": 1e308}
        ]
    },
    {
        "hyperParams": [
            {"name": "a", "type": "Range", "dataType": "DOUBLE", "minDbVal": -1e308, "maxDbVal": 1e308}
        ]
    },
    {
        "hyperParams": [
            {"name": "a", "type": "Discrete", "dataType": "DOUBLE", "discreteDbVal": [[], {}, None]}
        ]
    },
    {
        "algoDef": {
            "algorithm": ["Random"],
            "algoParams": [1, None, {"name": 5, "value": {}}],
            "additionalMetrics": {"": 1},
        }
    },
    {
        "algoDef": {"algorithm": "ExperimentGridSearch"},
        "experiments": [{"hyperParams": 1}, {"hyperParams": [None]}],
    },
    {
        "algoDef": {
            "algorithm": "tpe",
            "maxJobNum": float("inf"),
            "maxRunTime": float("nan"),
            "algoParams": [{"name": "WarmUp", "value": float("inf")}],
        }
    },
    {"modelSpec": {"args": [None, {}, []]}, "algoDef": {"objective": {}}},
    {"modelSpec": {"args": "--model-main"}, "hyperParams": _deep(200)},
    {"hyperParams": _cycle()},
    {1: 2, None: 3, ("a",): 4},
    {"model": 1, "algorithm": [], "space": [1]},
    {"model": {"main": 1, "args": [None]}, "space": {"x": None, "y": {"type": None}, 3: {}}},
    {
        "model": "t.py",
        "algorithm": {"name": None, 1: 2},
        "objective": "loss",
        "space": {"x": {"type": "int", "low": "a", "high": []}},
    },
    {
        "model": "t.py",
        "algorithm": {"name": "grid"},
        "metric": "m",
        "direction": "minimize",
        "experiments": [[], None, {1: 2}],
    },
    {
        "model": "t.py",
        "algorithm": "tpe",
        "metric": "m",
        "direction": "minimize",
        "space": {"x": {"type": "float", "low": 1, "high": 2, "power": 1e300}},
    },
    {
        "env": {1: 2, "A": None},
        "resources": [],
        "max_trials": "many",
        "space": {"x": {"choices": [float("nan")]}},
    },
    {"experiments": [1, 2, 3]},
]


@pytest.mark.parametrize("data", JUNK, ids=[f"junk{i}" for i in range(len(JUNK))])
def test_junk_raises_spec_error(data: Any) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    assert info.value.problems
    assert not any("could not be read" in p.message for p in info.value.problems)  # no hidden bug


MUTANTS: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1.5,
    float("nan"),
    "",
    "x",
    "1",
    [],
    [None],
    {},
    {"a": 1},
    _deep(5),
]


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _set(data: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("name", "parser"),
    [("wmla", parse_wmla), ("native", parse_native)],
)
def test_fuzzed_specs_never_crash(name: str, parser: Callable[[Any], ExperimentSpec]) -> None:
    """Replace random nodes of valid specs with junk: the parser (without parse_spec's safety net)
    either accepts the result or raises SpecError."""
    if name == "wmla":
        bases = [json.loads(p.read_text()) for p in sorted(FIXTURES.glob("*.json"))] + [
            wmla(),
            grid([GOOD_EXPERIMENT]),
        ]
    else:
        bases = [
            native(),
            native(algorithm={"name": "tpe", "seed": 1}, resources={"gpus": 1}, env={"A": "b"}),
        ]
    rng = random.Random(1234)
    outcomes = {"ok": 0, "error": 0}
    for _ in range(600):
        data = copy.deepcopy(rng.choice(bases))
        for _ in range(rng.randint(1, 3)):
            path = rng.choice(_paths(data))
            data = _set(data, path, copy.deepcopy(rng.choice(MUTANTS)))
        try:
            parser(data)
            outcomes["ok"] += 1
        except SpecError as exc:
            assert exc.problems
            outcomes["error"] += 1
    assert outcomes["ok"] > 0 and outcomes["error"] > 0


# --- files ---------------------------------------------------------------------------------
def test_load_spec_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "exp.json"
    path.write_text('{\n  "algoDef": {\n    "algorithm": ,\n  }\n}')
    with pytest.raises(SpecError) as info:
        load_spec(path)
    [problem] = info.value.problems
    assert problem.path == "exp.json"
    assert problem.message.startswith("not valid JSON: line 3 column 18:")
    assert info.value.source == str(path)


def test_load_spec_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("model:\n  main: t.py\n   bad: [1, 2\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    [problem] = info.value.problems
    assert problem.path == "exp.yaml"
    assert problem.message.startswith("not valid YAML: line 3")


def test_load_spec_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path / "nope.yml")
    [problem] = info.value.problems
    assert problem.path == "nope.yml"
    assert "cannot read" in problem.message


def test_load_spec_binary_and_empty(tmp_path: Path) -> None:
    binary = tmp_path / "exp.yml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(SpecError) as info:
        load_spec(binary)
    assert info.value.problems[0].path == "exp.yml"
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(SpecError) as info:
        load_spec(empty)
    assert "must be a mapping" in info.value.problems[0].message


def test_load_spec_reports_field_problems_with_source(tmp_path: Path) -> None:
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(wmla(maxParalleJobNum=0)))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.source == str(path)
    assert [p.path for p in info.value.problems] == ["algoDef.maxParalleJobNum"]
