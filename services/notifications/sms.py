"""The SMS provider adapter: a typed JSON client (the sandbox's ``/sandbox/sms`` or a real gateway)."""

from __future__ import annotations

import httpx

from shared.http_client import DEFAULT_TIMEOUT_SECONDS, ErrorKinds, HttpClientError, JsonAnswer, JsonClient


class SmsError(HttpClientError):
    pass


class SmsUnavailable(SmsError):
    """Timeout, unreachable, 5xx or 429: try again later."""


class SmsRefused(SmsError):
    """The provider said no (bad number, bad text): retrying the same message is wrong."""


class SmsBadAnswer(SmsError):
    pass


class SmsAccepted(JsonAnswer):
    id: str
    status: str
    parts: int


class SmsClient(JsonClient):
    system = "the SMS provider"
    errors = ErrorKinds(unavailable=SmsUnavailable, refused=SmsRefused, not_found=SmsRefused, bad_answer=SmsBadAnswer)

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, timeout=timeout, transport=transport, headers={"authorization": f"Bearer {token}"})

    async def send(self, to: str, text: str, *, sender: str, idempotency_key: str) -> SmsAccepted:
        """``idempotency_key``: the message id, so a retry after a lost answer sends one SMS, not two."""
        body = {"to": to, "text": text, "sender": sender, "idempotency_key": idempotency_key}
        answer = await self._send("POST", "/messages", json=body, answers=(429,))
        if answer.status_code == 429:  # throttled: the same as unavailable for now
            raise SmsUnavailable("the SMS provider asks to slow down (429)", status=429)
        return self._parse(answer, SmsAccepted)
