"""Domain errors with the HTTP status they map to; the API turns them into responses."""

from __future__ import annotations

from app.spec.errors import Problem


class ServiceError(Exception):
    status = 400
    code = "bad_request"

    def __init__(
        self, message: str, *, field: str | None = None, problems: list[Problem] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.problems = problems or []


class BadRequest(ServiceError):
    pass


class Unauthorized(ServiceError):
    status = 401
    code = "unauthorized"


class NotFound(ServiceError):
    status = 404
    code = "not_found"


class Conflict(ServiceError):
    status = 409
    code = "conflict"


class TooLarge(ServiceError):
    status = 413
    code = "too_large"
