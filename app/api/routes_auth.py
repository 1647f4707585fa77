"""Logon (WMLA CPD and Conductor styles), tokens and who-am-I."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from app.api.context import ctx_of
from app.api.schemas import TokenOut, UserOut
from app.api.security import SESSION_COOKIE, basic_credentials, current_user
from app.services.auth import Principal
from app.services.errors import BadRequest, Unauthorized

router = APIRouter(tags=["auth"])


async def _login(request: Request) -> Principal:
    """Basic credentials, or (as IBM's CPD notebook also sends) a JSON body {username, password}."""
    ctx = ctx_of(request)
    basic = basic_credentials(request)
    if basic is None:
        body = await request.body()
        try:
            data = json.loads(body) if body else {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise BadRequest("the body must be JSON {username, password}") from None
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("username"), str)
            or not isinstance(data.get("password"), str)
        ):
            raise Unauthorized("credentials required: HTTP Basic, or a JSON body {username, password}")
        basic = (data["username"], data["password"])
    return await run_in_threadpool(ctx.auth.login, *basic)


async def _token_response(request: Request, kind: str) -> tuple[dict, str]:
    ctx = ctx_of(request)
    user = await _login(request)
    token, row = await run_in_threadpool(ctx.auth.issue_token, user, kind)
    body = {
        "accessToken": token,
        "user": user.name,
        "expiresIn": int(ctx.settings.token_ttl_s),
        "expiresAt": row.expires_at.isoformat(),
    }
    return body, token


@router.get("/auth/v1/logon")
async def cpd_logon(request: Request) -> JSONResponse:
    """CPD-style logon: Basic (or a JSON body) in, {"accessToken", ...} out."""
    body, _ = await _token_response(request, "token")
    return JSONResponse(body)


@router.post("/auth/v1/logon")
async def cpd_logon_post(request: Request) -> JSONResponse:
    """The same logon, for clients that POST it."""
    return await cpd_logon(request)


@router.get("/platform/rest/conductor/v1/auth/logon")
async def conductor_logon(request: Request) -> JSONResponse:
    body, token = await _token_response(request, "session")
    response = JSONResponse(body)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(ctx_of(request).settings.token_ttl_s),
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/api/v1/tokens", response_model=TokenOut, status_code=201)
async def create_token(request: Request) -> TokenOut:
    ctx = ctx_of(request)
    user = await _login(request)
    token, row = await run_in_threadpool(ctx.auth.issue_token, user)
    return TokenOut(token=token, user=user.name, expires_at=row.expires_at)


@router.delete("/api/v1/tokens/current", status_code=204)
def revoke_current_token(request: Request, user: Principal = Depends(current_user)) -> Response:
    if user.token_id is None:
        raise BadRequest("this request did not use a token")
    ctx_of(request).auth.revoke(token_id=user.token_id)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/api/v1/me", response_model=UserOut)
def me(user: Principal = Depends(current_user)) -> UserOut:
    return UserOut(name=user.name, is_admin=user.is_admin)
