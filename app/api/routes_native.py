"""The native API under /api/v1: experiments, trials (paginated), metrics, logs, results, control."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, Response

from app.api.context import AppContext, ctx_of
from app.api.schemas import BestOut, ErrorBody, ExperimentOut, MetricPointOut, Page, TrialOut
from app.api.security import current_user
from app.api.uploads import native_upload, submit_upload
from app.services import experiments as svc
from app.services.auth import Principal
from app.services.errors import NotFound
from app.services.logs import trial_log, trial_result
from app.store.models import Experiment, Trial

INT_MAX = 2**31 - 1  # ids and numbers are 32-bit SQL integers
TrialNumber = Annotated[int, Path(ge=0, le=INT_MAX, description="trial number (0-based)")]
ERRORS = {code: {"model": ErrorBody} for code in (400, 401, 404, 409, 413)}
router = APIRouter(prefix="/api/v1", tags=["native"], responses=ERRORS)  # type: ignore[arg-type]


def experiment_out(ctx: AppContext, exp: Experiment) -> ExperimentOut:
    assert exp.id is not None
    best = ctx.store.trial(exp.best_trial_id) if exp.best_trial_id is not None else None
    return ExperimentOut.of(exp, ctx.store.trial_counts(exp.id), best.number if best else None)


def _trial(ctx: AppContext, user: Principal, name: str, number: int) -> Trial:
    exp = svc.get_for(ctx.store, user, name)
    trial = ctx.store.trial_by_number(exp.id, number)  # type: ignore[arg-type]
    if trial is None:
        raise NotFound(f"experiment {name!r} has no trial {number}")
    return trial


@router.get("/experiments", response_model=Page[ExperimentOut])
def list_experiments(
    request: Request,
    after: int = Query(0, ge=0, le=INT_MAX, description="last experiment id seen"),
    limit: int = Query(100, ge=1, le=1000),
    user: Principal = Depends(current_user),
) -> Page[ExperimentOut]:
    ctx = ctx_of(request)
    exps = svc.visible(ctx.store, user, after=after, limit=limit + 1)
    page, more = exps[:limit], len(exps) > limit
    return Page(items=experiments_out(ctx, page), next_after=page[-1].id if more and page else None)


def experiments_out(ctx: AppContext, page: list[Experiment]) -> list[ExperimentOut]:
    """Many experiments with their counts and best trial numbers, in two queries."""
    counts = ctx.store.trial_counts_many(e.id for e in page)  # type: ignore[misc]
    bests = ctx.store.trials_by_ids(e.best_trial_id for e in page if e.best_trial_id is not None)
    return [
        ExperimentOut.of(e, counts[e.id], bests[e.best_trial_id].number if e.best_trial_id in bests else None)  # type: ignore[index,union-attr]
        for e in page
    ]


@router.post("/experiments", response_model=ExperimentOut, status_code=201)
async def create_experiment(request: Request, user: Principal = Depends(current_user)) -> ExperimentOut:
    """Multipart: `spec` (JSON or YAML, either form) and one code file (`code`)."""
    ctx = ctx_of(request)
    upload = await native_upload(request, ctx.settings)
    exp = await run_in_threadpool(submit_upload, ctx, user, upload)
    return experiment_out(ctx, exp)


@router.get("/experiments/{name}", response_model=ExperimentOut)
def get_experiment(name: str, request: Request, user: Principal = Depends(current_user)) -> ExperimentOut:
    ctx = ctx_of(request)
    return experiment_out(ctx, svc.get_for(ctx.store, user, name))


@router.delete("/experiments/{name}", status_code=204)
def delete_experiment(name: str, request: Request, user: Principal = Depends(current_user)) -> Response:
    ctx = ctx_of(request)
    svc.delete(ctx.store, ctx.artifacts, user, name)
    return Response(status_code=204)


@router.post("/experiments/{name}/stop", response_model=ExperimentOut)
def stop_experiment(
    name: str, request: Request, force: bool = False, user: Principal = Depends(current_user)
) -> ExperimentOut:
    ctx = ctx_of(request)
    return experiment_out(ctx, svc.request_stop(ctx.store, user, name, force=force))


@router.post("/experiments/{name}/restart", response_model=ExperimentOut)
def restart_experiment(name: str, request: Request, user: Principal = Depends(current_user)) -> ExperimentOut:
    ctx = ctx_of(request)
    return experiment_out(ctx, svc.restart(ctx.store, user, name))


@router.post("/experiments/{name}/retry", response_model=list[TrialOut])
def retry_trials(
    name: str,
    request: Request,
    trial: list[int] | None = Query(None, description="trial numbers; all FAILED ones when absent"),
    user: Principal = Depends(current_user),
) -> list[TrialOut]:
    """Run FAILED trials again as new attempts (they do not count as new trials)."""
    ctx = ctx_of(request)
    return [TrialOut.of(t) for t in svc.retry(ctx.store, user, name, numbers=trial)]


@router.get("/experiments/{name}/best", response_model=BestOut)
def best(name: str, request: Request, user: Principal = Depends(current_user)) -> BestOut:
    ctx = ctx_of(request)
    exp = svc.get_for(ctx.store, user, name)
    trial = ctx.store.trial(exp.best_trial_id) if exp.best_trial_id is not None else None
    if trial is None or trial.objective is None:
        raise NotFound(f"experiment {name!r} has no successful trial yet")
    return BestOut(trial=trial.number, exec_id=trial.exec_id, value=trial.objective, params=trial.params)


@router.get("/experiments/{name}/trials", response_model=Page[TrialOut])
def list_trials(
    name: str,
    request: Request,
    after: int = Query(-1, ge=-1, le=INT_MAX, description="last trial number seen"),
    limit: int = Query(100, ge=1, le=1000),
    state: str | None = Query(None, description="only trials in this state"),
    user: Principal = Depends(current_user),
) -> Page[TrialOut]:
    ctx = ctx_of(request)
    exp = svc.get_for(ctx.store, user, name)
    rows = ctx.store.trials_page(exp.id, after=after, limit=limit + 1, states=[state] if state else None)  # type: ignore[arg-type]
    page = rows[:limit]
    return Page(
        items=[TrialOut.of(t) for t in page], next_after=page[-1].number if len(rows) > limit else None
    )


@router.get("/experiments/{name}/trials/{number}", response_model=TrialOut)
def get_trial(
    name: str, number: TrialNumber, request: Request, user: Principal = Depends(current_user)
) -> TrialOut:
    return TrialOut.of(_trial(ctx_of(request), user, name, number))


@router.get("/experiments/{name}/trials/{number}/metrics", response_model=Page[MetricPointOut])
def get_metrics(
    name: str,
    number: TrialNumber,
    request: Request,
    after: int = Query(-1, ge=-1, le=INT_MAX),
    limit: int = Query(1000, ge=1, le=10000),
    user: Principal = Depends(current_user),
) -> Page[MetricPointOut]:
    ctx = ctx_of(request)
    trial = _trial(ctx, user, name, number)
    rows = ctx.store.metric_points_page(trial.id, after=after, limit=limit + 1)  # type: ignore[arg-type]
    page = rows[:limit]
    return Page(
        items=[MetricPointOut.of(p) for p in page], next_after=page[-1].seq if len(rows) > limit else None
    )


@router.get("/experiments/{name}/trials/{number}/log", response_class=PlainTextResponse)
def get_log(
    name: str,
    number: TrialNumber,
    request: Request,
    stream: str = Query("stdout", pattern="^(stdout|stderr)$"),
    user: Principal = Depends(current_user),
) -> PlainTextResponse:
    ctx = ctx_of(request)
    trial = _trial(ctx, user, name, number)
    return PlainTextResponse(trial_log(trial, stream, ctx.artifacts, ctx.redis))


@router.get("/experiments/{name}/trials/{number}/result")
def get_result(
    name: str, number: TrialNumber, request: Request, user: Principal = Depends(current_user)
) -> Response:
    ctx = ctx_of(request)
    trial = _trial(ctx, user, name, number)
    data = trial_result(trial, ctx.artifacts)
    disposition = f'attachment; filename="{trial.exec_id}.zip"'
    return Response(data, media_type="application/zip", headers={"Content-Disposition": disposition})


@router.post("/experiments/{name}/trials/{number}/stop", response_model=TrialOut)
def stop_trial(
    name: str,
    number: TrialNumber,
    request: Request,
    force: bool = False,
    user: Principal = Depends(current_user),
) -> TrialOut:
    ctx = ctx_of(request)
    trial = _trial(ctx, user, name, number)
    svc.stop_trial(ctx.store, user, trial.exec_id, force=force)
    return TrialOut.of(ctx.store.trial(trial.id))  # type: ignore[arg-type]
