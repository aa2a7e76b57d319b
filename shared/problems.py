"""Every error as RFC 9457 problem+json, produced in this one place."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://ehealth.example/problems/"
log = structlog.get_logger("problems")

_TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Validation failed",
    429: "Too many requests",
    431: "Request header fields too large",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the bad field, e.g. `body.items.0.packages`")
    message: str
    code: str | None = None


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None


class ProblemError(Exception):
    """A domain or application error that becomes a problem+json answer."""

    status: int = 400
    code: str = "bad-request"

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        code: str | None = None,
        errors: Sequence[FieldError] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.errors = list(errors) if errors else None
        self.extra = extra or {}


class NotFound(ProblemError):
    status = 404
    code = "not-found"


class Conflict(ProblemError):
    status = 409
    code = "conflict"


class Unprocessable(ProblemError):
    status = 422
    code = "validation-failed"

    @classmethod
    def field(cls, field: str, message: str, *, detail: str | None = None) -> Unprocessable:
        return cls(detail or message, errors=[FieldError(field=field, message=message)])


class Unauthorized(ProblemError):
    status = 401
    code = "unauthorized"


class Forbidden(ProblemError):
    status = 403
    code = "forbidden"


def problem_response(
    status: int,
    detail: str | None = None,
    *,
    code: str | None = None,
    errors: Sequence[FieldError] | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    title = _TITLES.get(status, "Error")
    body = Problem(
        type=PROBLEM_BASE + (code or title.lower().replace(" ", "-")),
        title=title,
        status=status,
        detail=detail,
        instance=instance,
        errors=list(errors) if errors else None,
    ).model_dump(exclude_none=True)
    body.update(extra or {})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _loc_to_field(loc: Sequence[Any]) -> str:
    return ".".join(str(part) for part in loc)


# A model-level validator names the field it judges by starting its message with "field: ".
_NAMED_FIELD = re.compile(r"^Value error, ([a-z_][a-z0-9_]*): (.+)$", re.DOTALL)


def validation_errors(exc: RequestValidationError) -> list[FieldError]:
    errors = []
    for error in exc.errors():
        loc = list(error.get("loc", ()))
        message = str(error.get("msg", ""))
        named = _NAMED_FIELD.match(message)
        if named is not None:
            loc.append(named.group(1))
            message = named.group(2)
        errors.append(FieldError(field=_loc_to_field(loc), message=message, code=str(error.get("type", "")) or None))
    return errors


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(
            exc.status, exc.detail, code=exc.code, errors=exc.errors, instance=request.url.path, extra=exc.extra
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_errors(exc)
        # A body that is not JSON at all is a 400; well-formed JSON with bad fields is a 422.
        status = 400 if any(e.code == "json_invalid" for e in errors) else 422
        detail = "; ".join(f"{e.field}: {e.message}" for e in errors[:5])
        return problem_response(status, detail, errors=errors, instance=request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(
            exc.status_code, str(exc.detail), instance=request.url.path, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", path=request.url.path, exc_info=exc)
        return problem_response(500, "An unexpected error occurred; it has been logged.", instance=request.url.path)


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": _TITLES[status]}
    for status in (400, 401, 403, 404, 409, 413, 422)
}
