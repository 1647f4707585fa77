"""The `hpo` command (Typer): run, coordinator, worker, flower, db."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import typer

from app.config import get_settings, reset_settings

cli = typer.Typer(no_args_is_help=True, add_completion=False, help="Distributed hyperparameter optimization.")
db_cli = typer.Typer(no_args_is_help=True, help="Database schema.")
cli.add_typer(db_cli, name="db")


def _logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@cli.command()
def run(
    spec: Path = typer.Argument(..., help="experiment spec: WMLA payload JSON, or native YAML/JSON"),
    model_dir: Path = typer.Option(..., "--model-dir", help="local folder with the training code"),
    workers: int = typer.Option(2, "--workers", help="trial slots on this machine"),
    cpu: bool = typer.Option(False, "--cpu", help="run trials that ask for GPUs on CPU slots"),
    json_output: bool = typer.Option(False, "--json", help="end with one JSON summary line on stdout"),
) -> None:
    """Run one experiment on this machine (private Redis unless HPO_BROKER_URL is set)."""
    from app.run_local import RunOptions
    from app.run_local import run as run_experiment

    logging.basicConfig(level="WARNING", format="%(levelname)s %(name)s: %(message)s")
    code = run_experiment(
        RunOptions(spec_path=spec, model_dir=model_dir, workers=workers, cpu=cpu, json_output=json_output),
        get_settings(),
    )
    raise typer.Exit(code)


@cli.command()
def coordinator(log_level: str = typer.Option("INFO", "--log-level")) -> None:
    """Drive every active experiment in the database (one per fleet; more take over on failure)."""
    import redis

    from app.coordinator.dispatch import Publisher
    from app.coordinator.loop import Coordinator
    from app.store.artifacts import FileArtifactStore
    from app.store.db import SchemaError, ensure_schema, make_engine
    from app.store.repository import Store
    from workers.celery_app import make_celery

    _logging(log_level)
    settings = get_settings()
    engine = make_engine(settings.effective_database_url)
    try:
        ensure_schema(engine, auto_upgrade=False)
    except SchemaError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    store = Store(engine)
    client = redis.Redis.from_url(settings.effective_broker_url)
    publisher = Publisher(make_celery(settings.effective_broker_url, include_tasks=False), client, store)
    coord = Coordinator(store, client, publisher, FileArtifactStore(settings.artifacts_dir), settings)
    typer.echo(f"coordinator {coord.owner} on {settings.effective_database_url.split('@')[-1]}", err=True)
    try:
        coord.run()
    except KeyboardInterrupt:
        pass
    finally:
        coord.close()


@cli.command()
def worker(
    slots: int = typer.Option(1, "--slots", help="trials run at once on this machine"),
    gpus: str = typer.Option("", "--gpus", help="GPU ids to pin trials to, e.g. 0,1"),
    gpu_type: str = typer.Option("", "--gpu-type", help="GPU type name for queue routing, e.g. a100"),
    queues: str = typer.Option("", "--queues", help="comma-separated queues (default: by GPUs)"),
    python: str = typer.Option("", "--python", help="interpreter that runs trials (default: this one)"),
    name: str = typer.Option("hpo@%h", "--name", help="Celery node name"),
    log_level: str = typer.Option("INFO", "--log-level"),
) -> None:
    """A Celery worker that runs trials; it needs only HPO_BROKER_URL."""
    from app.keys import normalize_gpu_type, trial_queue

    gpu_ids = [g.strip() for g in gpus.split(",") if g.strip()]
    if queues:
        queue_list = [q.strip() for q in queues.split(",") if q.strip()]
    elif gpu_ids:
        kind = normalize_gpu_type(gpu_type) if gpu_type else "any"
        queue_list = [
            trial_queue(t, n) for t in dict.fromkeys([kind, "any"]) for n in range(1, len(gpu_ids) + 1)
        ]
    else:
        queue_list = [trial_queue(None, 0)]
    os.environ["HPO_WORKER_SLOTS"] = str(slots)
    if gpu_ids:
        os.environ["HPO_WORKER_GPUS"] = ",".join(gpu_ids)
    if python:
        os.environ["HPO_WORKER_PYTHON"] = python
    reset_settings()
    from workers.celery_app import app

    argv = ["worker", "-Q", ",".join(queue_list), "-c", str(max(slots, 1)), "-P", "prefork", "-n", name,
            "-E", "-O", "fair", "--without-gossip", "--without-mingle", "-l", log_level]  # fmt: skip
    app.worker_main(argv)


@cli.command()
def flower(
    port: int = typer.Option(5555, "--port"),
    basic_auth: str = typer.Option("", "--basic-auth", help="user:password for Flower's pages and API"),
) -> None:
    """Flower on the broker: queues, workers, tasks."""
    from workers.celery_app import app

    argv = ["flower", f"--port={port}"]
    if basic_auth:
        argv.append(f"--basic_auth={basic_auth}")
    app.start(argv)


@db_cli.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the SQL schema (Alembic) at HPO_DATABASE_URL."""
    from app.store.db import current_revision, make_engine, upgrade

    engine = make_engine(get_settings().effective_database_url)
    upgrade(engine)
    typer.echo(f"schema at revision {current_revision(engine)}")


def main() -> None:
    cli(prog_name="hpo")


if __name__ == "__main__":
    sys.exit(main())
