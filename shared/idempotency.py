"""``Idempotency-Key`` for creating POSTs (Stripe's semantics, IETF draft).

The first answer (status and body) is stored and replayed for a retry with the same key; the same
key with another body answers 422, and while the first request still runs, 409. Server errors are
not stored, so the client may retry them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth import Principal, authenticate
from shared.db import utcnow
from shared.problems import ProblemError, problem_response
from shared.settings import Settings

IDEMPOTENCY_HEADER = b"idempotency-key"
# A request still "running" after this long belongs to a process that died: let the retry in.
STALE_IN_PROGRESS = dt.timedelta(seconds=60)


class IdempotencyMiddleware:
    def __init__(
        self, app: ASGIApp, *, sessions: async_sessionmaker[AsyncSession], model: type[Any], settings: Settings
    ) -> None:
        self.app = app
        self.sessions = sessions
        self.model = model
        self.settings = settings
        self.ttl = dt.timedelta(hours=settings.idempotency_ttl_hours)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = self._key(scope)
        if key is None:
            await self.app(scope, receive, send)
            return
        if not 1 <= len(key) <= 255:
            await problem_response(422, "Idempotency-Key must have 1 to 255 characters", code="validation-failed")(
                scope, receive, send
            )
            return
        who = await self._who(scope)
        if who is None:  # no valid token: the app will answer 401, and nothing is stored
            await self.app(scope, receive, send)
            return
        body, replay_receive = await _read_body(receive)
        record_scope = f"{who}|{scope['method']}|{scope['path']}"[:300]
        fingerprint = hashlib.sha256(body).hexdigest()
        earlier = await self._claim(record_scope, key, fingerprint)
        if earlier is not None:
            await self._answer_from(earlier, fingerprint, scope, receive, send)
            return
        await self._run_and_store(record_scope, key, scope, replay_receive, send)

    @staticmethod
    def _key(scope: Scope) -> str | None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return None
        for name, value in scope.get("headers", []):
            if name == IDEMPOTENCY_HEADER:
                return str(value.decode("latin-1")).strip()
        return None

    async def _who(self, scope: Scope) -> str | None:
        authorization = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"authorization"), None)
        try:
            principal = await authenticate(authorization, self.settings)
        except ProblemError:
            return None
        return caller_scope(principal)

    async def _claim(self, record_scope: str, key: str, fingerprint: str) -> Any | None:
        """Insert an in-progress record; return the earlier record instead if there is one."""
        model = self.model
        async with self.sessions() as session, session.begin():
            earlier = await session.get(model, (record_scope, key))
            now = utcnow()
            if earlier is not None:
                expired = earlier.created_at < now - self.ttl
                abandoned = earlier.status_code is None and earlier.created_at < now - STALE_IN_PROGRESS
                if not (expired or abandoned):
                    return earlier
                await session.delete(earlier)
                await session.flush()
            session.add(model(scope=record_scope, key=key, fingerprint=fingerprint, created_at=now))
            try:
                await session.flush()
            except IntegrityError:
                await session.rollback()
                async with self.sessions() as again:
                    return await again.get(model, (record_scope, key))
        return None

    async def _answer_from(self, earlier: Any, fingerprint: str, scope: Scope, receive: Receive, send: Send) -> None:
        if earlier.fingerprint != fingerprint:
            response = problem_response(
                422, "this Idempotency-Key was used with a different request body", code="idempotency-key-reused"
            )
        elif earlier.status_code is None:
            response = problem_response(
                409,
                "a request with this Idempotency-Key is still being processed",
                code="idempotency-in-progress",
                headers={"Retry-After": "1"},
            )
        else:
            await send(
                {
                    "type": "http.response.start",
                    "status": earlier.status_code,
                    "headers": [
                        (b"content-type", (earlier.content_type or "application/json").encode()),
                        (b"idempotent-replayed", b"true"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": earlier.body or b""})
            return
        await response(scope, receive, send)

    async def _run_and_store(self, record_scope: str, key: str, scope: Scope, receive: Receive, send: Send) -> None:
        status = 500
        content_type = "application/json"
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal status, content_type
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", []):
                    if name.lower() == b"content-type":
                        content_type = value.decode("latin-1")
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            await self._store(record_scope, key, status, content_type, b"".join(chunks))

    async def _store(self, record_scope: str, key: str, status: int, content_type: str, body: bytes) -> None:
        model = self.model
        async with self.sessions() as session, session.begin():
            where = (model.scope == record_scope) & (model.key == key)
            if status >= 500:
                await session.execute(sa.delete(model).where(where))
            else:
                await session.execute(
                    sa.update(model).where(where).values(status_code=status, content_type=content_type, body=body)
                )


def caller_scope(principal: Principal) -> str:
    """Whose keys these are: the role and every tenant claim as well as ``sub``. Two pharmacies (or a
    facility and a pharmacy) whose identity providers hand out the same ``sub`` must never see each
    other's answers. Hashed: it is stored, and a patient's claims hold a PESEL."""
    claims = [principal.sub, principal.facility_id, principal.pharmacy_id, principal.pesel, principal.npwz]
    digest = hashlib.sha256(json.dumps(claims).encode()).hexdigest()[:40]
    return f"{principal.role}|{digest}"


async def _read_body(receive: Receive) -> tuple[bytes, Receive]:
    chunks: list[bytes] = []
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body = b"".join(chunks)
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay
