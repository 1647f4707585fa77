"""What every request handler needs, built once per app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request

from app.config import Settings
from app.services.auth import Auth
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


def ctx_of(request: Request) -> AppContext:
    return request.app.state.ctx
