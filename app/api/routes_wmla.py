"""WMLA routes under /platform/rest/deeplearning/v1: hypersearch tasks and their executions."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic_core import to_json

from app.api.context import ctx_of
from app.api.security import current_user
from app.api.uploads import submit_upload, wmla_upload
from app.services import experiments as svc
from app.services.auth import Principal
from app.services.errors import BadRequest
from app.services.logs import STREAMS, trial_log, trial_result
from app.services.wmla_views import EXEC_STATE, exec_view, task_view

PREFIX = "/platform/rest/deeplearning/v1"
router = APIRouter(prefix=PREFIX, tags=["WMLA"])


def _task(request: Request, name: str, user: Principal) -> dict:
    ctx = ctx_of(request)
    exp = svc.get_for(ctx.store, user, name)
    return task_view(exp, ctx.store.trial_rows(exp.id), datetime.now(UTC))  # type: ignore[arg-type]


@router.get("/hypersearch")
def list_tasks(request: Request, user: Principal = Depends(current_user)) -> list[dict]:
    ctx = ctx_of(request)
    now = datetime.now(UTC)
    return [task_view(e, ctx.store.trial_rows(e.id), now) for e in svc.visible(ctx.store, user)]  # type: ignore[arg-type]


@router.post("/hypersearch")
async def create_task(request: Request, user: Principal = Depends(current_user)) -> Response:
    ctx = ctx_of(request)
    upload = await wmla_upload(request, ctx.settings)
    exp = await run_in_threadpool(submit_upload, ctx, user, upload)
    if ctx.settings.wmla_create_response == "name":
        return JSONResponse(exp.name)
    return JSONResponse({"uid": exp.name, "href": f"{PREFIX}/hypersearch/{exp.name}"})


@router.delete("/hypersearch", status_code=204)
def delete_tasks(request: Request, user: Principal = Depends(current_user)) -> Response:
    ctx = ctx_of(request)
    svc.delete_all(ctx.store, ctx.artifacts, user)
    return Response(status_code=204)


@router.get("/hypersearch/{hpoName}")
def get_task(hpoName: str, request: Request, user: Principal = Depends(current_user)) -> Response:
    # Serialised here, by pydantic-core: at 10,000 trials FastAPI's generic encoder doubles the time.
    return Response(to_json(_task(request, hpoName, user)), media_type="application/json")


@router.put("/hypersearch/{hpoName}", status_code=204)
def stop_task(hpoName: str, request: Request, user: Principal = Depends(current_user)) -> Response:
    svc.request_stop(ctx_of(request).store, user, hpoName)
    return Response(status_code=204)


@router.put("/hypersearch/{hpoName}/force", status_code=204)
def force_stop_task(hpoName: str, request: Request, user: Principal = Depends(current_user)) -> Response:
    svc.request_stop(ctx_of(request).store, user, hpoName, force=True)
    return Response(status_code=204)


@router.put("/hypersearch/{hpoName}/restart")
def restart_task(hpoName: str, request: Request, user: Principal = Depends(current_user)) -> dict:
    svc.restart(ctx_of(request).store, user, hpoName)
    return _task(request, hpoName, user)


@router.delete("/hypersearch/{hpoName}", status_code=204)
def delete_task(hpoName: str, request: Request, user: Principal = Depends(current_user)) -> Response:
    ctx = ctx_of(request)
    svc.delete(ctx.store, ctx.artifacts, user, hpoName)
    return Response(status_code=204)


@router.get("/execs/{execId}")
def get_exec(execId: str, request: Request, user: Principal = Depends(current_user)) -> dict:
    exp, trial = svc.find_trial(ctx_of(request).store, user, execId)
    return exec_view(exp, trial)


@router.get("/execs/{execId}/log")
def get_exec_log(
    execId: str,
    request: Request,
    logType: str = "outlog",
    user: Principal = Depends(current_user),
) -> JSONResponse:
    if logType not in STREAMS:
        raise BadRequest("logType: outlog or errlog", field="logType")
    ctx = ctx_of(request)
    _, trial = svc.find_trial(ctx.store, user, execId)
    return JSONResponse(trial_log(trial, logType, ctx.artifacts, ctx.redis))  # a JSON string, as WMLA


@router.get("/execs/{execId}/result")
def get_exec_result(execId: str, request: Request, user: Principal = Depends(current_user)) -> Response:
    ctx = ctx_of(request)
    _, trial = svc.find_trial(ctx.store, user, execId)
    data = trial_result(trial, ctx.artifacts)
    disposition = f'attachment; filename="{trial.exec_id}.zip"; size={len(data)}'
    return Response(data, media_type="application/zip", headers={"Content-Disposition": disposition})


@router.post("/execs/{execId}/stop")
def stop_exec(execId: str, request: Request, user: Principal = Depends(current_user)) -> dict:
    trial = svc.stop_trial(ctx_of(request).store, user, execId)
    return {
        "id": trial.exec_id,
        "state": EXEC_STATE.get(trial.state, trial.state),
        "message": "stop requested",
    }
