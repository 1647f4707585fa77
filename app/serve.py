"""`hpo serve`: the API, a coordinator and N local trial slots on one machine, started and
stopped together (a private Redis unless HPO_BROKER_URL is set)."""

from __future__ import annotations

import signal
import sys
import threading
import time
from dataclasses import dataclass

import uvicorn

from app.api.app import create_app
from app.config import Settings
from app.local_stack import LocalStack, worker_queues
from app.services.auth import Auth, ensure_admin
from workers.gpus import detect_gpus


@dataclass
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 2
    cpu: bool = False
    ssl_keyfile: str | None = None
    ssl_certfile: str | None = None
    drain_s: float = 20.0


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def serve(options: ServeOptions, settings: Settings) -> int:
    gpus = detect_gpus()
    with LocalStack(
        settings, slots=options.workers, queues=worker_queues(gpus, options.cpu), gpus=gpus
    ) as stack:
        note = ensure_admin(Auth(stack.store), stack.home, stack.settings.admin_password)
        if note:
            print(note, file=sys.stderr, flush=True)
        app = create_app(
            stack.settings, stack.store, redis=stack.redis, cpu_only=options.cpu, has_gpus=bool(gpus)
        )
        coordinator = stack.coordinator()
        stop = threading.Event()
        thread = threading.Thread(
            target=coordinator.run, kwargs={"should_stop": stop.is_set}, name="coordinator"
        )
        thread.start()
        config = uvicorn.Config(
            app,
            host=options.host,
            port=options.port,
            log_level="info",
            ssl_keyfile=options.ssl_keyfile,
            ssl_certfile=options.ssl_certfile,
            proxy_headers=True,
        )
        # uvicorn captures SIGTERM, shuts down, then raises it again with the handler it found: with
        # the default one the process would die here, leaving the workers and Redis it started.
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        try:
            uvicorn.Server(config).run()  # until SIGINT/SIGTERM
        except SystemExit:
            pass  # SIGTERM: stop like Ctrl-C
        finally:
            signal.signal(signal.SIGTERM, previous)
            stop.set()
            thread.join(timeout=60)
            # Shutting down: trials in flight stop; `hpo restart NAME` continues an experiment later.
            for exp_id in list(coordinator.runtimes):
                coordinator.request_stop(exp_id, "force")
            deadline = time.monotonic() + options.drain_s
            coordinator.run(should_stop=lambda: not coordinator.runtimes or time.monotonic() > deadline)
    return 0
