"""WMLA `modelSpec.args`: take out our launcher flags, keep the rest for the training script.

`args` is a `dlicmd.py` command line (a string, shlex-split; a list of strings is accepted too).
The launcher flags below belong to the launcher and never reach the script; each takes exactly
one value, as `--flag value` or `--flag=value`. Every other token passes through in order.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

from app.spec.reader import Reader, show, to_int

LAUNCHER_FLAGS: tuple[str, ...] = (
    "exec-start",
    "cs-datastore-meta",
    "python-version",
    "gpuPerWorker",
    "numWorker",
    "workerDeviceNum",
    "edt-options",
    "debug-level",
    "appName",
    "model-main",
    "model-dir",
)
COUNT_FLAGS: tuple[str, ...] = ("gpuPerWorker", "numWorker", "workerDeviceNum")


@dataclass
class LauncherArgs:
    """The launcher flags of one `args` line and the tokens left for the script."""

    options: dict[str, str] = field(default_factory=dict)  # flag name without dashes -> value
    passthrough: list[str] = field(default_factory=list)
    main: str | None = None
    model_dir: str | None = None
    framework: str | None = None
    python_version: str | None = None
    data_path: str | None = None
    gpus: int | None = None  # --gpuPerWorker / --workerDeviceNum
    num_workers: int | None = None


def _flag_name(token: str) -> tuple[str | None, str | None]:
    """("model-main", "x.py") for "--model-main=x.py", ("model-main", None) for "--model-main"."""
    if not token.startswith("--"):
        return None, None
    name, eq, value = token[2:].partition("=")
    if name not in LAUNCHER_FLAGS:
        return None, None
    return name, (value if eq else None)


def split_args(reader: Reader, key: str = "args") -> list[str] | None:
    """The tokens of `reader[key]`: a shell-like string or a list of strings; None on a problem."""
    value: Any = reader.get(key)
    if value is None:
        reader.problem("required (the launcher command line, with --model-main)", key)
        return None
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as exc:
            reader.problem(f"cannot be split into arguments: {exc}", key)
            return None
    if isinstance(value, list):
        bad = [i for i, token in enumerate(value) if not isinstance(token, str)]
        for i in bad:
            reader.problem(f"must be a string, got {show(value[i])}", f"{key}[{i}]")
        return None if bad else list(value)
    reader.problem(f"must be a string or a list of strings, got {show(value)}", key)
    return None


def _inside(path: str) -> bool:
    """True when a relative path stays inside its base folder (no '..' parts)."""
    return ".." not in path.replace("\\", "/").split("/")


def _datastore(value: str, reader: Reader, key: str, out: LauncherArgs) -> None:
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        name, eq, text = part.partition("=")
        name = name.strip()
        if not eq:
            reader.problem(f"--cs-datastore-meta: expected key=value items, got {show(part)}", key)
        elif name == "type":
            if text.strip().lower() != "fs":
                reader.problem(f"--cs-datastore-meta: type must be fs, got {show(text)}", key)
        elif name == "data_path":
            if not _inside(text):
                reader.problem(f"--cs-datastore-meta: data_path must not contain '..', got {show(text)}", key)
            elif text.strip():
                out.data_path = text.strip()
        else:
            reader.warn(f"ignored unknown key {reader.path_of(key)} --cs-datastore-meta {name}")


def parse_launcher_args(tokens: list[str], reader: Reader, key: str = "args") -> LauncherArgs:
    """Separate launcher flags from script arguments; problems go to `reader` at `key`."""
    out = LauncherArgs()
    i = 0
    while i < len(tokens):
        token = tokens[i]
        name, value = _flag_name(token)
        if name is None:
            out.passthrough.append(token)
            i += 1
            continue
        if value is None:  # --flag value
            if i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
                value = tokens[i + 1]
                i += 2
            else:
                i += 1
        else:
            i += 1
        if value is None or not value.strip():
            reader.problem(f"--{name} needs a value", key)
            continue
        if name in out.options and out.options[name] != value:
            reader.problem(f"--{name} given twice ({show(out.options[name])} and {show(value)})", key)
            continue
        out.options[name] = value
    _interpret(out, reader, key)
    return out


def _edt_max_workers(text: str | None, reader: Reader, key: str) -> int | None:
    """`--edt-options maxWorkers=4,minWorkers=1` -> 4 (elastic training runs up to that many)."""
    if not text:
        return None
    for item in text.replace(";", ",").split(","):
        name, _, value = item.partition("=")
        if name.strip().lower() == "maxworkers":
            try:
                n = to_int(value.strip())
            except ValueError:
                n = 0
            if n < 1:
                reader.problem(f"--edt-options maxWorkers must be a positive integer, got {show(value)}", key)
                return None
            return n
    return None


def _interpret(out: LauncherArgs, reader: Reader, key: str) -> None:
    opts = out.options
    counts: dict[str, int] = {}
    for name in COUNT_FLAGS:
        if name in opts:
            try:
                n = to_int(opts[name])
            except ValueError:
                n = -1
            if n < 0:
                reader.problem(f"--{name} must be a non-negative integer, got {show(opts[name])}", key)
            else:
                counts[name] = n
    gpus, devices = counts.get("gpuPerWorker"), counts.get("workerDeviceNum")
    if gpus is not None and devices is not None and gpus != devices:
        reader.problem(f"--gpuPerWorker ({gpus}) and --workerDeviceNum ({devices}) disagree", key)
    out.gpus = counts.get("gpuPerWorker", counts.get("workerDeviceNum"))
    out.num_workers = counts.get("numWorker") or _edt_max_workers(opts.get("edt-options"), reader, key)

    main = opts.get("model-main")
    if main is None:
        if not any(p.path == reader.path_of(key) and "--model-main" in p.message for p in reader.problems):
            reader.problem("--model-main is required (the training script to run)", key)
    elif main.startswith("/") or not _inside(main):
        reader.problem(f"--model-main must be a path inside the model directory, got {show(main)}", key)
    else:
        out.main = main
    model_dir = opts.get("model-dir")
    if model_dir is not None:
        if model_dir.startswith("/") or not _inside(model_dir):
            reader.problem(f"--model-dir must be a folder name, got {show(model_dir)}", key)
        else:
            out.model_dir = model_dir.strip("/") or None
    out.framework = opts.get("exec-start")
    out.python_version = opts.get("python-version")
    if "cs-datastore-meta" in opts:
        _datastore(opts["cs-datastore-meta"], reader, key, out)
