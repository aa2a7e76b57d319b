"""structlog JSON logs with the request id bound, and PESELs and access codes masked."""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import uuid
from collections.abc import Iterator, Mapping, MutableMapping
from contextvars import ContextVar
from typing import Any

import structlog

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

# A PESEL is 11 digits; any run of exactly 11 digits in a log line is treated as one.
_PESEL_RUN = re.compile(r"(?<!\d)(\d{2})\d{9}(?!\d)")
_SECRET_KEYS = {"access_code", "secret", "password", "authorization", "token", "access_token"}
_PESEL_KEYS = {"pesel", "patient_pesel"}


def mask_pesel(value: str) -> str:
    """Keep the first two digits (birth year) and hide the rest: ``44*********``."""
    return _PESEL_RUN.sub(lambda m: m.group(1) + "*" * 9, value)


def _mask(value: Any, key: str | None = None) -> Any:
    if key is not None and key.lower() in _SECRET_KEYS:
        return "***"
    if isinstance(value, int) and not isinstance(value, bool):
        pesel_key = key is not None and key.lower() in _PESEL_KEYS
        if pesel_key or len(str(value)) == 11:
            value = str(value)  # a PESEL parsed as a number is still a PESEL
    if isinstance(value, str):
        if key is not None and key.lower() in _PESEL_KEYS:
            return value[:2] + "*" * max(len(value) - 2, 0)
        return mask_pesel(value)
    if isinstance(value, Mapping):
        return {k: _mask(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask(v) for v in value]
    return value


def mask_sensitive(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        event_dict[key] = _mask(event_dict[key], key)
    return event_dict


def _add_request_id(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    request_id = request_id_var.get()
    if request_id and "request_id" not in event_dict:
        event_dict["request_id"] = request_id
    return event_dict


def configure_logging(level: str = "INFO", *, json: bool = True) -> None:
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    shared_processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _add_request_id,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        mask_sensitive,
    ]
    structlog.configure(
        processors=[*shared_processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=_CurrentStdoutLogger,
        cache_logger_on_first_use=False,
    )
    # Libraries that log through the standard library (uvicorn, aio-pika) go through the same masks.
    handler = _CurrentStdoutHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=renderer, foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared_processors]
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    logging.getLogger("uvicorn.access").disabled = True  # our middleware logs requests, masked
    for noisy in ("httpx", "alembic.runtime.plugins", "aiormq", "aio_pika"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


class _CurrentStdoutLogger:
    """Prints to whatever ``sys.stdout`` is at the moment of the line, not the one at configuration:
    logging is configured once per app, and a stream swapped since (closed, or captured by a test
    runner) must neither lose lines nor raise into the code that logs (an event handler would then
    count as failed and be retried)."""

    def __init__(self, *_args: Any) -> None:
        pass

    def msg(self, message: str) -> None:
        with contextlib.suppress(ValueError, OSError):
            print(message, file=sys.stdout, flush=True)

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


class _CurrentStdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The standard library's side of the same: the stream is looked up at each record."""

    @property
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def new_request_id() -> str:
    return uuid.uuid4().hex


@contextlib.contextmanager
def bind_request_id(request_id: str | None) -> Iterator[None]:
    token = request_id_var.set(request_id)
    try:
        yield
    finally:
        request_id_var.reset(token)
