"""Settings from HPO_* environment variables (pydantic-settings), in one place."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.codepack import ArchiveLimits

DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HPO_", extra="ignore")

    home: Path = Path(".hpo")
    # None means "not configured": `hpo run`/`hpo serve` then start a private Redis;
    # fleet components fall back to DEFAULT_BROKER_URL.
    broker_url: str | None = None
    database_url: str | None = None

    # Files: code in, results out (through Redis, size-capped).
    code_max_bytes: int = 64 * 1024 * 1024  # an uploaded archive
    upload_max_members: int = 10_000
    upload_max_unpacked_bytes: int = 1024 * 1024 * 1024
    result_max_bytes: int = 64 * 1024 * 1024
    result_ttl_s: int = 7 * 24 * 3600
    keep_trial_dirs: bool = False
    # A filesystem every machine mounts (WMLA's DLI_RESULT_FS): checkpoints live there, uncopied.
    shared_dir: Path | None = None
    checkpoint_max_bytes: int = 256 * 1024 * 1024  # bigger ones are not shipped: the next rung starts fresh

    # Worker.
    worker_dir: Path | None = None  # default: <home>/worker
    data_fs: Path | None = None  # DLI_DATA_FS for trials; default: <home>/data
    worker_python: str | None = None  # interpreter for trials; default: the worker's own
    # Start each slot's next subprocess trial interpreter ahead, while a trial runs (workers.prespawn).
    prespawn: bool = True
    # Celery task events (received/succeeded) from the start. Off: they are a third of the worker
    # main process's CPU per short trial; Flower turns them on (until the worker restarts) when it runs.
    worker_task_events: bool = False
    worker_gpus: str | None = None  # "0,1": GPU ids this worker pins trials to
    worker_slots: int = 1  # trials this worker runs at once (set by `hpo worker --slots`)
    worker_gpu_type: str | None = None  # the type its GPUs are listed under (set by `hpo worker`)
    worker_gpu_names: str | None = None  # "NVIDIA H100 80GB HBM3,...", for `hpo workers`
    worker_name: str | None = None  # its entry in the fleet registry; default: the Celery node name
    gpu_release_timeout_s: float = 30.0  # wait this long for a finished trial's GPU memory to free
    log_tail_bytes: int = 8192
    live_log_bytes: int = 65536  # tail of a running trial's logs kept in Redis
    log_share_s: float = 2.0
    metrics_poll_s: float = 0.5  # how often a running trial's new points are looked for and sent
    # Leases: a running attempt's worker refreshes its lease every heartbeat_s; the lease lives
    # lease_timeout_s. A dead worker's trial is rescheduled within lease_timeout_s + lease_check_s.
    heartbeat_s: float = 10.0
    lease_timeout_s: float = 45.0
    publish_retry_s: float = 600.0  # how long a worker keeps trying to report through a broker outage
    stop_poll_s: float = 0.5
    kill_grace_s: float = 5.0
    coverage_check_s: float = 5.0  # how often the coordinator looks for queues no worker serves

    # Broker: a delivered task is redelivered only after this; it must exceed any trial's
    # run time (trials have their own timeout), so a healthy long trial never runs twice.
    visibility_timeout_s: int = 7 * 24 * 3600
    broker_transport_options: dict[str, Any] = Field(default_factory=dict)  # extra kombu options (JSON)

    # Coordinator.
    event_block_ms: int = 200
    # A read that brought only `started` events (they start nothing) waits this much longer for
    # more, so a short trial's start and end are recorded in one transaction (one SQL write).
    event_linger_ms: int = 50
    # Trials queued beyond maxParalleNum, so a slot that frees starts the next trial without waiting
    # for the coordinator; only while the workers serving the queue have no more slots than
    # maxParalleNum (then the extra trials cannot run at the same time). 0: off.
    lookahead: int = 1
    # Short CPU trials go out several to a Celery task, sized to run about bundle_target_s together
    # (app.coordinator.bundling); bundle_max 1: one trial per task always.
    bundle_target_s: float = 0.2
    bundle_max: int = 8
    # While the trials of every experiment in a read go out in bundles, the coordinator waits this
    # much longer for more events before handling them: each slot has a bundle queued behind the one
    # it runs, so no slot waits on it, and more trials share a batch's read, transaction and send.
    bundle_linger_ms: int = 5
    poll_interval_s: float = 0.5
    ask_processes: int = 1
    plugin_timeout_s: float = 60.0  # a plugin's search() must answer within this
    plugin_memory_mb: int = 2048  # address-space limit of a plugin's process
    lease_s: float = 30.0  # a coordinator's hold on an experiment (renewed every third of it)
    lease_check_s: float = 5.0  # how often trials' leases are checked

    # API and users.
    token_ttl_s: float = 8 * 3600
    admin_password: str | None = None  # first start: the `admin` user's password (else generated)
    wmla_create_response: str = "uid"  # "name": POST /hypersearch answers the bare name (WMLA 1.2.x)
    metrics_public: bool = False  # HPO_METRICS_PUBLIC=1: /metrics needs no credentials
    metrics_token: str | None = None  # scrapers send Authorization: Bearer <this> to /metrics
    flower_basic_auth: str | None = None  # user:password for `hpo flower` (else --basic-auth)

    def archive_limits(self) -> ArchiveLimits:
        return ArchiveLimits(
            max_bytes=self.code_max_bytes,
            max_members=self.upload_max_members,
            max_unpacked_bytes=self.upload_max_unpacked_bytes,
        )

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or DEFAULT_BROKER_URL

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'hpo.db').resolve()}"

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"

    @property
    def effective_worker_dir(self) -> Path:
        return self.worker_dir or (self.home / "worker")

    @property
    def effective_data_fs(self) -> Path:
        return self.data_fs or (self.home / "data")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    get_settings.cache_clear()


# Prefixes of environment variables that are ours and never reach a trial.
OWN_ENV_PREFIXES = ("HPO_", "CELERY_", "FLOWER_")


def own_env_names(environ: dict[str, str] | None = None) -> list[str]:
    env = os.environ if environ is None else environ
    return [k for k in env if k.startswith(OWN_ENV_PREFIXES)]


class TestSettings(BaseSettings):
    """Where the test suite finds its services."""

    __test__ = False
    model_config = SettingsConfigDict(env_prefix="HPO_TEST_", extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/15"
    database_url: str = Field(default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
