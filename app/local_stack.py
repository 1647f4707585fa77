"""Everything one machine needs to run experiments: broker, SQL, local worker, coordinator parts.

Shared by `hpo run` and `hpo serve`. Without HPO_BROKER_URL a private Redis is started (and
stopped on exit); with it, that Redis is used and remote workers may join.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import redis

from app.broker import EmbeddedRedis
from app.config import Settings
from app.coordinator.dispatch import Publisher
from app.coordinator.loop import Coordinator
from app.keys import served_queues, trial_queue
from app.local_workers import LocalWorker
from app.store.artifacts import FileArtifactStore
from app.store.db import ensure_schema, make_engine
from app.store.repository import Store
from workers.celery_app import make_celery
from workers.gpus import GPU


def worker_queues(gpus: list[GPU], cpu_only: bool) -> list[str]:
    """What a local worker serves: CPU trials, plus GPU queues for this machine's GPUs."""
    queues = [trial_queue(None, 0)]
    if gpus and not cpu_only:
        kind = Counter(g.type for g in gpus).most_common(1)[0][0]
        queues += served_queues(kind, len(gpus))
    return queues


class LocalStack(contextlib.ExitStack):
    def __init__(self, settings: Settings, *, slots: int, queues: Iterable[str], gpus: list[GPU]) -> None:
        super().__init__()
        home = settings.home.resolve()
        self.settings = settings.model_copy(update={"home": home})
        self.slots = slots
        self.queues = list(queues)
        self.gpus = gpus
        self.embedded = settings.broker_url is None
        self.worker: LocalWorker | None = None

    def __enter__(self) -> LocalStack:
        super().__enter__()
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        home = self.settings.home
        self.engine = make_engine(self.settings.effective_database_url)
        self.callback(self.engine.dispose)
        ensure_schema(self.engine, auto_upgrade=True)
        self.store = Store(self.engine)
        broker_url = self.settings.broker_url
        if broker_url is None:
            broker_url = self.enter_context(EmbeddedRedis(home / "redis")).url
        self.settings = self.settings.model_copy(update={"broker_url": broker_url})
        self.redis = redis.Redis.from_url(broker_url)
        self.callback(self.redis.close)
        self.artifacts = FileArtifactStore(self.settings.artifacts_dir)
        self.publisher = Publisher(make_celery(broker_url, include_tasks=False), self.redis, self.store)
        if self.slots > 0:
            self.worker = LocalWorker(
                slots=self.slots,
                queues=self.queues,
                env={"HPO_BROKER_URL": broker_url, "HPO_HOME": str(home)},
                log_path=home / "logs" / f"worker-{os.getpid()}.log",
                worker_dir=self.settings.effective_worker_dir.resolve(),
                name=f"hpo-local-{os.getpid()}@%h",
                gpus=[g.index for g in self.gpus],
            )
            self.enter_context(self.worker)

    def coordinator(self, only: Iterable[int] | None = None) -> Coordinator:
        coord = Coordinator(self.store, self.redis, self.publisher, self.artifacts, self.settings, only=only)
        self.callback(coord.close)
        return coord

    def worker_lost(self) -> str | None:
        """With a private broker no other worker can come: a dead local worker is fatal."""
        if not self.embedded or self.worker is None or self.worker.exit_code() is None:
            return None
        return f"the local worker exited with code {self.worker.exit_code()}:\n{self.worker.log_tail()}"

    @property
    def home(self) -> Path:
        return self.settings.home
