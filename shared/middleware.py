"""ASGI middleware every app (service or gateway) carries: request ids, body limits, access logs."""

from __future__ import annotations

import time

import structlog
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.logging import bind_request_id, new_request_id
from shared.problems import problem_response

REQUEST_ID_HEADER = "x-request-id"
log = structlog.get_logger("http")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class RequestIdMiddleware:
    """Accept ``X-Request-ID`` (or make one), bind it to logs and events, and return it."""

    def __init__(self, app: ASGIApp, *, service: str, access_log: bool = True) -> None:
        self.app = app
        self.service = service
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and 0 < len(incoming) <= 128 and incoming.isprintable() else new_request_id()
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        with bind_request_id(request_id), structlog.contextvars.bound_contextvars(service=self.service):
            scope.setdefault("state", {})["request_id"] = request_id
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                if self.access_log:
                    log.info(
                        "request",
                        method=scope["method"],
                        path=scope["path"],
                        status=status,
                        ms=round((time.perf_counter() - started) * 1000, 1),
                    )


class HeaderLimitMiddleware:
    """Answer 431 (RFC 6585) to a request whose header lines together pass ``max_bytes``: a sane
    client (browser, partner system, even an identity provider's large token) stays far below it."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            # Each line as sent: "name: value\r\n".
            size = sum(len(name) + len(value) + 4 for name, value in scope.get("headers", []))
            if size > self.max_bytes:
                response = problem_response(
                    431,
                    f"the request's headers are {size} bytes together, more than the {self.max_bytes} accepted",
                    code="request-header-fields-too-large",
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Answer 413 as soon as a body passes the limit, without reading it whole."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, overrides: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.overrides = overrides or {}

    def _limit_for(self, path: str) -> int:
        """An override applies to paths ending with its key, or starting with it when the key ends
        with "/" (a family of paths such as /webhooks/cer/{facility_id})."""
        for key, limit in self.overrides.items():
            if path.endswith(key) or (key.endswith("/") and path.startswith(key)):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit_for(scope["path"])
        declared = _header(scope, b"content-length")
        # isdigit() alone takes latin-1's superscripts ('²'), which int() then refuses.
        if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
            await problem_response(413, f"the request body is larger than {limit} bytes")(scope, receive, send)
            return
        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not response_started:
                await problem_response(413, f"the request body is larger than {limit} bytes")(scope, receive, send)


class _BodyTooLarge(HTTPException):
    """An HTTPException, so that FastAPI's body parsing lets it through as a 413."""

    def __init__(self) -> None:
        super().__init__(status_code=413, detail="the request body is larger than allowed")
