"""WMLA plugin routes: /hypersearch/algorithm (list, install, describe, delete)."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile

from app.api.context import ctx_of
from app.api.security import current_user
from app.api.uploads import FORM_LIMITS
from app.plugins import registry
from app.services.auth import Principal
from app.services.errors import BadRequest, TooLarge

PREFIX = "/platform/rest/deeplearning/v1/hypersearch/algorithm"
router = APIRouter(prefix=PREFIX, tags=["WMLA plugins"])


@router.get("")
def list_algorithms(
    request: Request, type: str | None = None, user: Principal = Depends(current_user)
) -> list[dict]:
    return registry.listing(ctx_of(request).store, type)


@router.post("/install")
async def install(request: Request, user: Principal = Depends(current_user)) -> JSONResponse:
    """Multipart: `data` (JSON: name, path, condaHome, condaEnv, remoteExec, logLevel) and, to upload,
    a tar of the plugin's files with optimizer.py at its root (any field name)."""
    ctx = ctx_of(request)
    form = await request.form(**FORM_LIMITS)
    raw = form.get("data")
    text = (await raw.read()).decode("utf-8", "replace") if isinstance(raw, UploadFile) else raw
    if not text:
        raise BadRequest("data: required (JSON with the plugin's name)", field="data")
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise BadRequest("data: not valid JSON", field="data") from None
    if not isinstance(data, dict):
        raise BadRequest("data: must be a JSON object", field="data")
    files = [v for k, v in form.multi_items() if isinstance(v, UploadFile) and k != "data"]
    if len(files) > 1:
        raise BadRequest("file: one plugin archive only", field="file")
    archive = None
    if files:
        archive = await files[0].read(ctx.settings.code_max_bytes + 1)
        if len(archive) > ctx.settings.code_max_bytes:
            raise TooLarge(f"file: over the {ctx.settings.code_max_bytes} byte limit", field="file")
    created = await run_in_threadpool(
        registry.install, ctx.store, user, data, archive, ctx.settings.archive_limits()
    )
    return JSONResponse(created)


@router.get("/{algoName}")
def describe(algoName: str, request: Request, user: Principal = Depends(current_user)) -> dict:
    return registry.show(ctx_of(request).store, algoName)


@router.delete("/{algoName}", status_code=204)
def delete(algoName: str, request: Request, user: Principal = Depends(current_user)) -> Response:
    registry.remove(ctx_of(request).store, user, algoName)
    return Response(status_code=204)
