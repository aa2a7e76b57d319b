"""Wiring of the notifications service: consumers, the SMTP mailer, the SMS client, the sender pass."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI

from services.notifications import handlers
from services.notifications.api import router
from services.notifications.compose import compose
from services.notifications.mailer import Mailer
from services.notifications.models import IdempotencyKey, Inbox, Outbox
from services.notifications.service import Sender
from services.notifications.settings import NotificationsSettings
from services.notifications.sms import SmsClient
from services.sandbox.settings import SandboxSettings
from shared.app import ServiceContext, ServiceDefinition, build_service_app
from shared.bus import EventBus
from shared.peers import PeerApps, PeerUnreachable, peer_address
from shared.periodic import Periodic
from shared.settings import Settings

SANDBOX_SMS_PATH = "/sandbox/sms"
SANDBOX_SMTP_PORT = 1025  # the sandbox process's mail catcher (SANDBOX_SMTP_PORT there)


async def _start(ctx: ServiceContext) -> None:
    own: FastAPI | None = ctx.extras.get("own_sandbox")
    if own is not None:  # nobody else runs its lifespan (the mail catcher)
        stack = AsyncExitStack()
        await stack.enter_async_context(own.router.lifespan_context(own))
        ctx.extras["own_sandbox_stack"] = stack
    sending: Periodic = ctx.extras["sending"]
    sending.start()


async def _stop(ctx: ServiceContext) -> None:
    sending: Periodic = ctx.extras["sending"]
    sms: SmsClient = ctx.extras["sms"]
    await sending.stop()
    await sms.aclose()
    stack: AsyncExitStack | None = ctx.extras.get("own_sandbox_stack")
    if stack is not None:
        await stack.aclose()


DEFINITION = ServiceDefinition(
    name="notifications",
    title="Notifications service (e-mail and SMS)",
    migrations_dir=Path(__file__).parent / "migrations",
    outbox_model=Outbox,
    inbox_model=Inbox,
    idempotency_model=IdempotencyKey,
    routers=[router],
    subscribe=handlers.subscribe,
    on_started=_start,
    on_stopping=_stop,
)


def _smtp_target(config: NotificationsSettings, peers: PeerApps | None) -> Mailer:
    """SMTP_HOST; else the mail catcher of the sandbox process (SANDBOX_URL's host) or of this process."""
    password = config.smtp_password.get_secret_value() if config.smtp_password else None
    if config.smtp_host:
        where = (config.smtp_host, config.smtp_port)
        return Mailer(lambda: where, config.mail_from, config.smtp_username, password, config.smtp_starttls)
    sandbox_url = config.service_url("sandbox")
    if sandbox_url:
        remote = (urlsplit(sandbox_url).hostname or "127.0.0.1", SANDBOX_SMTP_PORT)
        return Mailer(lambda: remote, config.mail_from, timeout=config.smtp_timeout_seconds)
    app = (peers or {}).get("sandbox")
    if app is None:
        raise PeerUnreachable("the notifications service needs SMTP_HOST, SANDBOX_URL or a sandbox in its process")
    # The catcher binds when the sandbox starts (port 0 in tests): ask for its port at each send.
    return Mailer(lambda: ("127.0.0.1", app.state.mail.port), config.mail_from, timeout=config.smtp_timeout_seconds)


def _sms_client(config: NotificationsSettings, peers: PeerApps | None) -> SmsClient:
    token = config.sms_token.get_secret_value()
    if config.sms_url:
        return SmsClient(config.sms_url, token, timeout=config.http_timeout_seconds)
    sandbox = peer_address("sandbox", config, peers)
    return SmsClient(
        f"{sandbox.base_url}{SANDBOX_SMS_PATH}", token, timeout=config.http_timeout_seconds, transport=sandbox.transport
    )


def create_app(
    settings: Settings | None = None, *, bus: EventBus | None = None, peers: PeerApps | None = None
) -> FastAPI:
    config = NotificationsSettings.from_settings(settings)
    app = build_service_app(DEFINITION, config, bus=bus)
    ctx: ServiceContext = app.state.ctx
    if not config.smtp_host and not config.service_url("sandbox") and not (peers and "sandbox" in peers):
        from services.sandbox.app import create_app as create_sandbox

        # Started on its own in development: a sandbox of its own, its mail catcher on a free port.
        sandbox_settings = SandboxSettings.from_settings(config.for_service("sandbox")).model_copy(
            update={"smtp_port": 0}
        )
        own = create_sandbox(sandbox_settings)
        ctx.extras["own_sandbox"] = own
        app.state.sandbox = own  # so tests and demos can read the caught mail
        peers = {**(peers or {}), "sandbox": own}
    sms = _sms_client(config, peers)
    sender = Sender(
        ctx.sessions,
        ctx.uow,
        _smtp_target(config, peers),
        sms,
        compose,
        sms_sender=config.sms_sender,
        max_attempts=config.send_max_attempts,
        retry_base_seconds=config.send_retry_base_seconds,
        retry_max_seconds=config.send_retry_max_seconds,
        batch=config.send_batch,
    )
    ctx.extras.update(
        sms=sms, sender=sender, sending=Periodic("sending", config.send_interval_seconds, sender.send_due)
    )
    return app
