"""Who is calling: HTTP Basic, X-Auth-Token, Authorization: Bearer, or the session cookie."""

from __future__ import annotations

import base64
import binascii

from fastapi import Request

from app.api.context import ctx_of
from app.services.auth import Principal
from app.services.errors import Unauthorized

SESSION_COOKIE = "hpo_session"


def basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        name, sep, password = (
            base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")
        )
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise Unauthorized("malformed Basic credentials") from None
    if not sep:
        raise Unauthorized("malformed Basic credentials")
    return name, password


def current_user(request: Request) -> Principal:
    """FastAPI dependency (sync: scrypt and SQL run in the thread pool)."""
    ctx = ctx_of(request)
    header = request.headers.get("authorization", "")
    token = request.headers.get("x-auth-token")
    if not token and header.lower().startswith("bearer "):
        token = header[7:].strip()
    if token:
        return ctx.auth.from_token(token)
    basic = basic_credentials(request)
    if basic is not None:
        return ctx.auth.login(*basic)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        return ctx.auth.from_token(cookie)
    raise Unauthorized("credentials required: HTTP Basic, X-Auth-Token or Authorization: Bearer")
