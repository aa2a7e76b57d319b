"""The machinery of the suite's typed JSON-over-HTTP clients (eZWM, P1, scheduling).

A client speaks to a system at a base URL, or to its app in this process through
``transport=httpx.ASGITransport(app=...)``, through exactly the same code. Every failure to get a
valid answer ends as one of four typed errors, so callers decide by kind, never by parsing messages:

- *unavailable*: no usable answer (timeout, unreachable, 5xx). Retrying later is right.
- *refused*: the system understood and said no (4xx); ``message`` is the problem's ``detail`` and
  ``code`` the last segment of its ``type``. Retrying the same call is wrong.
- *not found*: the 404 kind of a refusal; a system may give it a class of its own or not.
- *bad answer*: an answer the contract does not allow (not JSON, wrong shape, unexpected status).

A subclass names its system (``system``, for messages) and its error classes (``errors``), so each
keeps its own exported hierarchy; what a status means for one call (scheduling's "409 on book is
``None``") stays with that call, which asks for such a status raw through ``answers``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Self, TypeVar, overload
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

DEFAULT_TIMEOUT_SECONDS = 5.0
# A proxy's whole error page is no reason; a problem's detail longer than this is cut.
MAX_REASON_LENGTH = 1000

Model = TypeVar("Model", bound=BaseModel)
T = TypeVar("T")


class HttpClientError(Exception):
    """Any failure to get a valid answer from another system."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


@dataclass(frozen=True)
class ErrorKinds:
    """Which of a system's error classes each kind of failure raises."""

    unavailable: type[HttpClientError]
    refused: type[HttpClientError]
    not_found: type[HttpClientError]
    bad_answer: type[HttpClientError]


class JsonRequest(BaseModel):
    model_config = ConfigDict(frozen=True)


class JsonAnswer(BaseModel):
    # A newer version of the other system may add fields; only a missing or malformed one is an error.
    model_config = ConfigDict(extra="ignore", frozen=True)


class JsonClient:
    """The transport, timeouts and error mapping of a client; subclasses add the system's calls."""

    system: ClassVar[str]
    errors: ClassVar[ErrorKinds]
    # Any other status, a 2xx too, breaks the contract; a call that answers others names them in ``expected``.
    ok_statuses: ClassVar[Collection[int]] = (200, 201)

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(timeout),
            transport=transport,
            headers={"accept": "application/json", **(headers or {})},
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(
        self,
        method: str,
        path: str,
        model: type[Model],
        *,
        json: BaseModel | Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        expected: Collection[int] | None = None,
    ) -> Model:
        """The answer of a call as ``model``; any failure raises one of the system's ``errors``."""
        answer = await self._send(
            method, path, json=json, params=params, headers=headers, idempotency_key=idempotency_key, expected=expected
        )
        return self._parse(answer, model)

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json: BaseModel | Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        expected: Collection[int] | None = None,
        answers: Collection[int] = (),
    ) -> httpx.Response:
        """The raw answer of a status in ``expected`` (``ok_statuses`` by default), or of one in
        ``answers``: a 4xx the caller gives a meaning of its own instead of a refusal.
        """
        sent = dict(headers or {})
        if idempotency_key is not None:
            sent["idempotency-key"] = idempotency_key
        body = json.model_dump(mode="json") if isinstance(json, BaseModel) else json
        unavailable = self.errors.unavailable
        try:
            answer = await self._http.request(method, path, json=body, params=params, headers=sent)
        except httpx.TimeoutException as exc:
            raise unavailable(f"{self.system} did not answer {method} {path} in time") from exc
        except httpx.HTTPError as exc:
            raise unavailable(f"{self.system} is unreachable ({type(exc).__name__})") from exc
        except Exception as exc:
            # In this process, httpx's ASGI transport re-raises the app's own unhandled error after
            # its 500 answer: over the network that would have been a 5xx, so it is one here too.
            raise unavailable(f"{self.system} failed on {method} {path} ({type(exc).__name__})") from exc
        status = answer.status_code
        where = f"{method} {answer.request.url.path}"
        if status >= 500:
            raise unavailable(f"{self.system} failed on {where} with {status}", status=status)
        if status in answers:
            return answer
        if status >= 400:
            kind = self.errors.not_found if status == 404 else self.errors.refused
            reason = problem_detail(answer) or f"{self.system} refused {where}"
            raise kind(reason, status=status, code=problem_code(answer))
        if status not in (self.ok_statuses if expected is None else expected):
            raise self.errors.bad_answer(f"{self.system} answered {where} with an unexpected {status}", status=status)
        return answer

    @overload
    def _parse(self, answer: httpx.Response, shape: type[Model]) -> Model: ...

    @overload
    def _parse(self, answer: httpx.Response, shape: TypeAdapter[T]) -> T: ...

    def _parse(self, answer: httpx.Response, shape: type[BaseModel] | TypeAdapter[Any]) -> object:
        """The answer's body as ``shape``: a model, or a ``TypeAdapter`` for a list or the like."""
        try:
            if isinstance(shape, TypeAdapter):
                return shape.validate_json(answer.content)
            return shape.model_validate_json(answer.content)
        except ValidationError as exc:
            where = f"{answer.request.method} {answer.request.url.path}"
            message = f"{self.system}'s answer to {where} is not valid: {_first_error(exc)}"
            raise self.errors.bad_answer(message) from exc


def segment(value: str) -> str:
    """``value`` quoted as one path segment."""
    # Keys and numbers come from outside, yet a "/" or ".." in one must not reach another path.
    return quote(value, safe="")


def problem_detail(answer: httpx.Response) -> str | None:
    """The ``detail`` of a problem+json answer, if it has a readable one."""
    detail = _problem(answer).get("detail")
    return detail[:MAX_REASON_LENGTH] if isinstance(detail, str) and detail else None


def problem_code(answer: httpx.Response) -> str | None:
    """The problem's kind, the last segment of its ``type`` URI (``.../slot-taken`` -> ``slot-taken``)."""
    kind = _problem(answer).get("type")
    if not isinstance(kind, str):
        return None
    return kind.rsplit("/", 1)[-1] or None


def _problem(answer: httpx.Response) -> dict[str, Any]:
    try:
        body = answer.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error.get("loc", ())) or "body"
    return f"{where}: {error.get('msg', 'invalid')}"
