"""The FastAPI application: routes, error handling, and the per-app context."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.middleware.gzip import GZipMiddleware

from app import __version__
from app.api import (
    errors,
    routes_auth,
    routes_dashboard,
    routes_metrics,
    routes_native,
    routes_plugins,
    routes_wmla,
)
from app.api.context import AppContext
from app.config import Settings
from app.services.auth import Auth
from app.store.artifacts import FileArtifactStore
from app.store.repository import Store


def create_app(
    settings: Settings,
    store: Store,
    *,
    redis: Any | None = None,
    cpu_only: bool = False,
    has_gpus: bool | None = None,
) -> FastAPI:
    app = FastAPI(
        title="hpo-queue",
        version=__version__,
        description="Distributed hyperparameter optimization; WMLA HPO compatible.",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,  # the Swagger page loads from a CDN; the OpenAPI document is enough
        redoc_url=None,
    )
    app.state.ctx = AppContext(
        settings=settings,
        store=store,
        artifacts=FileArtifactStore(settings.artifacts_dir),
        auth=Auth(store, token_ttl_s=settings.token_ttl_s),
        redis=redis,
        cpu_only=cpu_only,
        has_gpus=has_gpus,
    )
    app.add_middleware(GZipMiddleware, minimum_size=4096, compresslevel=1)  # big WMLA task views: MBs
    errors.install(app)
    app.include_router(routes_auth.router)
    app.include_router(routes_plugins.router)  # before /hypersearch/{hpoName}, which "algorithm" would match
    app.include_router(routes_wmla.router)
    app.include_router(routes_native.router)
    app.include_router(routes_metrics.router)
    app.include_router(routes_dashboard.router)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
