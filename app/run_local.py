"""`hpo run`: one experiment on this machine, everything started here and stopped at the end.

Without HPO_BROKER_URL it starts a private Redis; SQLite lives in HPO_HOME; the coordinator runs
in this process (driving only this experiment) and N trial slots run in a local Celery worker.
With HPO_BROKER_URL set, the same code uses that Redis, and remote workers may join.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.broker import EmbeddedRedis
from app.codepack import pack_directory
from app.config import Settings
from app.coordinator.dispatch import Publisher
from app.coordinator.loop import Coordinator
from app.experiments import submit
from app.keys import trial_queue
from app.local_workers import LocalWorker
from app.spec import ExperimentSpec, SpecError, load_spec
from app.spec.model import ResourceRequest
from app.store.artifacts import FileArtifactStore
from app.store.db import ensure_schema, make_engine
from app.store.models import ExperimentState
from app.store.repository import Store
from app.summary import run_summary
from workers.celery_app import make_celery
from workers.gpus import detect_gpus

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


def prepare(options: RunOptions) -> tuple[ExperimentSpec, bytes, str, list[str]]:
    """Spec, code archive, archive name and local GPU ids; UsageError/SpecError on bad input."""
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
    gpu_ids: list[str] = []
    if not spec.resources.is_cpu:
        if options.cpu:
            spec = spec.with_resources(ResourceRequest())
        else:
            gpus = detect_gpus()
            if not gpus:
                raise UsageError(_gpu_message(spec))
            gpu_ids = [g.index for g in gpus]
    return spec, pack_directory(model_dir, top), f"{top}.modelDir.tar", gpu_ids


def _worker_queues(spec: ExperimentSpec, gpu_ids: list[str]) -> list[str]:
    if spec.resources.is_cpu:
        return [trial_queue(None, 0)]
    types = {g.type for g in detect_gpus()} or {"any"}
    return [spec.resources.queue] + [
        trial_queue(t, n) for t in types | {"any"} for n in range(1, len(gpu_ids) + 1)
    ]


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
    out = Console()
    try:
        spec, code, filename, gpu_ids = prepare(options)
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
    home = settings.home.resolve()
    settings = settings.model_copy(update={"home": home})
    engine = make_engine(settings.effective_database_url)
    ensure_schema(engine, auto_upgrade=True)
    store = Store(engine)
    interrupted = False
    previous_term = signal.signal(signal.SIGTERM, signal.default_int_handler)

    with contextlib.ExitStack() as stack:
        stack.callback(signal.signal, signal.SIGTERM, previous_term)
        stack.callback(engine.dispose)
        broker_url = settings.broker_url
        embedded = broker_url is None
        if broker_url is None:
            broker_url = stack.enter_context(EmbeddedRedis(home / "redis")).url
        settings = settings.model_copy(update={"broker_url": broker_url})
        client = redis.Redis.from_url(broker_url)
        stack.callback(client.close)
        try:
            exp = submit(store, spec, code, filename, max_code_bytes=settings.code_max_bytes)
        except SpecError as exc:
            err.print(str(exc), markup=False)
            return EXIT_USAGE
        err.print(f"experiment {exp.name}: {spec.algorithm.display_name}, queue {exp.queue}", markup=False)

        worker: LocalWorker | None = None
        if options.workers > 0:
            env = {"HPO_BROKER_URL": broker_url, "HPO_HOME": str(home)}
            worker = LocalWorker(
                slots=options.workers,
                queues=_worker_queues(spec, gpu_ids),
                env=env,
                log_path=home / "logs" / f"worker-{os.getpid()}.log",
                worker_dir=settings.effective_worker_dir.resolve(),
                name=f"hpo-run-{os.getpid()}@%h",
                gpus=gpu_ids,
            )
            stack.enter_context(worker)

        celery = make_celery(broker_url, include_tasks=False)
        publisher = Publisher(celery, client, store)
        coordinator = Coordinator(
            store, client, publisher, FileArtifactStore(settings.artifacts_dir), settings, only=[exp.id]
        )
        stack.callback(coordinator.close)
        display = _Display(err, exp.id, spec.limits.max_trials, spec.objective.direction)  # type: ignore[arg-type]
        worker_lost: list[str] = []

        def finished() -> bool:
            if exp.id in coordinator.finished:
                return True
            # With a private broker no other worker can come: a dead local worker ends the run.
            if embedded and worker is not None and worker.exit_code() is not None and not worker_lost:
                worker_lost.append(
                    f"the local worker exited with code {worker.exit_code()}:\n{worker.log_tail()}"
                )
                coordinator.request_stop(exp.id, "force")  # type: ignore[arg-type]
            return False

        with display.progress:
            try:
                coordinator.run(should_stop=finished, on_tick=display.update)
            except KeyboardInterrupt:
                interrupted = True
                err.print("interrupted: stopping trials ...")
                coordinator.request_stop(exp.id, "force")  # type: ignore[arg-type]
                deadline = time.monotonic() + options.drain_s
                with contextlib.suppress(KeyboardInterrupt):
                    coordinator.run(should_stop=lambda: finished() or time.monotonic() > deadline)
            final = store.experiment(exp.id)  # type: ignore[arg-type]
            if final is not None:
                display.final(run_summary(store, final))
        for line in worker_lost:
            err.print(f"error: {line}", markup=False)

    exp = store.experiment(exp.id)  # type: ignore[arg-type,assignment]
    assert exp is not None
    if exp.state in ExperimentState.ACTIVE:  # drained too slowly: record that it was stopped
        store.finish_experiment(exp.id, ExperimentState.STOPPED, "interrupted")  # type: ignore[arg-type]
        exp = store.experiment(exp.id)  # type: ignore[arg-type,assignment]
        assert exp is not None
    summary = run_summary(store, exp)
    engine.dispose()
    best_path = None
    if summary["best"] is not None:
        best_path = Path("best_config.json")
        best_path.write_text(json.dumps(summary["best"]["hyperParameters"], indent=2) + "\n")
    if options.json_output:
        _print_human(err, summary, exp.message, best_path)
        sys.stdout.write(json.dumps(summary) + "\n")
        sys.stdout.flush()
    else:
        _print_human(out, summary, exp.message, best_path)
    if interrupted:
        return EXIT_INTERRUPTED
    ok = exp.state == ExperimentState.FINISHED and summary["trials"]["finished"] > 0
    return EXIT_OK if ok else EXIT_NO_RESULT


logging.getLogger("hpo").addHandler(logging.NullHandler())
