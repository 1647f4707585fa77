"""The Celery app: JSON only, late acks, one task per slot, trial queues named in app.keys.

`celery -A workers.celery_app worker -Q trials.cpu` works as well as `hpo worker`.
"""

from __future__ import annotations

from celery import Celery

from app import redis_transport
from app.config import get_settings


def make_celery(
    broker_url: str, *, visibility_timeout_s: int | None = None, include_tasks: bool = True
) -> Celery:
    settings = get_settings()
    redis_transport.install()  # kombu's Redis transport, less a client object per command
    app = Celery("hpo", broker=broker_url, include=["workers.tasks"] if include_tasks else [])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,  # outcomes travel on the event streams, not Celery results
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue="trials.cpu",
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            # Larger than any trial: a healthy long trial is not redelivered while it runs (and if
            # it were, its claim key would stop the copy from running it twice).
            "visibility_timeout": visibility_timeout_s or settings.visibility_timeout_s,
            **settings.broker_transport_options,
        },
        # Off unless asked: a running Flower turns them on in every worker (its enable_events).
        worker_send_task_events=settings.worker_task_events,
        task_send_sent_event=True,  # queued tasks show in Flower even before a worker takes them
        worker_hijack_root_logger=False,
    )
    if include_tasks:
        from workers.admission import Admission

        app.steps["consumer"].add(Admission)
    return app


app = make_celery(get_settings().effective_broker_url)
