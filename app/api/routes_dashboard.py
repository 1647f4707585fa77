"""The dashboard: its page and assets at `/`, and the aggregated data it polls under /api/v1/dashboard."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel

from app.api.context import ctx_of
from app.api.routes_native import experiment_out, experiments_out
from app.api.schemas import ExperimentOut, TrialOut
from app.api.security import current_user
from app.dashboard import STATIC, plotly_js
from app.services import experiments as svc
from app.services.auth import Principal
from app.services.errors import NotFound

router = APIRouter(tags=["dashboard"])
ASSETS = {"dashboard.js": "text/javascript", "plots.js": "text/javascript", "dashboard.css": "text/css"}
NO_STORE = {"Cache-Control": "no-store"}


class DashboardOut(BaseModel):
    experiment: ExperimentOut
    plots: dict[str, Any]


class TrialTableOut(BaseModel):
    items: list[TrialOut]
    total: int


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=NO_STORE)


@router.get("/static/{name}", include_in_schema=False)
def asset(name: str) -> FileResponse:
    if name == "plotly.min.js":
        return FileResponse(plotly_js(), media_type="text/javascript",
                            headers={"Cache-Control": "public, max-age=86400"})  # fmt: skip
    if name not in ASSETS:
        raise NotFound(f"no asset {name!r}")
    return FileResponse(STATIC / name, media_type=ASSETS[name], headers=NO_STORE)


@router.get("/api/v1/dashboard/experiments", response_model=list[ExperimentOut])
def recent(
    request: Request, limit: int = Query(100, ge=1, le=1000), user: Principal = Depends(current_user)
) -> list[ExperimentOut]:
    """The newest experiments the caller may see, newest first (the dashboard's list)."""
    ctx = ctx_of(request)
    return experiments_out(ctx, svc.visible(ctx.store, user, limit=limit, newest_first=True))


@router.get("/api/v1/dashboard/experiments/{name}", response_model=DashboardOut)
def dashboard(name: str, request: Request, user: Principal = Depends(current_user)) -> JSONResponse:
    """Progress, best and the plots' data (aggregated and capped) for one experiment."""
    ctx = ctx_of(request)
    exp = svc.get_for(ctx.store, user, name)
    out = DashboardOut(experiment=experiment_out(ctx, exp), plots=ctx.plot_cache.get(ctx.store, exp))
    return JSONResponse(out.model_dump(mode="json"), headers=NO_STORE)


@router.get("/api/v1/dashboard/experiments/{name}/trials", response_model=TrialTableOut)
def trial_table(
    name: str,
    request: Request,
    sort: str = Query("number", pattern="^(number|state|objective|started|ended|worker|attempt)$"),
    desc: bool = Query(False),
    offset: int = Query(0, ge=0, le=10_000_000),
    limit: int = Query(50, ge=1, le=500),
    state: str | None = Query(None, max_length=16),
    user: Principal = Depends(current_user),
) -> TrialTableOut:
    """A page of the trial table in any column order, and how many trials match."""
    ctx = ctx_of(request)
    exp = svc.get_for(ctx.store, user, name)
    rows, total = ctx.store.trials_sorted(exp.id, sort=sort, descending=desc, offset=offset, limit=limit,  # type: ignore[arg-type]
                                          states=[state] if state else None)  # fmt: skip
    return TrialTableOut(items=[TrialOut.of(t) for t in rows], total=total)
