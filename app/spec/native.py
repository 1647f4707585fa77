"""The native YAML/JSON experiment form -> ExperimentSpec (the same model the WMLA payload gives).

```yaml
name: digits-tune
model: {main: train.py, dir: digits, args: ["--epochs", "5"], data_path: mnist,
        mode: forkserver, preload: [torch]}   # mode: subprocess (default) | forkserver | function
# mode function: model: {main: train.py, function: train}: train(config) is called per trial
algorithm: tpe                       # or {name: tpe, seed: 3, warm_up: 10, eta: 3}
objective: {metric: accuracy, direction: maximize, additional: {loss: minimize}}
max_trials: 20                       # null/-1 = unlimited
max_parallel: 2
max_minutes: 30                      # null/-1 = unlimited
trial_timeout: 600
resources: {gpu_type: a100, gpus: 1}
env: {KEY: value}
space:
  lr: {type: float, low: 1.0e-4, high: 0.1, log: true}
  opt: {type: categorical, choices: [sgd, adam]}
experiments: [{lr: 0.1, opt: sgd}]   # for algorithm grid
```

Numbers may also be given as strings (PyYAML reads `1e-4` as a string). `model` may be just the
main script's name; a categorical parameter may leave out `type` when it gives `choices`.
"""

from __future__ import annotations

import keyword
import math
import re
import shlex
from typing import Any

from pydantic import ValidationError

from app.keys import normalize_gpu_type
from app.optimizers.settings import NATIVE_TO_WMLA
from app.space import CategoricalParam, Config, NumericParam, SearchSpace
from app.spec.algorithms import (
    canonical_algorithm,
    check_params,
    display,
    resource_conflict,
    resource_param,
    unknown_algorithm,
)
from app.spec.errors import Problem, SpecError
from app.spec.model import (
    TRIAL_MODES,
    Algorithm,
    ExperimentSpec,
    Launcher,
    Limits,
    Objective,
    ResourceRequest,
)
from app.spec.reader import NAME_RE, NAME_RULE, Reader, fmt, show, validation_problems
from app.spec.scheduler import native_scheduler
from app.spec.wmla import DIRECTIONS, build_spec, check_step_power, optional_number

TOP_KEYS = (
    "name",
    "model",
    "algorithm",
    "objective",
    "metric",
    "direction",
    "max_trials",
    "max_parallel",
    "max_minutes",
    "trial_timeout",
    "kill_on_timeout",
    "sync_batches",
    "retries",
    "scheduler",
    "resources",
    "env",
    "space",
    "experiments",
)
MODEL_KEYS = ("main", "dir", "args", "data_path", "mode", "preload", "function")
IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
PARAM_TYPES = {
    "float": "float",
    "double": "float",
    "int": "int",
    "integer": "int",
    "categorical": "categorical",
    "choice": "categorical",
    "cat": "categorical",
    "str": "categorical",
}
NUMERIC_KEYS = ("type", "low", "high", "log", "step", "power")
CATEGORICAL_KEYS = ("type", "choices")
STRATEGIES = {"minimize": "minimize", "maximize": "maximize", "latest": "latest"}
# Hyperband settings under their WMLA names (`eta` is read on its own, like WMLA's hyperbandEta).
HYPERBAND_TO_WMLA = {"resource_name": "ResourceName", "resource_value": "ResourceValue", "seed": "RandomSeed"}
WMLA_TO_HYPERBAND = {v: k for k, v in HYPERBAND_TO_WMLA.items()} | {"hyperbandEta": "eta"}
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_native(data: Any) -> ExperimentSpec:
    """Validate a native spec (already YAML/JSON-decoded); SpecError lists every problem."""
    root = Reader(data)
    if not isinstance(data, dict):
        raise SpecError([Problem("", f"the spec must be a mapping (object), got {show(data)}")])
    root.check_known(TOP_KEYS)
    name = root.str("name", pattern=NAME_RE, rule=NAME_RULE)
    model = _model(root)
    limits = _limits(root)
    algorithm = _algorithm(root, limits.max_trials)
    objective = _objective(root)
    resources = _resources(root)
    env = _env(root)
    scheduler = native_scheduler(root)
    space = _space(root, algorithm.name if algorithm else None)
    _check_resource_name(root, algorithm, space)
    experiments = _experiments(root, algorithm.name if algorithm else None, space)
    return build_spec(
        root.problems,
        root.warnings,
        name=name,
        source="native",
        model=model,
        algorithm=algorithm,
        objective=objective,
        limits=limits,
        space=space,
        experiments=experiments,
        resources=resources,
        env=env,
        scheduler=scheduler,
        raw={str(k): v for k, v in data.items()},
    )


def _safe_path(r: Reader, key: str, *, folder: bool) -> str | None:
    value = r.str(key, required=key == "main")
    if value is None:
        return None
    parts = value.replace("\\", "/").split("/")
    if value.startswith(("/", "\\")) or ".." in parts:
        what = "a folder name" if folder else "a path inside the model directory"
        r.problem(f"must be {what} (relative, no '..'), got {show(value)}", key)
        return None
    return value


def _model(root: Reader) -> Launcher | None:
    value = root.get("model")
    if isinstance(value, str):  # shorthand: model: train.py
        main = _safe_path(Reader({"model": value}, "", root.problems, root.warnings), "model", folder=False)
        return Launcher(main=main) if main else None
    model = root.child("model", required=True)
    if model is None:
        return None
    model.check_known(MODEL_KEYS)
    main = _safe_path(model, "main", folder=False)
    model_dir = _safe_path(model, "dir", folder=True)
    data_path = model.str("data_path")
    if data_path is not None and ".." in data_path.replace("\\", "/").split("/"):
        model.problem(f"must not contain '..', got {show(data_path)}", "data_path")
    args: list[str] = []
    raw = model.get("args")
    if isinstance(raw, str):
        try:
            args = shlex.split(raw)
        except ValueError as exc:
            model.problem(f"cannot be split into arguments: {exc}", "args")
    elif isinstance(raw, list):
        for i, token in enumerate(raw):
            if isinstance(token, bool) or not isinstance(token, str | int | float):
                model.problem(f"must be a string, got {show(token)}", f"args[{i}]")
            else:
                args.append(str(token))
    elif raw is not None:
        model.problem(f"must be a list of strings or one string, got {show(raw)}", "args")
    function = _function(model)
    mode = model.choice("mode", {m: m for m in TRIAL_MODES}) or ("function" if function else "subprocess")
    if mode == "function" and function is None and model.get("function") is None:
        model.problem("is required with mode: function (the name of the callable in main)", "function")
    elif function is not None and mode != "function":
        model.problem(f"is used only with mode: function, not mode: {mode}", "function")
    if mode == "function" and main is not None and not main.endswith(".py"):
        model.problem(f"must be a .py file with mode: function, got {show(main)}", "main")
    preload = _preload(model, mode)
    if main is None:
        return None
    return Launcher(main=main, model_dir=model_dir, args=tuple(args), data_path=data_path, mode=mode,
                    preload=preload, function=function)  # fmt: skip


def _function(model: Reader) -> str | None:
    """model.function: the name of the callable in `main` that mode function calls per trial."""
    name = model.str("function")
    if name is not None and (not IDENTIFIER_RE.fullmatch(name.strip()) or keyword.iskeyword(name.strip())):
        model.problem(f"must be the name of a function in main, like train, got {show(name)}", "function")
        return None
    return None if name is None else name.strip()


def _preload(model: Reader, mode: str) -> tuple[str, ...]:
    """model.preload: module names the forkserver (or the function process) imports once (a list, or
    one comma-separated string)."""
    raw = model.get("preload")
    if raw is None:
        return ()
    items = [s.strip() for s in raw.split(",") if s.strip()] if isinstance(raw, str) else raw
    if not isinstance(items, list):
        model.problem(f"must be a list of module names, got {show(raw)}", "preload")
        return ()
    names: list[str] = []
    for i, item in enumerate(items):
        if not isinstance(item, str) or not MODULE_RE.fullmatch(item):
            key = f"preload[{i}]" if isinstance(raw, list) else "preload"
            model.problem(f"must be a module name like numpy or torch.nn, got {show(item)}", key)
        elif item not in names:
            names.append(item)
    if names and mode not in ("forkserver", "function"):
        model.warn(f"ignored {model.path_of('preload')}: used only with mode: forkserver or function")
        return ()
    return tuple(names)


def _limits(root: Reader) -> Limits:
    max_trials = root.int("max_trials", minimum=1, unlimited=True)
    parallel = root.int("max_parallel", minimum=1, default=1)
    minutes = root.number("max_minutes", gt=0, unlimited=True)
    timeout = root.number("trial_timeout", gt=0)
    kill = root.bool("kill_on_timeout")
    sync = root.bool("sync_batches")
    retries = root.int("retries", minimum=0, maximum=100, default=2)
    return Limits(
        max_trials=max_trials,
        max_parallel=parallel or 1,
        max_run_time_s=minutes * 60 if minutes is not None else None,
        trial_timeout_s=timeout,
        kill_on_timeout=bool(kill),
        sync_batches=bool(sync),
        retries=2 if retries is None else retries,
    )


def _setting_text(r: Reader, key: str, value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and math.isfinite(value):
        return str(value)
    r.problem(f"must be a string, number or boolean, got {show(value)}", key)
    return None


def _algorithm(root: Reader, max_trials: int | None) -> Algorithm | None:
    value = root.get("algorithm")
    if value is None:
        root.problem("required: random, tpe, bayesian, hyperband or grid", "algorithm")
        return None
    if isinstance(value, str):
        name = canonical_algorithm(value)
        if name is None:
            root.problem(unknown_algorithm(value), "algorithm")
            return None

        def needs_settings(wmla_name: str, message: str) -> Problem:
            key = WMLA_TO_HYPERBAND.get(wmla_name, wmla_name)
            example = f"{{name: {name}, resource_name: KEY, resource_value: R}}"
            return Problem("algorithm", f"{key} is {message}: write algorithm: {example}")

        check_params(
            name, {}, max_trials, lambda p: "algorithm", root.problems, root.warnings, missing=needs_settings
        )
        return Algorithm(name=name)
    if not isinstance(value, dict):
        root.problem(f"must be a name or an object {{name, ...settings}}, got {show(value)}", "algorithm")
        return None
    algo = root.at("algorithm", value)
    given = algo.str("name", required=True)
    if given is None:
        return None
    name = canonical_algorithm(given)
    if name is None:
        algo.problem(unknown_algorithm(given), "name")
        return None

    eta = algo.number("eta", gt=1)
    mapping = HYPERBAND_TO_WMLA if name == "hyperband" else NATIVE_TO_WMLA
    params: dict[str, str] = {}
    where: dict[str, str] = {}  # WMLA name -> native key
    for key in algo.fields():
        if key in ("name", "eta"):
            continue
        if not isinstance(key, str):
            algo.problem(f"setting names must be strings, got {show(key)}")
            continue
        text = _setting_text(algo, key, algo.data[key])
        if text is None:
            continue
        wmla_name = mapping.get(key, key)
        params[wmla_name] = text
        where[wmla_name] = key
    if eta is not None and name in ("random", "tpe", "bayesian", "grid"):
        algo.warn(f"ignored algorithm.eta: not used by {display(name)}")
        eta = None

    def locate(wmla_name: str) -> str:
        return f"algorithm.{where.get(wmla_name, wmla_name)}"

    def missing(wmla_name: str, message: str) -> Problem:
        return Problem(f"algorithm.{WMLA_TO_HYPERBAND.get(wmla_name, wmla_name)}", message)

    check_params(name, params, max_trials, locate, algo.problems, algo.warnings, eta=eta, missing=missing)
    return Algorithm(name=name, params=params, eta=eta)


def _check_resource_name(root: Reader, algorithm: Algorithm | None, space: SearchSpace) -> None:
    """Hyperband's resource_name carries each trial's budget: it must not be a space parameter too."""
    found = resource_param(algorithm.name, algorithm.params) if algorithm is not None else None
    if found is not None and found[1] in space.names:
        name, value = found
        root.problems.append(
            Problem(f"algorithm.{WMLA_TO_HYPERBAND.get(name, name)}", resource_conflict(value, "space"))
        )


def _strategies(r: Reader, allowed: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key in r.fields():
        if not isinstance(key, str) or not key.strip():
            r.problem(f"metric names must be non-empty strings, got {show(key)}")
            continue
        strategy = r.choice(key, allowed, required=True)
        if strategy is not None:
            out[key] = strategy
    return out


def _objective(root: Reader) -> Objective | None:
    if root.has("objective"):
        if root.has("metric") or root.has("direction"):
            root.problem("give either objective: {metric, direction} or top-level metric/direction", "metric")
        obj = root.child("objective")
        if obj is None:
            return None
        obj.check_known(("metric", "direction", "additional"))
    elif root.has("metric") or root.has("direction"):
        obj = root
    else:
        root.problem("required: {metric: NAME, direction: minimize|maximize}", "objective")
        return None
    metric = obj.str("metric", required=True)
    direction = obj.choice("direction", DIRECTIONS, required=True)
    extra = obj.child("additional")
    additional = _strategies(extra, STRATEGIES) if extra is not None else {}
    if metric is None or direction is None:
        return None
    return Objective(metric=metric, direction=direction, additional=additional)  # type: ignore[arg-type]


def _resources(root: Reader) -> ResourceRequest:
    res = root.child("resources")
    if res is None:
        return ResourceRequest()
    res.check_known(("gpu_type", "gpus", "launcher"))
    launcher = res.choice("launcher", {"torchrun": "torchrun", "python": "python"})
    gpu_type = res.str("gpu_type")
    if gpu_type is not None:
        gpu_type = normalize_gpu_type(gpu_type) or None
        if gpu_type is None:
            res.problem(f"must contain letters or digits, got {show(res.get('gpu_type'))}", "gpu_type")
    gpus = res.int("gpus", minimum=0, default=1 if gpu_type else 0, allow_str=False)
    if not gpus:
        if gpu_type and res.has("gpus"):
            res.warn("ignored resources.gpu_type: gpus is 0 (a CPU trial)")
        return ResourceRequest()
    return ResourceRequest(gpu_type=gpu_type or "any", gpus=gpus, launcher=launcher or "torchrun")


def _env(root: Reader) -> dict[str, str]:
    env = root.child("env")
    out: dict[str, str] = {}
    if env is None:
        return out
    for key in env.fields():
        value = env.data[key]
        if not isinstance(key, str) or not ENV_NAME_RE.fullmatch(key):
            env.problem(f"{show(key)} is not a valid environment variable name")
            continue
        if key.upper().startswith("HPO_"):
            env.problem("names starting with HPO_ are reserved for hpo-queue's own settings", key)
            continue
        if isinstance(value, str):
            out[key] = value
        elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            out[key] = str(value)
        else:
            env.problem(f"must be a string (quote it in YAML), got {show(value)}", key)
    return out


# --- search space ------------------------------------------------------------------------
def _space(root: Reader, algorithm: str | None) -> SearchSpace:
    grid = algorithm == "grid"
    space = root.child("space")
    if space is None:
        if not grid and not root.has("space"):
            root.problem("required: a mapping of parameter name -> {type, ...}", "space")
        return SearchSpace()
    if not space.fields() and not grid:
        space.problem("must have at least one parameter")
    params: list[NumericParam | CategoricalParam] = []
    for name in space.fields():
        if not isinstance(name, str) or not name.strip():
            space.problem(f"parameter names must be non-empty strings, got {show(name)}")
            continue
        if space.get(name) is None:
            space.problem("must be an object like {type: float, low: 0, high: 1}", name)
            continue
        param = space.child(name)
        if param is None:
            continue
        built = _param(param, name)
        if built is not None:
            params.append(built)
    return SearchSpace(params=tuple(params))


def _param(p: Reader, name: str) -> NumericParam | CategoricalParam | None:
    if p.get("type") is None and p.has("choices"):
        kind: str | None = "categorical"
    else:
        kind = p.choice("type", PARAM_TYPES, required=True)
    if kind is None:
        return None
    try:
        if kind == "categorical":
            return _categorical(p, name)
        return _numeric(p, name, kind)
    except ValidationError as exc:
        p.problems.extend(validation_problems(exc, p.path))
        return None


def _numeric(p: Reader, name: str, kind: str) -> NumericParam | None:
    p.check_known(NUMERIC_KEYS)
    integer = kind == "int"
    read = p.int if integer else p.number
    low = read("low", required=True)
    high = read("high", required=True)
    ok = low is not None and high is not None
    if low is not None and high is not None and not high > low:
        p.problem(f"must be greater than low ({fmt(low)})", "high")
        ok = False
    log = p.bool("log")
    step = optional_number(p, "step", zero_is_unset=False)
    power = optional_number(p, "power", zero_is_unset=False)
    if log:
        if step is not None:
            p.problem("cannot be combined with step", "log")
            ok = False
        if power is not None:
            p.problem("cannot be combined with power (power already makes the scale logarithmic)", "log")
            ok = False
        if low is not None and low <= 0:
            p.problem(f"must be greater than 0 with log: true, got {fmt(low)}", "low")
            ok = False
    ok = (
        check_step_power(
            p,
            integer=integer,
            low=low,
            high=high,
            step=step,
            power=power,
            low_key="low",
            high_key="high",
            int_label="for an int parameter",
        )
        and ok
    )
    if not ok or low is None or high is None:
        return None
    return NumericParam(type=kind, name=name, low=low, high=high, log=bool(log), step=step, power=power)  # type: ignore[arg-type]


def _categorical(p: Reader, name: str) -> CategoricalParam | None:
    p.check_known(CATEGORICAL_KEYS)
    items = p.list("choices", required=True, nonempty=True)
    if items is None:
        return None
    values: list[Any] = []
    ok = True
    for item in items:
        value = item.data
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            item.problem(f"must be a string or a number, got {show(value)}")
            ok = False
            continue
        if isinstance(value, float) and not math.isfinite(value):
            item.problem(f"must be a finite number, got {show(value)}")
            ok = False
            continue
        if value in values:
            item.problem(f"duplicate of choices[{values.index(value)}]")
            ok = False
            continue
        values.append(value)
    if not ok:
        return None
    if all(isinstance(v, int) for v in values):
        return CategoricalParam(name=name, choices=tuple(values), value_type="int")
    if all(isinstance(v, int | float) for v in values):
        return CategoricalParam(name=name, choices=tuple(float(v) for v in values), value_type="double")
    return CategoricalParam(name=name, choices=tuple(values), value_type="str")


def _experiments(root: Reader, algorithm: str | None, space: SearchSpace) -> tuple[Config, ...]:
    if algorithm != "grid":
        if root.has("experiments") and algorithm is not None:
            root.warn(f"ignored experiments: only grid uses them, not {display(algorithm)}")
        return ()
    items = root.list("experiments")
    if items is None:
        if root.has("experiments"):
            return ()
        if len(space) == 0:
            if not any(p.path.startswith("space") for p in root.problems):
                root.problem("required for grid, unless the space is finite", "experiments")
        elif space.size is None:
            continuous = [p.name for p in space.params if p.size is None]
            root.problem(
                f"grid without experiments needs a finite space; continuous: {', '.join(continuous)}", "space"
            )
        return ()
    if not items:
        root.problem("must not be empty", "experiments")
    out: list[Config] = []
    for item in items:
        if not item.is_dict:
            item.problem(f"must be a mapping of parameter name -> value, got {show(item.data)}")
            continue
        if not item.fields():
            item.problem("must set at least one parameter")
        config: Config = {}
        for key in item.fields():
            value = item.data[key]
            if not isinstance(key, str) or not key.strip():
                item.problem(f"parameter names must be non-empty strings, got {show(key)}")
            elif isinstance(value, bool) or not isinstance(value, str | int | float):
                item.problem(f"must be a string or a number, got {show(value)}", key)
            elif isinstance(value, float) and not math.isfinite(value):
                item.problem(f"must be a finite number, got {show(value)}", key)
            else:
                config[key] = value
        out.append(config)
    return tuple(out)
