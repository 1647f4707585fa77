"""`hpo flower`: Flower on our broker, protected, with every trial queue on its broker page.

Flower lists the queues its workers report (`active_queues`), else only the default queue, so a
queue nobody serves, exactly the one worth looking at, would not show. We add the trial queues
the broker knows: those ever declared (kombu's `_kombu.binding.trials.*` sets) and those in the
fleet registry. Task arguments are readable because the coordinator publishes a short
`kwargsrepr` (app.coordinator.dispatch.task_summary).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from redis.exceptions import RedisError

from app.broker_queues import QueueLayout
from app.fleet import live_workers, served_queues

log = logging.getLogger("hpo.flower")


class FlowerAuthError(ValueError):
    pass


def flower_env_has_auth(environ: Mapping[str, str] | None = None) -> bool:
    """Flower reads FLOWER_* itself: FLOWER_BASIC_AUTH, or OAuth through FLOWER_AUTH."""
    env = os.environ if environ is None else environ
    return bool(env.get("FLOWER_BASIC_AUTH") or env.get("FLOWER_AUTH"))


def check_basic_auth(value: str) -> str:
    """`user:password`, or several separated by commas, as Flower takes them."""
    for pair in value.split(","):
        user, sep, password = pair.partition(":")
        if not sep or not user or not password:
            raise FlowerAuthError("basic auth must be user:password (several separated by commas)")
    return value


def flower_argv(port: int, basic_auth: str | None) -> list[str]:
    argv = ["flower", f"--port={port}"]
    if basic_auth:
        argv.append(f"--basic_auth={basic_auth}")
    return argv


def trial_queue_names(client: Any, layout: QueueLayout) -> set[str]:
    """Trial queues the broker knows about, served or not."""
    return layout.declared(client) | served_queues(live_workers(client))


def show_trial_queues(client: Any, transport_options: Mapping[str, Any] | None = None) -> None:
    """Make Flower's queue list (broker page, /api/queues/length) include every trial queue."""
    from flower.views import BaseHandler

    layout = QueueLayout(transport_options)
    original: Callable[[Any], list[str]] = BaseHandler.get_active_queue_names

    def get_active_queue_names(self: Any) -> list[str]:
        names = set(original(self))
        try:
            names |= trial_queue_names(client, layout)
        except RedisError as exc:
            log.warning("cannot list the trial queues: %s", exc)
        return sorted(names)

    BaseHandler.get_active_queue_names = get_active_queue_names
