"""`hpo status NAME --watch`: a live table of one experiment until it ends.

On a terminal a rich Live table refreshes in place: state, a progress bar (trials that ran to an
end out of maxJobNum), running and queued, failed, the best value with its parameters, elapsed
time and the server's message. Piped, it prints one line per change and the final table, so logs
stay readable. The exit code says how it ended: 0 FINISHED, 1 FAILED or STOPPED (130 on Ctrl-C is
the caller's `_handled`).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from app.client import DONE_STATES, HpoApiError, HpoClient
from app.client import parse_time as _when

EXIT_FINISHED, EXIT_UNSUCCESSFUL = 0, 1


def exit_code(state: str) -> int:
    return EXIT_FINISHED if state == "FINISHED" else EXIT_UNSUCCESSFUL


def _span(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h{minutes:02d}m"
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _value(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def done_count(exp: dict[str, Any]) -> int:
    counts = exp.get("counts") or {}
    return sum(int(counts.get(k, 0)) for k in ("finished", "failed", "early_stopped"))


def progress_text(exp: dict[str, Any]) -> str:
    total = exp.get("max_trials")
    return f"{done_count(exp)}/{total if total is not None else '∞'}"


def elapsed(exp: dict[str, Any], now: datetime | None = None) -> str:
    start = _when(exp.get("started_at")) or _when(exp.get("created_at"))
    if start is None:
        return "-"
    end = _when(exp.get("finished_at")) or now or datetime.now(UTC)
    return _span((end - start).total_seconds())


def best_text(exp: dict[str, Any], params: dict[str, Any] | None) -> str:
    if exp.get("best_value") is None:
        return "-"
    text = f"{_value(exp['best_value'])} (#{exp.get('best_trial')})"
    if params:
        text += "  " + " ".join(f"{k}={_value(v)}" for k, v in params.items())
    return text


def summary_line(exp: dict[str, Any], params: dict[str, Any] | None) -> str:
    counts = exp.get("counts") or {}
    line = (
        f"{exp['state']} {progress_text(exp)} running {counts.get('running', 0)} "
        f"failed {counts.get('failed', 0)} best {best_text(exp, params)}"
    )
    return line + (f" ({exp['message']})" if exp.get("message") else "")


def view(exp: dict[str, Any], params: dict[str, Any] | None, now: datetime | None = None) -> RenderableType:
    counts = exp.get("counts") or {}
    total = exp.get("max_trials")
    done = done_count(exp)
    if total:
        bar = ProgressBar(total=float(total), completed=float(done), width=40)
    elif exp["state"] in DONE_STATES:
        bar = ProgressBar(total=1.0, completed=1.0, width=40)
    else:
        bar = ProgressBar(total=None, width=40)  # no maxJobNum: a pulsing bar
    progress = Table.grid(padding=(0, 1))
    progress.add_row(bar, Text(progress_text(exp)))
    table = Table(title=exp["name"], show_header=False, title_justify="left")
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    running = f"{counts.get('running', 0)} (queued {counts.get('queued', 0)})"
    failed = str(counts.get("failed", 0))
    if counts.get("early_stopped"):
        failed += f" (early stopped {counts['early_stopped']})"
    table.add_row("state", Text(exp["state"]))
    table.add_row("progress", progress)
    table.add_row("running", Text(running))
    table.add_row("failed", Text(failed))
    table.add_row("best", Text(best_text(exp, params)))
    table.add_row("elapsed", Text(elapsed(exp, now)))
    table.add_row("message", Text(exp.get("message") or "-"))
    return Group(table)


class Watcher:
    """Polls the experiment (and its best trial's parameters when the best changes)."""

    def __init__(self, client: HpoClient, name: str) -> None:
        self.client = client
        self.name = name
        self.params: dict[str, Any] | None = None
        self._best_trial: Any = None

    def poll(self) -> dict[str, Any]:
        exp = self.client.experiment(self.name)
        if exp.get("best_trial") is not None and exp.get("best_trial") != self._best_trial:
            try:
                self.params = self.client.best(self.name).get("params")
                self._best_trial = exp.get("best_trial")
            except HpoApiError as exc:
                if exc.status != 404:  # 404: no successful trial yet
                    raise
        return exp


def watch_experiment(client: HpoClient, name: str, interval: float, console: Console) -> int:
    """Show the experiment until it ends; returns the exit code for how it ended."""
    interval = max(interval, 0.1)
    watcher = Watcher(client, name)
    exp = watcher.poll()
    if not console.is_terminal:
        last = ""
        while True:
            line = summary_line(exp, watcher.params)
            if line != last:
                console.print(Text(line), soft_wrap=True)
                last = line
            if exp["state"] in DONE_STATES:
                break
            time.sleep(interval)
            exp = watcher.poll()
        console.print(view(exp, watcher.params))
        return exit_code(exp["state"])
    with Live(view(exp, watcher.params), console=console, refresh_per_second=4) as live:
        while exp["state"] not in DONE_STATES:
            deadline = time.monotonic() + interval
            while time.monotonic() < deadline:  # the elapsed clock moves between polls
                time.sleep(min(0.25, interval))
                live.update(view(exp, watcher.params))
            exp = watcher.poll()
            live.update(view(exp, watcher.params))
    return exit_code(exp["state"])
