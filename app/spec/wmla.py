"""The WMLA `data` payload of POST /hypersearch -> ExperimentSpec (reference/wmla-hpo.md section 2).

Every problem is collected with the path of its field before anything is built. Unknown keys are
warnings (IBM's own payloads carry leftovers); wrong values of known keys are errors.

Documented supersets of WMLA: `maxRunTime` may be fractional minutes; numeric fields also accept
numbers as strings; `algoDef.trialTimeout` (seconds), `algoDef.killOnTimeout` and
`algoDef.syncBatches` set the matching limits; `discreteStrVal` is an alias of `discreateStrVal`.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import ValidationError

from app.space import CategoricalParam, Config, NumericParam, SearchSpace
from app.spec.algorithms import (
    canonical_algorithm,
    check_params,
    display,
    resource_conflict,
    resource_param,
    unknown_algorithm,
)
from app.spec.args import parse_launcher_args, split_args
from app.spec.errors import Problem, SpecError
from app.spec.model import (
    Algorithm,
    ExperimentSpec,
    Launcher,
    Limits,
    Objective,
    ResourceRequest,
    SchedulerSpec,
)
from app.spec.reader import NAME_RE, NAME_RULE, Reader, fmt, show, to_int, to_number, validation_problems
from app.spec.resources import wmla_resources
from app.spec.scheduler import scheduler_from, wmla_scheduler

TOP_KEYS = ("hpoName", "modelSpec", "algoDef", "hyperParams", "experiments")
MODEL_KEYS = ("sigName", "args")
ALGO_KEYS = (
    "algorithm",
    "maxRunTime",
    "maxJobNum",
    "maxParalleJobNum",
    "maxParalleJob",
    "objectiveMetric",
    "objective",
    "additionalMetrics",
    "hyperbandEta",
    "algoParams",
    "trialTimeout",
    "killOnTimeout",
    "syncBatches",
    "maxRetries",
)
PARAM_KEYS = (
    "name",
    "type",
    "dataType",
    "minDbVal",
    "maxDbVal",
    "minIntVal",
    "maxIntVal",
    "discreteDbVal",
    "discreteIntVal",
    "discreateStrVal",
    "discreteStrVal",
    "step",
    "power",
    "userDefined",
)
DIRECTIONS = {"minimize": "minimize", "maximize": "maximize"}
STRATEGIES = ("minimize", "maximize", "latest")
PARAM_TYPES = {"range": "Range", "discrete": "Discrete"}
DATA_TYPES = {"double": "DOUBLE", "int": "INT", "str": "STR", "string": "STR"}


# --- shared with the native form ----------------------------------------------------------
def optional_number(r: Reader, key: str, *, zero_is_unset: bool) -> float | None:
    """`step`/`power`: a number or numeric string; "", null (and 0 when `zero_is_unset`) = not set."""
    value = r.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(to_number(value))
    except ValueError:
        r.problem(f"must be a number, got {show(value)}", key)
        return None
    if zero_is_unset and number == 0:
        return None
    return number


def check_step_power(
    r: Reader,
    *,
    integer: bool,
    low: float | None,
    high: float | None,
    step: float | None,
    power: float | None,
    low_key: str,
    high_key: str,
    int_label: str,
) -> bool:
    """The rules for `step` and `power` on a numeric range; False when a problem was recorded."""
    ok = True
    if low is not None and high is not None and not math.isfinite(high - low):
        r.problem("the range is too wide", high_key)
        return False
    if step is not None:
        if step <= 0:
            r.problem(f"must be greater than 0, got {fmt(step)}", "step")
            ok = False
        elif integer and not step.is_integer():
            r.problem(f"must be an integer {int_label}, got {fmt(step)}", "step")
            ok = False
        elif low is not None and high is not None and high > low and step > (high - low) * (1 + 1e-9):
            r.problem(f"must be at most {high_key} - {low_key} ({fmt(high - low)}), got {fmt(step)}", "step")
            ok = False
    if power is not None:
        if power <= 0 or power == 1:
            r.problem(f"must be greater than 0 and not 1, got {fmt(power)}", "power")
            return False
        if integer and not power.is_integer():
            r.problem(f"must be an integer {int_label} (so values stay integers), got {fmt(power)}", "power")
            ok = False
        if integer and low is not None and low < 0:
            r.problem(f"must be >= 0 with power {int_label} (values stay integers), got {fmt(low)}", low_key)
            ok = False
        if low is not None and high is not None and max(abs(low), abs(high)) * abs(math.log(power)) > 700:
            r.problem(f"power ** {low_key}..{high_key} is out of floating-point range", "power")
            ok = False
    return ok


def build_spec(problems: list[Problem], warnings: list[str], **fields: Any) -> ExperimentSpec:
    """ExperimentSpec(**fields), or SpecError with every problem."""
    if problems:
        raise SpecError(problems)
    try:
        return ExperimentSpec(warnings=tuple(warnings), **fields)
    except ValidationError as exc:
        raise SpecError(validation_problems(exc)) from None


# --- WMLA --------------------------------------------------------------------------------
def parse_wmla(data: Any) -> ExperimentSpec:
    """Validate a WMLA payload (already JSON-decoded); SpecError lists every problem."""
    root = Reader(data)
    if not isinstance(data, dict):
        raise SpecError([Problem("", f"the payload must be a JSON object, got {show(data)}")])
    root.check_known(TOP_KEYS)
    name = root.str("hpoName", pattern=NAME_RE, rule=NAME_RULE)
    model, resources = _model_spec(root)
    algorithm, objective, limits, where, scheduler = _algo_def(root)
    space = _hyper_params(root, algorithm.name if algorithm else None)
    _check_resource_name(root, algorithm, space, where)
    experiments = _experiments(root, algorithm.name if algorithm else None)
    return build_spec(
        root.problems,
        root.warnings,
        name=name,
        source="wmla",
        model=model,
        algorithm=algorithm,
        objective=objective,
        limits=limits,
        space=space,
        experiments=experiments,
        resources=resources,
        scheduler=scheduler,
        raw={str(k): v for k, v in data.items()},
    )


def _model_spec(root: Reader) -> tuple[Launcher | None, ResourceRequest]:
    spec = root.child("modelSpec", required=True)
    if spec is None:
        return None, ResourceRequest()
    spec.check_known(MODEL_KEYS)
    sig_name = spec.str("sigName", allow_empty=True) or None
    tokens = split_args(spec)
    if tokens is None:
        return None, ResourceRequest()
    args = parse_launcher_args(tokens, spec)
    # Elastic distributed training: numWorker (or maxWorkers) workers of gpuPerWorker GPUs each,
    # run here as one multi-GPU trial on one machine (torchrun, one process per GPU).
    gpus = args.gpus * (args.num_workers or 1) if args.gpus else args.gpus
    resources = wmla_resources(gpus, sig_name)
    if args.main is None:
        return None, resources
    launcher = Launcher(
        main=args.main,
        model_dir=args.model_dir,
        args=tuple(args.passthrough),
        framework=args.framework,
        python_version=args.python_version,
        data_path=args.data_path,
        sig_name=sig_name,
        options=args.options,
    )
    return launcher, resources


def _algo_def(
    root: Reader,
) -> tuple[Algorithm | None, Objective | None, Limits, dict[str, int], SchedulerSpec | None]:
    """The algorithm, objective and limits, plus each algoParams name's index (for problem paths)."""
    algo = root.child("algoDef", required=True)
    if algo is None:
        return None, None, Limits(), {}, None
    algo.check_known(ALGO_KEYS)

    name: str | None = None
    given = algo.str("algorithm", required=True)
    if given is not None:
        name = canonical_algorithm(given)
        if name is None:
            algo.problem(unknown_algorithm(given), "algorithm")

    limits = _limits(algo)
    objective = _objective(algo)

    eta = algo.number("hyperbandEta", gt=1)
    if eta is not None and name in ("random", "tpe", "bayesian", "grid"):
        algo.warn(f"ignored algoDef.hyperbandEta: not used by {display(name)}")
        eta = None

    params, where = _algo_params(algo)
    scheduler = None
    stop_values, stop_names = wmla_scheduler(params)
    if stop_names and name == "hyperband":
        algo.problem("EarlyStop cannot be combined with Hyperband, which has its own rungs", "algoParams")
    elif stop_names:
        scheduler, found = scheduler_from(stop_values)
        for field, message in found:
            param = stop_names[field]
            algo.problems.append(Problem(f"algoDef.algoParams[{where[param]}].value ({param})", message))
    searcher_params = {k: v for k, v in params.items() if k not in stop_names.values() or name == "hyperband"}
    if name is not None:
        check_params(
            name,
            searcher_params,
            limits.max_trials,
            lambda p: f"algoDef.algoParams[{where[p]}].value ({p})",
            algo.problems,
            algo.warnings,
            label=lambda p: f"algoDef.algoParams[{where[p]}] ({p})",
            eta=eta,
            missing=_missing_param,
        )
    algorithm = Algorithm(name=name, params=params, eta=eta) if name is not None else None
    return algorithm, objective, limits, where, scheduler


def _missing_param(name: str, message: str) -> Problem:
    """A required algoParams entry that is absent ("ResourceName is required for Hyperband")."""
    if name == "hyperbandEta":
        return Problem("algoDef.hyperbandEta", message)
    return Problem("algoDef.algoParams", f"{name} is {message}")


def _check_resource_name(
    root: Reader, algorithm: Algorithm | None, space: SearchSpace, where: dict[str, int]
) -> None:
    """Hyperband's ResourceName carries each trial's budget: it must not be a hyperParams name too."""
    found = resource_param(algorithm.name, algorithm.params) if algorithm is not None else None
    if found is not None and found[1] in space.names:
        name, value = found
        path = f"algoDef.algoParams[{where[name]}].value ({name})"
        root.problems.append(Problem(path, resource_conflict(value, "hyperParams")))


def _limits(algo: Reader) -> Limits:
    run_time = algo.number("maxRunTime", gt=0, unlimited=True)
    max_trials = algo.int("maxJobNum", minimum=1, unlimited=True)
    parallel = algo.int("maxParalleJobNum", minimum=1)
    variant = algo.int("maxParalleJob", minimum=1)
    if parallel is not None and variant is not None and parallel != variant:
        algo.problem(f"conflicts with maxParalleJobNum ({parallel}); give one of them", "maxParalleJob")
    timeout = algo.number("trialTimeout", gt=0)
    kill = algo.bool("killOnTimeout", allow_str=True)
    sync = algo.bool("syncBatches", allow_str=True)
    retries = algo.int("maxRetries", minimum=0, maximum=100, default=2)
    return Limits(
        max_trials=max_trials,
        max_parallel=parallel or variant or 1,
        max_run_time_s=run_time * 60 if run_time is not None else None,
        trial_timeout_s=timeout,
        kill_on_timeout=bool(kill),
        sync_batches=bool(sync),
        retries=2 if retries is None else retries,
    )


def _objective(algo: Reader) -> Objective | None:
    metric = algo.str("objectiveMetric", required=True)
    direction = algo.choice("objective", DIRECTIONS, required=True)
    additional: dict[str, str] = {}
    extra = algo.child("additionalMetrics")
    if extra is not None:
        for key in extra.fields():
            value = extra.data[key]
            if not isinstance(key, str) or not key.strip():
                extra.problem(f"metric names must be non-empty strings, got {show(key)}")
                continue
            if not isinstance(value, str):
                extra.problem(f"must be minimize, maximize or latest, got {show(value)}", key)
                continue
            strategy = value.strip().lower()
            if strategy not in STRATEGIES:
                extra.warn(f"algoDef.additionalMetrics.{key}: strategy {value!r} read as latest")
                strategy = "latest"
            additional[key] = strategy
    if metric is None or direction is None:
        return None
    return Objective(metric=metric, direction=direction, additional=additional)  # type: ignore[arg-type]


def _algo_params(algo: Reader) -> tuple[dict[str, str], dict[str, int]]:
    """algoParams as {name: string value} and {name: index}."""
    params: dict[str, str] = {}
    where: dict[str, int] = {}
    items = algo.list("algoParams")
    for i, item in enumerate(items or ()):
        if not item.is_dict:
            item.problem(f"must be an object {{name, value}}, got {show(item.data)}")
            continue
        item.check_known(("name", "value"))
        name = item.str("name", required=True)
        value = item.get("value")
        text: str | None = None
        if value is None:
            item.problem("required", "value")
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str):
            text = value
        elif isinstance(value, int | float) and math.isfinite(value):
            text = str(value)
        else:
            item.problem(f"must be a string or a number, got {show(value)}", "value")
        if name is None or text is None:
            continue
        if name in params:
            item.problem(f"duplicate algoParams name {name!r} (also algoParams[{where[name]}])", "name")
            continue
        params[name] = text
        where[name] = i
    return params, where


# --- search space ------------------------------------------------------------------------
def _hyper_params(root: Reader, algorithm: str | None) -> SearchSpace:
    grid = algorithm == "grid"
    if not root.has("hyperParams"):
        if not grid:
            root.problem("required (the search space): a non-empty list of parameters", "hyperParams")
        return SearchSpace()
    items = root.list("hyperParams", nonempty=not grid)
    params: list[NumericParam | CategoricalParam] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items or ()):
        if not item.is_dict:
            item.problem(f"must be an object, got {show(item.data)}")
            continue
        item.check_known(PARAM_KEYS)
        name = item.str("name", required=True)
        if name is not None:
            if name in seen:
                item.problem(f"duplicate parameter name {name!r} (also hyperParams[{seen[name]}])", "name")
                name = None
            else:
                seen[name] = i
        kind = item.choice("type", PARAM_TYPES, required=True)
        dtype = item.choice("dataType", DATA_TYPES, required=True)
        if kind is None or dtype is None:
            continue
        param = _range(item, dtype) if kind == "Range" else _discrete(item, dtype)
        if param is not None and name is not None:
            try:
                params.append(param(name))
            except ValidationError as exc:
                root.problems.extend(validation_problems(exc, item.path))
    return SearchSpace(params=tuple(params))


def _range(item: Reader, dtype: str) -> Any:
    if dtype == "STR":
        item.problem("Range needs dataType DOUBLE or INT, got STR (use Discrete)", "dataType")
        return None
    integer = dtype == "INT"
    lo_key, hi_key = ("minIntVal", "maxIntVal") if integer else ("minDbVal", "maxDbVal")
    read = item.int if integer else item.number
    low = read(lo_key, required=True)
    high = read(hi_key, required=True)
    ok = low is not None and high is not None
    if low is not None and high is not None and not high > low:
        item.problem(f"must be greater than {lo_key} ({fmt(low)})", hi_key)
        ok = False
    step = optional_number(item, "step", zero_is_unset=True)
    power = optional_number(item, "power", zero_is_unset=True)
    ok = (
        check_step_power(
            item,
            integer=integer,
            low=low,
            high=high,
            step=step,
            power=power,
            low_key=lo_key,
            high_key=hi_key,
            int_label="for dataType INT",
        )
        and ok
    )
    if not ok:
        return None
    kind = "int" if integer else "float"
    return lambda name: NumericParam(type=kind, name=name, low=low, high=high, step=step, power=power)


def _discrete(item: Reader, dtype: str) -> Any:
    if dtype == "STR":
        key = "discreateStrVal"
        primary, alias = item.get("discreateStrVal"), item.get("discreteStrVal")
        if primary in (None, []) and alias not in (None, []):
            key = "discreteStrVal"
        elif primary not in (None, []) and alias not in (None, []) and primary != alias:
            item.problem("conflicts with discreateStrVal; give one of them", "discreteStrVal")
            return None
    else:
        key = "discreteIntVal" if dtype == "INT" else "discreteDbVal"
    elems = item.list(key, required=True, nonempty=True)
    if elems is None:
        return None
    values: list[Any] = []
    ok = True
    for elem in elems:
        value = _element(elem, dtype)
        if value is None:
            ok = False
            continue
        if value in values:
            elem.problem(f"duplicate of {key}[{values.index(value)}]")
            ok = False
            continue
        values.append(value)
    if not ok:
        return None
    value_type = {"DOUBLE": "double", "INT": "int", "STR": "str"}[dtype]
    return lambda name: CategoricalParam(name=name, choices=tuple(values), value_type=value_type)


def _element(elem: Reader, dtype: str) -> Any:
    value = elem.data
    try:
        if dtype == "INT":
            return to_int(value)
        if dtype == "DOUBLE":
            return float(to_number(value))
    except ValueError:
        what = "an integer" if dtype == "INT" else "a number"
        elem.problem(f"must be {what}, got {show(value)}")
        return None
    if not isinstance(value, str):
        elem.problem(f"must be a string, got {show(value)}")
        return None
    return value


# --- ExperimentGridSearch --------------------------------------------------------------------
def convert_fixed(value: Any, dtype: str) -> Any:
    """A `fixedVal` (string, numbers accepted) as DOUBLE/INT/STR; ValueError with the reason."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"must be a string or a number, got {show(value)}")
    try:
        if dtype == "DOUBLE":
            return float(to_number(value))
        if dtype == "INT":
            return to_int(value)
    except ValueError:
        what = "an integer" if dtype == "INT" else "a number"
        raise ValueError(f"must be {what} for dataType {dtype}, got {show(value)}") from None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and math.isfinite(value):
        return str(value)
    raise ValueError(f"must be a string, got {show(value)}")


def _experiments(root: Reader, algorithm: str | None) -> tuple[Config, ...]:
    if algorithm != "grid":
        if root.has("experiments") and algorithm is not None:
            root.warn(f"ignored experiments: only ExperimentGridSearch uses them, not {display(algorithm)}")
        return ()
    if not root.has("experiments"):
        root.problem("required for ExperimentGridSearch: the list of configurations to run", "experiments")
        return ()
    items = root.list("experiments", nonempty=True)
    out: list[Config] = []
    for item in items or ():
        if not item.is_dict:
            item.problem(f"must be an object {{id, hyperParams}}, got {show(item.data)}")
            continue
        item.check_known(("id", "hyperParams"))
        config: Config = {}
        for hp in item.list("hyperParams", required=True, nonempty=True) or ():
            if not hp.is_dict:
                hp.problem(f"must be an object {{name, dataType, fixedVal}}, got {show(hp.data)}")
                continue
            hp.check_known(("name", "dataType", "fixedVal"))
            name = hp.str("name", required=True)
            dtype = hp.choice("dataType", DATA_TYPES, required=True)
            raw = hp.get("fixedVal")
            if raw is None:
                hp.problem("required", "fixedVal")
                continue
            if dtype is None:
                continue
            try:
                value = convert_fixed(raw, dtype)
            except ValueError as exc:
                hp.problem(str(exc), "fixedVal")
                continue
            if name is None:
                continue
            if name in config:
                hp.problem(f"duplicate name {name!r} in this experiment", "name")
                continue
            config[name] = value
        out.append(config)
    return tuple(out)
