"""Errors as responses: plain `Error <code>: <message>` text on WMLA routes (as WMLA answers),
`{"error": {code, message, field, problems}}` JSON elsewhere. Nothing escapes as a bare 500."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.services.errors import ServiceError
from app.spec.errors import SpecError

log = logging.getLogger("hpo.api")
WMLA_PREFIXES = ("/platform/rest/", "/auth/")


def _utf8(value: object) -> object:
    """Messages may quote user input; lone surrogates must not make the error itself fail."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {str(_utf8(k)): _utf8(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_utf8(v) for v in value]
    return value


def _respond(request: Request, status: int, code: str, message: str, **extra: object) -> Response:
    # Scripts' HTTP clients retry with Basic on this challenge; a page's fetch (the dashboard says
    # so with X-Requested-With) would make the browser pop up its own login dialog instead.
    challenge = status == 401 and request.headers.get("x-requested-with", "").lower() != "xmlhttprequest"
    headers = {"WWW-Authenticate": 'Basic realm="hpo"'} if challenge else None
    message = str(_utf8(message))
    extra = {k: _utf8(v) for k, v in extra.items()}
    if request.url.path.startswith(WMLA_PREFIXES):
        return PlainTextResponse(f"Error {status}: {message}", status_code=status, headers=headers)
    body = {"error": {"code": code, "message": message, **{k: v for k, v in extra.items() if v}}}
    return JSONResponse(body, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> Response:
        problems = [{"path": p.path, "message": p.message} for p in exc.problems]
        return _respond(request, exc.status, exc.code, exc.message, field=exc.field, problems=problems)

    @app.exception_handler(SpecError)
    async def spec_error(request: Request, exc: SpecError) -> Response:
        problems = [{"path": p.path, "message": p.message} for p in exc.problems]
        message = "; ".join(str(p) for p in exc.problems)
        return _respond(request, 400, "invalid_spec", message, problems=problems)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = [
            {"path": ".".join(str(x) for x in e.get("loc", ()) if x != "body"), "message": e.get("msg", "")}
            for e in exc.errors()
        ]
        message = "; ".join(f"{p['path']}: {p['message']}" for p in problems)
        return _respond(request, 400, "invalid_request", message, problems=problems)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        codes = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}
        return _respond(request, exc.status_code, codes.get(exc.status_code, "error"), str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _respond(request, 500, "internal", "internal error; see the server log")
