"""Submit one or many experiments to an `hpo serve`/`hpo api` server, follow them, print the best.

    # one experiment per spec file
    python scripts/enqueue.py examples/digits/experiment.yaml examples/digits/experiment.json \\
        --model-dir examples/digits
    # a sweep: one experiment per hidden size (the parameter fixed), 6 trials each
    python scripts/enqueue.py examples/digits/experiment.yaml --model-dir examples/digits \\
        --sweep hidden_size=32,64,128 --set max_trials=6
    # narrowed ranges, and two data sets (model.data_path: a folder under the server's DLI_DATA_FS)
    python scripts/enqueue.py spec.yaml --model-dir model --sweep learning_rate=1e-4:1e-3,1e-3:1e-2 \\
        --sweep model.data_path=set-a,set-b

`--sweep NAME=V1,V2,...` makes one experiment per value (several --sweep options: one per
combination). When NAME is a parameter of the search space, a value fixes it (a one-choice
categorical, so it still reaches config.json) and `LOW:HIGH` narrows its range (for a WMLA `power`
parameter the bounds are exponents, as in the spec); any other NAME is a dotted path into the spec
document (`max_trials`, `model.args`, `algoDef.maxJobNum`, `modelSpec.args`), set to the value read
as YAML (`4` is a number, `[--epochs, 2]` a list). `--set NAME=VALUE` does the same for every
experiment, skipping specs of the other form (`--set max_trials=4 --set algoDef.maxJobNum=4` serves
native and WMLA specs alike). Every variant is validated before anything is submitted.

The server and credentials come as for `hpo`: --url, else HPO_URL, else the default saved by
`hpo login`; --user with --password (or HPO_PASSWORD, else asked), else HPO_TOKEN, HPO_USER +
HPO_PASSWORD or the token `hpo login` saved.

Progress (one bar per experiment) goes to stderr, the table of results to stdout; with --json the
last line of stdout is a JSON list of {name, state, trials, best_value, best_params, message}.
Exit codes: 0 every experiment FINISHED with a best result, 1 one did not (or --timeout passed),
2 bad usage or spec, 3 the server cannot be reached, 130 interrupted (the experiments keep running
on the server; `hpo stop NAME` stops one).
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import getpass
import itertools
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a checkout without `pip install -e .`

from app.client import (
    DONE_STATES,
    HpoApiError,
    HpoClient,
    HpoConnectionError,
    HpoError,
    load_credentials,
)
from app.spec import WMLA_KEYS, SpecError, is_wmla, parse_spec
from app.spec.native import TOP_KEYS as NATIVE_TOP_KEYS

EXIT_OK, EXIT_INCOMPLETE, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
WMLA_CHOICES = {"double": "discreteDbVal", "int": "discreteIntVal", "str": "discreateStrVal"}
WMLA_BOUNDS = {"double": ("minDbVal", "maxDbVal"), "int": ("minIntVal", "maxIntVal")}


class UsageError(Exception):
    pass


# --- building the variants -------------------------------------------------------------------
def split_values(text: str) -> list[str]:
    """`a,b,[c, d]` -> ["a", "b", "[c, d]"]: commas inside brackets or braces do not split."""
    values, depth, current = [], 0, ""
    for char in text:
        if char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        if char == "," and depth == 0:
            values.append(current.strip())
            current = ""
        else:
            current += char
    values.append(current.strip())
    if any(v == "" for v in values):
        raise UsageError(f"empty value in {text!r}")
    return values


def parse_assignment(text: str, option: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise UsageError(f"{option} wants NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def load_document(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
        raise UsageError(f"{path}: not valid {kind}: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: the spec must be a mapping")
    return data


def space_names(doc: dict[str, Any]) -> set[str]:
    if is_wmla(doc):
        return {p.get("name") for p in doc.get("hyperParams") or [] if isinstance(p, dict)}
    space = doc.get("space")
    return set(space) if isinstance(space, dict) else set()


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"not a number: {text!r}") from None


def set_param(doc: dict[str, Any], name: str, raw: str) -> None:
    """Fix a search-space parameter to one value, or narrow its range with LOW:HIGH."""
    low_high = raw.split(":") if ":" in raw else None
    if low_high is not None and len(low_high) != 2:
        raise UsageError(f"{name}: a range is LOW:HIGH, got {raw!r}")
    if is_wmla(doc):
        entry = next(p for p in doc["hyperParams"] if isinstance(p, dict) and p.get("name") == name)
        kind = str(entry.get("dataType", "double")).lower()
        kind = "str" if kind == "string" else kind
        if low_high:
            if kind not in WMLA_BOUNDS:
                raise UsageError(f"{name}: a {kind} parameter has no range to narrow")
            lo_key, hi_key = WMLA_BOUNDS[kind]
            lo, hi = (_number(v) for v in low_high)
            entry.update({"type": "Range", lo_key: int(lo) if kind == "int" else lo,
                          hi_key: int(hi) if kind == "int" else hi})  # fmt: skip
            return
        value: Any = raw if kind == "str" else yaml.safe_load(raw)
        doc["hyperParams"][doc["hyperParams"].index(entry)] = {
            "name": name, "type": "Discrete", "dataType": entry.get("dataType", "DOUBLE"),
            WMLA_CHOICES.get(kind, "discreteDbVal"): [value],
        }  # fmt: skip
        return
    param = doc["space"][name]
    if low_high:
        if not isinstance(param, dict) or param.get("type") not in ("float", "int"):
            raise UsageError(f"{name}: only a float or int parameter has a range to narrow")
        lo, hi = (_number(v) for v in low_high)
        as_type = int if param["type"] == "int" else float
        param.update(low=as_type(lo), high=as_type(hi))
        return
    value = yaml.safe_load(raw)
    kind = param.get("type") if isinstance(param, dict) else None
    if kind in ("int", "float") and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise UsageError(f"{name}: a {kind} parameter takes a number, got {raw!r}")
    if kind == "int" and value != int(value):
        raise UsageError(f"{name}: an int parameter takes a whole number, got {raw!r}")
    value = int(value) if kind == "int" else float(value) if kind == "float" else value
    doc["space"][name] = {"type": "categorical", "choices": [value]}


def set_path(doc: dict[str, Any], path: str, raw: str) -> None:
    """Set a dotted path (`model.args`, `algoDef.maxJobNum`) to the value read as YAML."""
    keys = path.split(".")
    node = doc
    for key in keys[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[keys[-1]] = yaml.safe_load(raw)


def applies(doc: dict[str, Any], name: str) -> bool:
    """False for a path of the other spec form (`algoDef.maxJobNum` on a native spec)."""
    top = name.split(".")[0]
    if name in space_names(doc) or top == "experiments":
        return True
    if is_wmla(doc):
        return top not in NATIVE_TOP_KEYS
    return top not in (*WMLA_KEYS, "hpoName")


def apply(doc: dict[str, Any], name: str, raw: str) -> None:
    if name in space_names(doc):
        set_param(doc, name, raw)
    else:
        set_path(doc, name, raw)


def label(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", value).strip("_.-") or "x"


def build_variants(
    specs: list[Path], sweeps: list[str], sets: list[str], prefix: str | None
) -> list[tuple[str, dict[str, Any]]]:
    """(experiment name, spec document) for every spec file x sweep combination, all validated."""
    assignments = [parse_assignment(s, "--set") for s in sets]
    axes = []
    for sweep in sweeps:
        name, values = parse_assignment(sweep, "--sweep")
        axes.append([(name, value) for value in split_values(values)])
    stamp = dt.datetime.now().strftime("%m%d-%H%M%S")
    variants: list[tuple[str, dict[str, Any]]] = []
    problems: list[str] = []
    tags = {path: label(path.stem) for path in specs}
    if len(set(tags.values())) < len(specs):  # experiment.yaml and experiment.json
        tags = {path: label(path.name) for path in specs}
    used: set[str] = set()
    for path in specs:
        base = load_document(path)
        for name, raw in assignments:  # --set NAME=VALUE: where it fits this spec's form
            if applies(base, name):
                apply(base, name, raw)
                used.add(name)
        for axis in axes:  # --sweep: every spec, or the experiments would be duplicates
            if not applies(base, axis[0][0]):
                form = "WMLA" if is_wmla(base) else "native"
                raise UsageError(f"--sweep {axis[0][0]}: not a key of {path}'s {form} form")
        for combo in itertools.product(*axes):
            doc = copy.deepcopy(base)
            for name, raw in combo:
                apply(doc, name, raw)
            parts = [prefix or f"{tags[path]}-{stamp}"]
            if len(specs) > 1 and prefix:
                parts.append(tags[path])
            parts += [f"{label(name.split('.')[-1])}-{label(raw)}" for name, raw in combo]
            exp_name = "-".join(parts)[:128]
            try:
                parse_spec({**doc, ("hpoName" if is_wmla(doc) else "name"): exp_name}, source=str(path))
            except SpecError as exc:
                where = ", ".join(f"{n}={v}" for n, v in combo)
                problems.append(f"{path}{f' ({where})' if where else ''}:\n{exc}")
                continue
            variants.append((exp_name, doc))
    unused = [name for name, _ in assignments if name not in used]
    if unused:
        raise UsageError(f"--set {unused[0]}: not a key of any spec's form")
    if problems:
        raise UsageError("bad spec:\n" + "\n".join(problems))
    names = [n for n, _ in variants]
    if len(set(names)) != len(names):
        raise UsageError("two experiments would get the same name; give --prefix or fewer duplicates")
    return variants


# --- the server ------------------------------------------------------------------------------
def make_client(args: argparse.Namespace) -> HpoClient:
    if args.user:
        url = args.url or os.environ.get("HPO_URL") or load_credentials()["default"]
        if not url:
            raise HpoError("no server: give --url, set HPO_URL or run `hpo login URL`")
        password = args.password or os.environ.get("HPO_PASSWORD")
        if password is None:
            password = getpass.getpass(f"password for {args.user}: ")
        return HpoClient(url, user=args.user, password=password)
    client = HpoClient.from_environment(args.url)
    if not client.token and not client.password:
        client.close()
        raise HpoError(f"not logged in to {client.url}: run `hpo login {client.url}`, or give --user")
    return client


def done_count(exp: dict[str, Any]) -> int:
    counts = exp.get("counts") or {}
    return sum(int(counts.get(k, 0)) for k in ("finished", "failed", "early_stopped"))


def short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def follow(client: HpoClient, names: list[str], poll_s: float, timeout_s: float | None) -> dict[str, dict]:
    """Poll every experiment until each has ended (or the timeout passed), one bar per experiment."""
    latest: dict[str, dict] = {}
    deadline = time.monotonic() + timeout_s if timeout_s else None
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:>3.0f}/{task.fields[total_text]}"),
        TextColumn("{task.fields[state]:<9}"),
        TextColumn("best {task.fields[best]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        tasks = {
            n: progress.add_task(n, total=None, state="SUBMITTED", best="-", total_text="?") for n in names
        }
        while True:
            for name in names:
                if name in latest and latest[name]["state"] in DONE_STATES:
                    continue
                exp = client.experiment(name)
                latest[name] = exp
                total = exp.get("max_trials")
                done = done_count(exp)
                if exp["state"] in DONE_STATES and not total:
                    total = max(done, 1)
                progress.update(
                    tasks[name],
                    completed=done,
                    total=total,
                    total_text=str(total) if total else "∞",
                    state=exp["state"],
                    best="-" if exp.get("best_value") is None else short(exp["best_value"]),
                )
            if all(latest[n]["state"] in DONE_STATES for n in names):
                return latest
            if deadline is not None and time.monotonic() > deadline:
                return latest
            time.sleep(poll_s)


def results(client: HpoClient, latest: dict[str, dict]) -> list[dict[str, Any]]:
    rows = []
    for name, exp in latest.items():
        params = None
        if exp.get("best_value") is not None:
            try:
                params = client.best(name)["params"]
            except HpoApiError as exc:
                if exc.status != 404:
                    raise
        rows.append({
            "name": name, "state": exp["state"], "trials": exp.get("counts") or {},
            "metric": exp.get("metric"), "direction": exp.get("direction"),
            "best_value": exp.get("best_value"), "best_params": params, "message": exp.get("message"),
        })  # fmt: skip
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    table = Table(title="best results")
    table.add_column("experiment", overflow="fold")
    table.add_column("state")
    table.add_column("trials", justify="right")
    table.add_column("best", justify="right")
    table.add_column("best params", overflow="fold")
    for row in rows:
        counts = row["trials"]
        trials = f"{counts.get('finished', 0)} ok"
        if counts.get("failed"):
            trials += f", {counts['failed']} failed"
        best = "-" if row["best_value"] is None else f"{short(row['best_value'])} ({row['metric']})"
        params = " ".join(f"{k}={short(v)}" for k, v in (row["best_params"] or {}).items()) or "-"
        table.add_row(row["name"], row["state"], trials, best, params)
    Console(highlight=False, width=max(100, Console().width)).print(table)


# --- main ------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Submit experiments (spec files, sweeps) to an hpo server, follow them, print the best.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("specs", nargs="+", type=Path, help="experiment specs: WMLA JSON or native YAML/JSON")
    parser.add_argument("--model-dir", type=Path, required=True, help="local folder with the training code")
    parser.add_argument("--sweep", action="append", default=[], metavar="NAME=V1,V2",
                        help="one experiment per value (repeatable: every combination)")  # fmt: skip
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="change every experiment's spec (repeatable)")  # fmt: skip
    parser.add_argument("--prefix", help="experiment names start with this (default: <spec>-<time>)")
    parser.add_argument("--url", help="server URL (else HPO_URL, else the default saved by `hpo login`)")
    parser.add_argument("--user", help="user name (else HPO_TOKEN, HPO_USER, or `hpo login`'s token)")
    parser.add_argument("--password", help="with --user (better: HPO_PASSWORD, else it is asked)")
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between polls (default 2)")
    parser.add_argument("--timeout", type=float, help="stop waiting after this many seconds (exit 1)")
    parser.add_argument("--no-wait", action="store_true", help="submit, print the names and exit")
    parser.add_argument("--dry-run", action="store_true", help="print the specs that would be submitted")
    parser.add_argument("--json", action="store_true", help="end stdout with one JSON line of results")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    err = Console(stderr=True, highlight=False)
    try:
        if not args.model_dir.is_dir():
            raise UsageError(f"--model-dir {args.model_dir}: not a directory")
        variants = build_variants(args.specs, args.sweep, args.set, args.prefix)
        if args.dry_run:
            for name, doc in variants:
                print(f"# {name}\n{json.dumps(doc, indent=2)}")
            return EXIT_OK
        with make_client(args) as client, tempfile.TemporaryDirectory(prefix="enqueue-") as tmp:
            names = []
            for name, doc in variants:
                path = Path(tmp) / f"{name}.json"
                path.write_text(json.dumps(doc), encoding="utf-8")
                exp = client.submit(path, args.model_dir, name=name)
                names.append(exp["name"])
                err.print(f"submitted {exp['name']}")
                for warning in exp.get("warnings") or []:
                    err.print(f"  warning: {warning}")
            if args.no_wait:
                print("\n".join(names))
                return EXIT_OK
            latest = follow(client, names, args.poll, args.timeout)
            rows = results(client, latest)
    except UsageError as exc:
        err.print(f"error: {exc}")
        return EXIT_USAGE
    except HpoApiError as exc:
        err.print(f"error: {exc}")
        return EXIT_USAGE if exc.status < 500 else EXIT_INCOMPLETE
    except HpoConnectionError as exc:
        err.print(f"error: {exc.message}")
        return EXIT_UNREACHABLE
    except (HpoError, SpecError) as exc:
        err.print(f"error: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        err.print("interrupted: the experiments keep running on the server (`hpo stop NAME` stops one)")
        return EXIT_INTERRUPTED
    print_table(rows)
    for row in rows:
        if row["state"] not in DONE_STATES:
            err.print(f"{row['name']}: still {row['state']} after --timeout {args.timeout:g} s")
        elif row["message"] and row["state"] != "FINISHED":
            err.print(f"{row['name']}: {row['state']} ({row['message']})")
    if args.json:
        print(json.dumps(rows, default=str))
    ok = all(row["state"] == "FINISHED" and row["best_value"] is not None for row in rows)
    return EXIT_OK if ok else EXIT_INCOMPLETE


if __name__ == "__main__":
    sys.exit(main())
