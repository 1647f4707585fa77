"""The `hpo` command (Typer): run, serve, api, coordinator, worker, workers, flower, db, users."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from app.config import get_settings, reset_settings

if TYPE_CHECKING:
    from app.config import Settings
    from app.store.repository import Store

cli = typer.Typer(no_args_is_help=True, add_completion=False, help="Distributed hyperparameter optimization.")
db_cli = typer.Typer(no_args_is_help=True, help="Database schema.")
user_cli = typer.Typer(no_args_is_help=True, help="Users of the API (on the server's database).")
token_cli = typer.Typer(no_args_is_help=True, help="API tokens (on the server's database).")
cli.add_typer(db_cli, name="db")
cli.add_typer(user_cli, name="user")
cli.add_typer(token_cli, name="token")


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
def serve(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8080, "--port"),
    workers: int = typer.Option(2, "--workers", help="trial slots on this machine"),
    cpu: bool = typer.Option(False, "--cpu", help="run trials that ask for GPUs on CPU slots"),
    ssl_keyfile: str = typer.Option("", "--ssl-keyfile"),
    ssl_certfile: str = typer.Option("", "--ssl-certfile"),
) -> None:
    """API, coordinator and local workers on one machine (private Redis unless HPO_BROKER_URL)."""
    from app.serve import ServeOptions
    from app.serve import serve as run_server

    _logging("INFO")
    options = ServeOptions(host=host, port=port, workers=workers, cpu=cpu,
                           ssl_keyfile=ssl_keyfile or None, ssl_certfile=ssl_certfile or None)  # fmt: skip
    raise typer.Exit(run_server(options, get_settings()))


@cli.command()
def api(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8080, "--port"),
    ssl_keyfile: str = typer.Option("", "--ssl-keyfile"),
    ssl_certfile: str = typer.Option("", "--ssl-certfile"),
) -> None:
    """The API alone, for a fleet (the coordinator and workers run elsewhere)."""
    import redis
    import uvicorn

    from app.api.app import create_app
    from app.services.auth import Auth, ensure_admin

    _logging("INFO")
    settings = get_settings()
    store = _server_store(settings)
    note = ensure_admin(Auth(store), settings.home, settings.admin_password)
    if note:
        typer.echo(note, err=True)
    app = create_app(settings, store, redis=redis.Redis.from_url(settings.effective_broker_url))
    uvicorn.run(app, host=host, port=port, ssl_keyfile=ssl_keyfile or None, ssl_certfile=ssl_certfile or None,
                proxy_headers=True)  # fmt: skip


def _server_store(settings: Settings) -> Store:
    from app.store.db import SchemaError, ensure_schema, make_engine
    from app.store.repository import Store

    engine = make_engine(settings.effective_database_url)
    try:
        ensure_schema(engine, auto_upgrade=False)
    except SchemaError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    return Store(engine)


@user_cli.command("add")
def user_add(
    name: str = typer.Argument(...),
    admin: bool = typer.Option(False, "--admin", help="may see and control every experiment"),
    password: str = typer.Option(None, "--password", help="for automation; prompted when omitted"),
) -> None:
    """Create a user."""
    from app.services.auth import Auth
    from app.services.errors import ServiceError

    if password is None:
        password = typer.prompt(f"password for {name}", hide_input=True, confirmation_prompt=True)
    try:
        Auth(_server_store(get_settings())).add_user(name, password, admin=admin)
    except ServiceError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"user {name} created{' (admin)' if admin else ''}")


@user_cli.command("list")
def user_list() -> None:
    """List users."""
    from app.services.auth import Auth

    for user in Auth(_server_store(get_settings())).users():
        typer.echo(f"{user.name}{'  (admin)' if user.is_admin else ''}")


@user_cli.command("delete")
def user_delete(name: str = typer.Argument(...)) -> None:
    """Delete a user and revoke their tokens (their experiments stay)."""
    from app.services.auth import Auth
    from app.services.errors import ServiceError

    try:
        Auth(_server_store(get_settings())).delete_user(name)
    except ServiceError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"user {name} deleted")


# a token issued before new_secret may begin with '-': take it as the TOKEN, not an unknown option
@token_cli.command("revoke", context_settings={"ignore_unknown_options": True})
def token_revoke(
    token: str = typer.Argument(None, help="the token to revoke"),
    user: str = typer.Option(None, "--user", help="revoke every token of this user instead"),
) -> None:
    """Revoke one token, or all tokens of a user."""
    from app.services.auth import Auth
    from app.services.errors import ServiceError

    if (token is None) == (user is None):
        typer.echo("error: give a TOKEN or --user NAME", err=True)
        raise typer.Exit(2)
    try:
        n = Auth(_server_store(get_settings())).revoke(token=token, user=user)
    except ServiceError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from None
    if n == 0 and token is not None and token.startswith("-"):
        typer.echo(f"error: no such option or live token: {token} (see hpo token revoke --help)", err=True)
        raise typer.Exit(2)
    typer.echo(f"revoked {n} token{'s' if n != 1 else ''}")


@cli.command()
def coordinator(log_level: str = typer.Option("INFO", "--log-level")) -> None:
    """Drive every active experiment in the database (one per fleet; more take over on failure)."""
    import redis

    from app.coordinator.dispatch import Publisher
    from app.coordinator.loop import Coordinator
    from app.store.artifacts import FileArtifactStore
    from workers.celery_app import make_celery

    _logging(log_level)
    settings = get_settings()
    store = _server_store(settings)
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
    slots: int = typer.Option(0, "--slots", help="trials run at once (default: 1 per GPU, else 1)"),
    gpus: str = typer.Option("", "--gpus", help="GPU ids to pin trials to, e.g. 0,1 (default: detected)"),
    gpu_type: str = typer.Option("", "--gpu-type", help="GPU type for routing (default: from the model)"),
    queues: str = typer.Option("", "--queues", help="comma-separated queues (default: by GPUs)"),
    python: str = typer.Option("", "--python", help="interpreter that runs trials (default: this one)"),
    name: str = typer.Option("hpo@%h", "--name", help="Celery node name"),
    log_level: str = typer.Option("INFO", "--log-level"),
) -> None:
    """A Celery worker that runs trials; it needs only HPO_BROKER_URL.

    Without --gpus it serves the GPUs nvidia-smi (else torch.cuda) finds, or trials.cpu when none.
    """
    from app.worker_setup import WorkerSetupError, plan_worker

    _logging(log_level)
    try:
        plan = plan_worker(gpus=gpus, gpu_type=gpu_type, queues=queues, slots=slots)
    except WorkerSetupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(plan.describe(), err=True)
    os.environ.update(plan.environment())
    if python:
        os.environ["HPO_WORKER_PYTHON"] = python
    reset_settings()
    from workers.celery_app import app

    argv = ["worker", "-Q", ",".join(plan.queues), "-c", str(plan.slots), "-P", "prefork", "-n", name,
            "-O", "fair", "--without-gossip", "--without-mingle", "-l", log_level]  # fmt: skip
    app.worker_main(argv)


@cli.command()
def workers(json_output: bool = typer.Option(False, "--json", help="one JSON list on stdout")) -> None:
    """Connected workers (from the broker): GPU type, GPUs, slots in use, trials running."""
    import json

    import redis
    from rich.console import Console
    from rich.table import Table

    from app.fleet import live_workers

    url = _broker_url()
    try:
        found = live_workers(redis.Redis.from_url(url, socket_connect_timeout=3))
    except redis.RedisError as exc:
        typer.echo(f"error: the broker at {_redacted(url)} does not answer: {exc}", err=True)
        raise typer.Exit(1) from None
    if json_output:
        typer.echo(json.dumps([w.model_dump() for w in found]))
        return
    if not found:
        typer.echo("no worker is connected to this broker", err=True)
        return
    table = Table("worker", "host", "GPU type", "GPUs", "slots used", "queues", "running")
    for w in found:
        gpus = ",".join(w.gpus) or "-"
        if w.quarantined_gpus:
            gpus += f" (held: {','.join(w.quarantined_gpus)})"
        running = ", ".join(f"{r.exec_id}" + (f"@{','.join(r.gpus)}" if r.gpus else "") for r in w.running)
        table.add_row(w.name, w.host, w.gpu_type or "cpu", gpus, f"{w.slots_used}/{w.slots}",
                      " ".join(w.queues), running or "-")  # fmt: skip
    Console(width=200).print(table)


def _broker_url() -> str:
    """HPO_BROKER_URL; unset, the private Redis of an `hpo serve`/`hpo run` under this HPO_HOME
    while it runs, else the default."""
    from app.broker import private_broker_url

    settings = get_settings()
    if settings.broker_url:
        return settings.broker_url
    return private_broker_url(settings.home) or settings.effective_broker_url


def _redacted(url: str) -> str:
    """The URL without its password, for messages."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if not parts.hostname:
        return url
    return parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")).geturl()


@cli.command()
def flower(
    port: int = typer.Option(5555, "--port"),
    basic_auth: str = typer.Option(
        "", "--basic-auth", help="user:password for Flower's pages and API (else HPO_FLOWER_BASIC_AUTH)"
    ),
    no_auth: bool = typer.Option(
        False, "--no-auth", help="start without a password (e.g. behind a proxy that authenticates)"
    ),
) -> None:
    """Flower on the broker: every trial queue, workers, tasks. Refuses to start unprotected
    unless --no-auth is given."""
    import redis

    from app.flower_launch import (
        FlowerAuthError,
        check_basic_auth,
        flower_argv,
        flower_env_has_auth,
        show_trial_queues,
    )

    settings = get_settings()
    auth = basic_auth or settings.flower_basic_auth or ""
    if not auth and not no_auth and not flower_env_has_auth():
        typer.echo(
            "error: Flower would be open to anyone who reaches port "
            f"{port}: give --basic-auth USER:PASSWORD or set HPO_FLOWER_BASIC_AUTH "
            "(or --no-auth to start it without a password)",
            err=True,
        )
        raise typer.Exit(2)
    try:
        auth = check_basic_auth(auth) if auth else ""
    except FlowerAuthError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    url = _broker_url()
    if url != settings.effective_broker_url:  # `hpo serve`'s private Redis: the Celery app must use it
        os.environ["HPO_BROKER_URL"] = url
        reset_settings()
    from workers.celery_app import app

    show_trial_queues(redis.Redis.from_url(url), settings.broker_transport_options)
    app.start(flower_argv(port, auth or None))


@db_cli.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the SQL schema (Alembic) at HPO_DATABASE_URL."""
    from app.store.db import current_revision, make_engine, upgrade

    engine = make_engine(get_settings().effective_database_url)
    upgrade(engine)
    typer.echo(f"schema at revision {current_revision(engine)}")


def _register_client_commands() -> None:
    """Client-side commands (login, submit, status, ...) live in app/cli_client.py."""
    try:
        from app.cli_client import register
    except ImportError:  # not written yet
        return
    register(cli)


_register_client_commands()


def main() -> None:
    cli(prog_name="hpo")


if __name__ == "__main__":
    sys.exit(main())
