"""`hpo run`: one experiment on this machine, everything started here and stopped at the end.

Without HPO_BROKER_URL it starts a private Redis; SQLite lives in HPO_HOME; the coordinator runs
in this process (driving only this experiment) and N trial slots run in a local Celery worker.
With HPO_BROKER_URL set, the same code uses that Redis, and remote workers may join.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.codepack import pack_directory
from app.config import Settings
from app.coordinator.loop import Coordinator
from app.local_stack import LocalStack, worker_queues
from app.services.experiments import submit
from app.spec import ExperimentSpec, SpecError, load_spec
from app.spec.model import ResourceRequest
from app.store.models import Experiment, ExperimentState
from app.store.repository import Store
from app.summary import run_summary
from workers.gpus import GPU, detect_gpus

EXIT_OK, EXIT_NO_RESULT, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    pass


@dataclass
class RunOptions:
    spec_path: Path
    model_dir: Path
    workers: int = 2
    cpu: bool = False
    json_output: bool = False
    drain_s: float = 30.0


def _gpu_message(spec: ExperimentSpec) -> str:
    r = spec.resources
    n = f"{r.gpus} GPU{'s' if r.gpus != 1 else ''}"
    kind = "" if r.gpu_type in (None, "any") else f" of type {r.gpu_type}"
    return (
        f"this experiment asks for {n}{kind} per trial, but this machine has no GPU.\n"
        "Run it on the CPU instead with:  hpo run ... --cpu"
    )


def prepare(options: RunOptions) -> tuple[ExperimentSpec, bytes, str, list[GPU]]:
    """Spec, code archive, archive name and local GPUs; UsageError/SpecError on bad input."""
    spec = load_spec(options.spec_path)
    model_dir = options.model_dir
    if not model_dir.is_dir():
        raise UsageError(f"--model-dir: {model_dir} is not a directory")
    if not (model_dir / spec.model.main).is_file():
        raise UsageError(f"--model-dir: {model_dir} has no {spec.model.main} (the spec's --model-main)")
    if options.workers < 0:
        raise UsageError("--workers: must be >= 0")
    top = spec.model.model_dir or model_dir.resolve().name
    spec = spec.with_model_dir(top)
    gpus: list[GPU] = []
    if not spec.resources.is_cpu:
        if options.cpu:
            spec = spec.with_resources(ResourceRequest())
        else:
            gpus = detect_gpus()
            if not gpus:
                raise UsageError(_gpu_message(spec))
    return spec, pack_directory(model_dir, top), f"{top}.modelDir.tar", gpus


class _Display:
    """Live progress on stderr: trials done/total, running, failed, best so far."""

    def __init__(self, console: Console, exp_id: int, total: int | None, direction: str) -> None:
        self.exp_id = exp_id
        self.direction = direction
        self.progress = Progress(
            TextColumn("[bold]trials"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.task = self.progress.add_task("trials", total=total, status="starting")

    def final(self, summary: dict[str, Any]) -> None:
        t = summary["trials"]
        best = "-" if summary["best"] is None else f"{summary['best']['metricVal']:.6g}"
        status = f"{summary['state'].lower()}  failed {t['failed']}  best ({self.direction}) {best}"
        self.progress.update(
            self.task, completed=t["finished"] + t["failed"] + t["early_stopped"], status=status
        )
        self.progress.refresh()

    def update(self, coordinator: Coordinator) -> None:
        rt = coordinator.runtimes.get(self.exp_id)
        if rt is None:
            return
        c = rt.counts
        best = "-" if rt.best_value is None else f"{rt.best_value:.6g}"
        status = f"running {len(rt.in_flight)}  failed {c.failed}  best ({self.direction}) {best}"
        self.progress.update(self.task, completed=c.finished + c.failed + c.early_stopped, status=status)


def _print_human(
    console: Console, summary: dict[str, Any], exp_message: str | None, best_path: Path | None
) -> None:
    trials = summary["trials"]
    console.print(
        f"[bold]{summary['name']}[/bold] {summary['state']} ({exp_message or ''}): "
        f"{trials['finished']} finished, {trials['failed']} failed"
    )
    if summary["best"] is None:
        console.print("no trial finished successfully")
        return
    table = Table(title=f"best: {summary['best']['metricVal']:.6g}", title_justify="left")
    table.add_column("name")
    table.add_column("value")
    for k, v in summary["best"]["hyperParameters"].items():
        table.add_row(k, repr(v))
    console.print(table)
    if best_path is not None:
        console.print(f"written to {best_path}")


def run(options: RunOptions, settings: Settings) -> int:
    err = Console(stderr=True)
    try:
        spec, code, filename, gpus = prepare(options)
    except SpecError as exc:
        err.print(str(exc), markup=False)
        return EXIT_USAGE
    except UsageError as exc:
        err.print(f"error: {exc}", markup=False)
        return EXIT_USAGE
    for warning in spec.warnings:
        err.print(f"warning: {warning}", markup=False)
    if spec.limits.max_trials is None and spec.limits.max_run_time_s is None and spec.space.size is None:
        err.print("warning: neither maxJobNum nor maxRunTime is set: this runs until Ctrl-C", markup=False)
    if options.workers == 0 and settings.broker_url is None:
        err.print("error: --workers 0 leaves nothing to run trials: set HPO_BROKER_URL to use remote workers")
        return EXIT_USAGE
    previous_term = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        stack = LocalStack(
            settings, slots=options.workers, queues=worker_queues(gpus, options.cpu), gpus=gpus
        )
        with stack:
            try:
                exp = submit(stack.store, spec, code, filename, limits=stack.settings.archive_limits())
            except SpecError as exc:
                err.print(str(exc), markup=False)
                return EXIT_USAGE
            err.print(
                f"experiment {exp.name}: {spec.algorithm.display_name}, queue {exp.queue}", markup=False
            )
            interrupted, problems = _drive(stack, exp, spec, options, err)
            summary, message = _conclude(stack.store, exp.id)  # type: ignore[arg-type]
    finally:
        signal.signal(signal.SIGTERM, previous_term)
    for line in problems:
        err.print(f"error: {line}", markup=False)
    return _report(summary, message, options, interrupted, err)


def _drive(
    stack: LocalStack, exp: Experiment, spec: ExperimentSpec, options: RunOptions, err: Console
) -> tuple[bool, list[str]]:
    """Run the coordinator until the experiment ends; Ctrl-C stops it. (interrupted, problems)."""
    assert exp.id is not None
    coordinator = stack.coordinator(only=[exp.id])
    display = _Display(err, exp.id, spec.limits.max_trials, spec.objective.direction)
    problems: list[str] = []

    def finished() -> bool:
        if exp.id in coordinator.finished:
            return True
        lost = stack.worker_lost()
        if lost and not problems:
            problems.append(lost)
            coordinator.request_stop(exp.id, "force")  # type: ignore[arg-type]
        return False

    interrupted = False
    with display.progress:
        try:
            coordinator.run(should_stop=finished, on_tick=display.update)
        except KeyboardInterrupt:
            interrupted = True
            err.print("interrupted: stopping trials ...")
            coordinator.request_stop(exp.id, "force")
            deadline = time.monotonic() + options.drain_s
            with contextlib.suppress(KeyboardInterrupt):
                coordinator.run(should_stop=lambda: finished() or time.monotonic() > deadline)
        final = stack.store.experiment(exp.id)
        if final is not None:
            display.final(run_summary(stack.store, final))
    return interrupted, problems


def _conclude(store: Store, exp_id: int) -> tuple[dict[str, Any], str | None]:
    exp = store.experiment(exp_id)
    assert exp is not None
    if exp.state in ExperimentState.ACTIVE:  # drained too slowly: record that it was stopped
        store.finish_experiment(exp_id, ExperimentState.STOPPED, "interrupted")
        exp = store.experiment(exp_id)
        assert exp is not None
    return run_summary(store, exp), exp.message


def _report(
    summary: dict[str, Any], message: str | None, options: RunOptions, interrupted: bool, err: Console
) -> int:
    best_path = None
    if summary["best"] is not None:
        best_path = Path("best_config.json")
        best_path.write_text(json.dumps(summary["best"]["hyperParameters"], indent=2) + "\n")
    if options.json_output:
        _print_human(err, summary, message, best_path)
        sys.stdout.write(json.dumps(summary) + "\n")
        sys.stdout.flush()
    else:
        _print_human(Console(), summary, message, best_path)
    if interrupted:
        return EXIT_INTERRUPTED
    ok = summary["state"] == ExperimentState.FINISHED and summary["trials"]["finished"] > 0
    return EXIT_OK if ok else EXIT_NO_RESULT
