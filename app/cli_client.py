"""Client commands of `hpo` for a remote server: login, logout, submit, list, status, trials, logs,
best, stop, restart, delete. `app/cli.py` calls `register(cli)` to add them.

Every command but `login` takes `--url` (else `HPO_URL`, else the default server saved by
`hpo login`); credentials come from `HPO_TOKEN`, `HPO_USER` + `HPO_PASSWORD` or the token saved by
`hpo login` (see `app/client.py`). `hpo login` never takes a password flag, so a password never
lands in shell history: it is prompted for with hidden input, or read from `HPO_PASSWORD`.

Data (tables, logs, `--json` output) goes to stdout; messages and errors go to stderr, errors as
`error: <message>` followed by one `  - path: message` line per problem.

Exit codes:
  0  success
  1  not found (HTTP 404), or `submit --wait` ended without a successful trial, or the experiment
     `status --watch` watched ended FAILED or STOPPED
  2  a bad spec (found locally, before any upload), bad usage, failed authentication or another
     4xx refusal (HTTP 400, 401, 409, 413)
  3  the server cannot be reached
  4  the server failed (HTTP 5xx)
  130 interrupted (Ctrl-C)
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console, Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from app.client import (
    DONE_STATES,
    HpoApiError,
    HpoClient,
    HpoConnectionError,
    HpoError,
    forget_credentials,
    normalize_url,
    save_credentials,
)
from app.client import parse_time as _when
from app.spec import SpecError, load_spec

EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_SERVER, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
TRIAL_DONE_STATES = ("FINISHED", "FAILED", "EARLY_STOPPED", "CANCELLED")
URL_HELP = "server URL (else HPO_URL, else the default saved by `hpo login`)"
F = TypeVar("F", bound=Callable[..., Any])


# --- output and errors -----------------------------------------------------------------------
def _out() -> Console:
    return Console(highlight=False)


def _say(message: str) -> None:
    """A message for the user (stderr), never data."""
    typer.echo(message, err=True)


def _fail(message: str, problems: list[dict[str, str]] | None = None, code: int = EXIT_USAGE) -> typer.Exit:
    lines = [f"error: {message}"] + [
        f"  - {p.get('path', '')}: {p.get('message', '')}" for p in problems or []
    ]
    typer.echo("\n".join(lines), err=True)
    return typer.Exit(code)


def _exit_code(exc: HpoApiError) -> int:
    if exc.status == 404:
        return EXIT_NOT_FOUND
    if exc.status >= 500:
        return EXIT_SERVER
    return EXIT_USAGE


def _handled(fn: F) -> F:
    """Turn client errors into `error: ...` on stderr and the documented exit codes."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SpecError as exc:
            raise _fail(str(exc)) from None
        except HpoApiError as exc:
            raise _fail(exc.message, exc.problems, _exit_code(exc)) from None
        except HpoConnectionError as exc:
            raise _fail(exc.message, code=EXIT_UNREACHABLE) from None
        except HpoError as exc:
            raise _fail(exc.message) from None
        except KeyboardInterrupt:
            _say("interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper  # type: ignore[return-value]


@contextmanager
def _client(url: str | None) -> Iterator[HpoClient]:
    client = HpoClient.from_environment(url)
    if not client.token and not client.password:
        client.close()
        raise HpoError(f"not logged in to {client.url}: run `hpo login {client.url}` (or set HPO_TOKEN)")
    try:
        yield client
    finally:
        client.close()


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


# --- formatting ------------------------------------------------------------------------------
def _span(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    if seconds < 86400:
        return f"{seconds // 3600:.0f}h{seconds % 3600 // 60:02.0f}m"
    return f"{seconds // 86400:.0f}d{seconds % 86400 // 3600:02.0f}h"


def _age(value: str | None) -> str:
    moment = _when(value)
    return _span((datetime.now(UTC) - moment).total_seconds()) if moment else "-"


def _duration(trial: dict[str, Any]) -> str:
    start, end = _when(trial.get("started_at")), _when(trial.get("ended_at"))
    if start is None:
        return "-"
    return _span(((end or datetime.now(UTC)) - start).total_seconds())


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "-" if value is None else str(value)


def _params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={_number(v)}" for k, v in params.items())


def _done(exp: dict[str, Any]) -> int:
    """Trials that ran to an end: finished, failed or early-stopped."""
    counts = exp.get("counts") or {}
    return int(counts.get("finished", 0)) + int(counts.get("failed", 0)) + int(counts.get("early_stopped", 0))


def _progress(exp: dict[str, Any]) -> str:
    total = exp.get("max_trials")
    return f"{_done(exp)}/{total if total is not None else '∞'}"


def _best(exp: dict[str, Any]) -> str:
    if exp.get("best_value") is None:
        return "-"
    return f"{_number(exp['best_value'])} (#{exp.get('best_trial')})"


def _status_view(exp: dict[str, Any]) -> RenderableType:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    counts = exp.get("counts") or {}
    rows: list[tuple[str, str]] = [
        ("name", exp["name"]),
        ("state", exp["state"]),
        ("owner", exp.get("owner") or "-"),
        ("algorithm", exp.get("algorithm", "-")),
        ("objective", f"{exp.get('direction', '')} {exp.get('metric', '')}".strip()),
        ("best", _best(exp)),
        ("progress", _progress(exp)),
        ("trials", ", ".join(f"{k} {v}" for k, v in counts.items() if v) or "none yet"),
        ("parallel", str(exp.get("max_parallel", "-"))),
        ("queue", exp.get("queue", "-")),
        ("created", f"{exp.get('created_at')} ({_age(exp.get('created_at'))} ago)"),
        ("started", exp.get("started_at") or "-"),
        ("finished", exp.get("finished_at") or "-"),
    ]
    if exp.get("message"):
        rows.append(("message", exp["message"]))
    rows += [("warning", w) for w in exp.get("warnings") or []]
    for key, value in rows:
        table.add_row(key, Text(str(value)))
    total = exp.get("max_trials")
    done = _done(exp)
    bar = ProgressBar(total=float(total) if total else None, completed=float(done), width=40)
    if exp["state"] in DONE_STATES and not total:
        bar = ProgressBar(total=float(max(done, 1)), completed=float(max(done, 1)), width=40)
    line = Table.grid(padding=(0, 1))
    line.add_row(bar, Text(_progress(exp)))
    return Group(table, line)


def _new_text(seen: str, text: str) -> str:
    """What `text` (the latest log, maybe only its tail) adds to what was printed already."""
    if text.startswith(seen):
        return text[len(seen) :]
    anchor = seen[-256:]
    pos = text.rfind(anchor) if anchor else -1
    if pos >= 0:
        return text[pos + len(anchor) :]
    return text


# --- commands --------------------------------------------------------------------------------
@_handled
def login(
    url: str = typer.Argument(..., help="the server, e.g. https://hpo.example:8080"),
    user: str | None = typer.Option(None, "--user", help="user name (else HPO_USER, else asked)"),
) -> None:
    """Log in: trade a user name and password for a token, saved for later commands."""
    url = normalize_url(url)
    user = user or os.environ.get("HPO_USER") or typer.prompt("user")
    password = os.environ.get("HPO_PASSWORD")
    if password is None:
        password = typer.prompt("password", hide_input=True)
    with HpoClient(url, user=user, password=password) as client:
        token = client.login()
        who = client.user or user
    path = save_credentials(url, who, token)
    _say(f"logged in to {url} as {who} (token saved in {path})")


@_handled
def logout(url: str | None = typer.Option(None, "--url", help=URL_HELP)) -> None:
    """Revoke the saved token on the server and forget it here."""
    client = HpoClient.from_environment(url)
    try:
        if client.token:
            try:
                client.logout()
            except HpoApiError as exc:  # expired or already revoked: forgetting it is enough
                _say(f"the server refused to revoke the token ({exc.message}); forgetting it anyway")
    finally:
        client.close()
    if forget_credentials(client.url):
        _say(f"logged out of {client.url}")
    else:
        _say(f"no token saved for {client.url}")


@_handled
def submit(
    spec: Path = typer.Argument(..., help="experiment spec: WMLA payload JSON, or native YAML/JSON"),
    model_dir: Path = typer.Option(..., "--model-dir", help="local folder with the training code"),
    name: str | None = typer.Option(None, "--name", help="the experiment's name (overrides the spec's)"),
    wait: bool = typer.Option(False, "--wait", help="wait until it ends, showing progress"),
    url: str | None = typer.Option(None, "--url", help=URL_HELP),
) -> None:
    """Submit an experiment: the spec is validated here, the folder packed and uploaded."""
    load_spec(spec)  # a bad spec fails here, even before the server or the login is looked at
    with _client(url) as client:
        exp = client.submit(spec, model_dir, name=name)
        _say(f"submitted {exp['name']} ({exp['state']})")
        for warning in exp.get("warnings") or []:
            _say(f"warning: {warning}")
        sys.stdout.write(exp["name"] + "\n")
        sys.stdout.flush()
        if not wait:
            return
        last: list[str] = []

        def show(e: dict[str, Any]) -> None:
            line = f"{e['state']} {_progress(e)} best {_best(e)}"
            if not last or last[-1] != line:
                _say(line)
                last.append(line)

        exp = client.wait(exp["name"], on_update=show)
    ok = exp["state"] == "FINISHED" and exp.get("best_value") is not None
    if exp.get("message"):
        _say(f"{exp['name']}: {exp['state']} ({exp['message']})")
    raise typer.Exit(EXIT_OK if ok else EXIT_NOT_FOUND)


@_handled
def list_experiments(
    json_output: bool = typer.Option(False, "--json", help="JSON on stdout"),
    url: str | None = typer.Option(None, "--url", help=URL_HELP),
) -> None:
    """The experiments you may see (all of them for an admin)."""
    with _client(url) as client:
        exps = client.experiments()
    if json_output:
        _print_json(exps)
        return
    table = Table()
    table.add_column("name", overflow="fold")  # a narrow terminal folds names, never cuts them
    for column in ("state", "progress", "best", "owner", "age"):
        table.add_column(column, no_wrap=True)
    for e in exps:
        table.add_row(
            e["name"], e["state"], _progress(e), _best(e), e.get("owner") or "-", _age(e.get("created_at"))
        )
    _out().print(table)


@_handled
def status(
    name: str = typer.Argument(..., help="experiment name"),
    watch: bool = typer.Option(False, "--watch", help="refresh until the experiment ends"),
    interval: float = typer.Option(2.0, "--interval", help="seconds between refreshes with --watch"),
    json_output: bool = typer.Option(False, "--json", help="JSON on stdout (the final state with --watch)"),
    url: str | None = typer.Option(None, "--url", help=URL_HELP),
) -> None:
    """One experiment: state, counts, best so far and a progress bar. With --watch, a live table
    until it ends; the exit code is then 0 for FINISHED, 1 for FAILED or STOPPED (130 on Ctrl-C)."""
    from app.cli_watch import exit_code, watch_experiment

    with _client(url) as client:
        if watch and not json_output:
            raise typer.Exit(watch_experiment(client, name, interval, _out()))
        exp = client.experiment(name)
        if watch and exp["state"] not in DONE_STATES:
            exp = client.wait(name, poll_s=interval)
    if json_output:
        _print_json(exp)
    else:
        _out().print(_status_view(exp))
    if watch:
        raise typer.Exit(exit_code(exp["state"]))


@_handled
def trials(
    name: str = typer.Argument(..., help="experiment name"),
    state: str | None = typer.Option(None, "--state", help="only trials in this state (e.g. FAILED)"),
    limit: int | None = typer.Option(None, "--limit", min=1, help="show at most this many"),
    json_output: bool = typer.Option(False, "--json", help="JSON on stdout"),
    url: str | None = typer.Option(None, "--url", help=URL_HELP),
) -> None:
    """An experiment's trials in number order."""
    with _client(url) as client:
        rows: list[dict[str, Any]] = []
        for trial in client.trials(
            name, state=state.upper() if state else None, page_size=min(limit or 100, 100)
        ):
            rows.append(trial)
            if limit is not None and len(rows) >= limit:
                break
    if json_output:
        _print_json(rows)
        return
    _out().print(trials_table(rows))


def trials_table(rows: list[dict[str, Any]]) -> Table:
    """The trials as a table; a `reason` column (first line, shortened) when any trial has one."""
    reasons = any(t.get("reason") for t in rows)
    table = Table()
    table.add_column("#", justify="right")
    for column in ("state", "objective", "params", "worker", "duration", *(["reason"] if reasons else [])):
        table.add_column(column, overflow="fold")
    for t in rows:
        cells = [str(t["number"]), t["state"], _number(t.get("objective")), _params(t.get("params") or {}),
                 t.get("worker") or "-", _duration(t)]  # fmt: skip
        if reasons:
            cells.append(_short(t.get("reason")))
        table.add_row(*cells)
    return table


def _short(text: str | None, limit: int = 80) -> str:
    lines = (text or "").strip().splitlines()
    if not lines:
        return "-"
    return lines[0] if len(lines[0]) <= limit else lines[0][: limit - 1] + "…"


@_handled
def logs(
    name: str = typer.Argument(..., help="experiment name"),
    trial: int = typer.Argument(..., help="trial number"),
    err: bool = typer.Option(False, "--err", help="stderr instead of stdout"),
    follow: bool = typer.Option(
        False, "--follow", "-f", help="keep printing new output until the trial ends"
    ),
    interval: float = typer.Option(2.0, "--interval", help="seconds between polls with --follow"),
    url: str | None = typer.Option(None, "--url", help=URL_HELP),
) -> None:
    """A trial's log: the whole log of an ended trial, the live tail of a running one."""
    stream = "stderr" if err else "stdout"
    with _client(url) as client:
        if not follow:
            sys.stdout.write(client.log(name, trial, stream))
            sys.stdout.flush()
            return
        seen = ""
        while True:
            state = client.trial(name, trial)["state"]  # before the log: an ended state means a final log
            text = client.log(name, trial, stream)
            new = _new_text(seen, text)
            if new:
                sys.stdout.write(new)
                sys.stdout.flush()
            seen = text
            if state in TRIAL_DONE_STATES:
                _say(f"trial {trial} {state}")
                return
            time.sleep(interval)


@_handled
def best(
    name: str = typer.Argument(..., help="experiment name"),
    output: Path | None = typer.Option(None, "--output", "-o", help="also write the params as JSON here"),
    json_output: bool = typer.Option(False, "--json", help="JSON on stdout"),
    url: str | None = typer.Option(None, "--url", help=URL_HELP),
) -> None:
    """The best trial's hyperparameters (typed JSON with --output, as `hpo run` writes it)."""
    with _client(url) as client:
        result = client.best(name)
    if output is not None:
        output.write_text(json.dumps(result["params"], indent=2) + "\n", encoding="utf-8")
        _say(f"wrote {output}")
    if json_output:
        _print_json(result)
        return
    _say(f"best trial #{result['trial']} ({result['exec_id']}): {_number(result['value'])}")
    table = Table("param", "value")
    for key, value in result["params"].items():
        table.add_row(key, json.dumps(value))
    _out().print(table)


@_handled
def report(
    name: str = typer.Argument(..., help="experiment name"),
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="the HTML file to write"),
    url: str | None = typer.Option(None, "--url", help=URL_HELP),
) -> None:
    """A self-contained HTML report with the dashboard's plots (opens offline, no server needed)."""
    from app.report import render

    with _client(url) as client:
        page = render(client.dashboard(name), client.best_trials(name))
    out.write_text(page, encoding="utf-8")
    _say(f"wrote {out} ({len(page) // 1024} KiB)")


@_handled
def stop(
    name: str = typer.Argument(..., help="experiment name"),
    force: bool = typer.Option(False, "--force", help="kill running trials at once (no grace period)"),
    url: str | None = typer.Option(None, "--url", help=URL_HELP),
) -> None:
    """Stop an experiment: no new trials; running ones are stopped."""
    with _client(url) as client:
        exp = client.stop(name, force=force)
    _say(f"{exp['name']}: {exp['state']} (stop requested)")


@_handled
def restart(
    name: str = typer.Argument(..., help="experiment name"),
    url: str | None = typer.Option(None, "--url", help=URL_HELP),
) -> None:
    """Resume a STOPPED or FAILED experiment where it was."""
    with _client(url) as client:
        exp = client.restart(name)
    _say(f"{exp['name']}: {exp['state']}")


@_handled
def retry(
    name: str = typer.Argument(..., help="experiment name"),
    trial: list[int] = typer.Option(None, "--trial", help="a FAILED trial's number (repeatable)"),
    failed: bool = typer.Option(False, "--failed", help="every FAILED trial (the default without --trial)"),
    url: str | None = typer.Option(None, "--url", help=URL_HELP),
) -> None:
    """Run FAILED trials again as new attempts; an ended experiment resumes for them."""
    if trial and failed:
        raise typer.BadParameter("give --trial N or --failed, not both")
    with _client(url) as client:
        requeued = client.retry(name, list(trial or []))
    numbers = ", ".join(str(t["number"]) for t in requeued)
    _say(f"{name}: retrying trial{'s' if len(requeued) != 1 else ''} {numbers}")


@_handled
def delete(
    name: str = typer.Argument(..., help="experiment name"),
    url: str | None = typer.Option(None, "--url", help=URL_HELP),
) -> None:
    """Delete an ended experiment with its trials, logs and results."""
    with _client(url) as client:
        client.delete(name)
    _say(f"deleted {name}")


plugin_cli = typer.Typer(no_args_is_help=True, help="Search-algorithm plugins (WMLA style) on the server.")


@plugin_cli.command("install")
@_handled
def plugin_install(
    folder: Path = typer.Argument(..., help="the plugin folder, with optimizer.py at its top"),
    name: str = typer.Option(..., "--name", help="the algorithm name experiments will use"),
    log_level: str = typer.Option("INFO", "--log-level"),
    url: str | None = typer.Option(None, "--url", help=URL_HELP),
) -> None:
    """Install a plugin (admins only: its code runs on the server, sandboxed)."""
    with _client(url) as client:
        client.install_plugin(name, folder, log_level)
    _say(f"installed plugin {name}")


@plugin_cli.command("list")
@_handled
def plugin_list(
    kind: str = typer.Option(None, "--type", help="BUILD_IN or USER_PLUGIN"),
    url: str | None = typer.Option(None, "--url", help=URL_HELP),
) -> None:
    """Algorithms: built-in ones and installed plugins."""
    with _client(url) as client:
        for algo in client.plugins(kind):
            extra = (
                f"  by {algo.get('creator')}, {algo.get('createtime')}"
                if algo["type"] == "USER_PLUGIN"
                else ""
            )
            typer.echo(f"{algo['name']:<24} {algo['type']}{extra}")


@plugin_cli.command("show")
@_handled
def plugin_show(
    name: str = typer.Argument(...), url: str | None = typer.Option(None, "--url", help=URL_HELP)
) -> None:
    """One algorithm, as JSON."""
    with _client(url) as client:
        typer.echo(json.dumps(client.plugin(name), indent=2))


@plugin_cli.command("delete")
@_handled
def plugin_delete(
    name: str = typer.Argument(...), url: str | None = typer.Option(None, "--url", help=URL_HELP)
) -> None:
    """Remove an installed plugin (admins only)."""
    with _client(url) as client:
        client.delete_plugin(name)
    _say(f"deleted plugin {name}")


def register(cli: typer.Typer) -> None:
    """Add the client commands to the `hpo` Typer app."""
    cli.command("login")(login)
    cli.command("logout")(logout)
    cli.command("submit")(submit)
    cli.command("list")(list_experiments)
    cli.command("status")(status)
    cli.command("trials")(trials)
    cli.command("logs")(logs)
    cli.command("best")(best)
    cli.command("report")(report)
    cli.command("stop")(stop)
    cli.command("restart")(restart)
    cli.command("retry")(retry)
    cli.add_typer(plugin_cli, name="plugin")
    cli.command("delete")(delete)
