"""GET /metrics for Prometheus: a scrape token, any API credential, or nothing with HPO_METRICS_PUBLIC=1."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from app.api.context import ctx_of
from app.api.security import current_user
from app.services.metrics_export import make_registry, render

router = APIRouter(tags=["ops"])


def _scrape_token_matches(request: Request, token: str | None) -> bool:
    header = request.headers.get("authorization", "")
    if not token or not header.lower().startswith("bearer "):
        return False
    return hmac.compare_digest(header[7:].strip().encode(), token.encode())


def _registry(request: Request) -> CollectorRegistry:
    registry = getattr(request.app.state, "metrics_registry", None)
    if registry is None:
        ctx = ctx_of(request)
        registry = make_registry(ctx.store, ctx.redis, ctx.settings.broker_transport_options)
        request.app.state.metrics_registry = registry
    return registry


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """Sync on purpose: SQL and Redis calls run in the thread pool."""
    settings = ctx_of(request).settings
    if not settings.metrics_public and not _scrape_token_matches(request, settings.metrics_token):
        current_user(request)  # an API credential also works; 401 otherwise
    return Response(render(_registry(request)), media_type=CONTENT_TYPE_LATEST)
