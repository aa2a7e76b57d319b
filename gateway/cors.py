"""CORS for browser front-ends on another origin (the desk, the portal, the pharmacy counter)."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp

from shared.problems import problem_response

# What a front-end sends besides the CORS-safelisted headers; the gateway forwards these.
ALLOWED_HEADERS = ("authorization", "content-type", "accept", "accept-language", "idempotency-key", "x-request-id")
# What a script may read from an answer (a browser hides every other non-safelisted header).
EXPOSED_HEADERS = ("x-request-id", "location", "retry-after", "idempotent-replayed", "content-disposition")
ALLOWED_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


class GatewayCORSMiddleware(CORSMiddleware):
    """Starlette's CORS, answering a refused preflight with problem+json like every other error.

    Bearer tokens, not cookies: no credentials are allowed, so a ``*`` origin stays harmless."""

    def __init__(self, app: ASGIApp, *, origins: list[str]) -> None:
        super().__init__(
            app,
            allow_origins=origins,
            allow_methods=ALLOWED_METHODS,
            allow_headers=ALLOWED_HEADERS,
            expose_headers=EXPOSED_HEADERS,
            allow_credentials=False,
            max_age=600,
        )

    def preflight_response(self, request_headers: Headers) -> Response:
        answer = super().preflight_response(request_headers)
        if answer.status_code != 400:
            return answer
        refused = bytes(answer.body).decode().removeprefix("Disallowed CORS ")
        return problem_response(
            400, f"CORS preflight refused: {refused} not allowed (see CORS_ORIGINS)", code="cors-refused"
        )
