"""What every request handler needs, built once per app."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from app.config import Settings
from app.services.auth import Auth
from app.services.dashboard import PlotCache
from app.store.artifacts import ArtifactStore
from app.store.repository import Store


@dataclass
class AppContext:
    settings: Settings
    store: Store
    artifacts: ArtifactStore
    auth: Auth
    redis: Any | None = None  # for live log tails; None when the API runs without a broker
    cpu_only: bool = False  # `hpo serve --cpu`: GPU requests run on CPU slots
    has_gpus: bool | None = None  # single-machine servers know; a fleet API does not (None)
    plot_cache: PlotCache = field(default_factory=PlotCache)  # the dashboard's aggregated plot data


def ctx_of(request: Request) -> AppContext:
    return request.app.state.ctx
