"""`python -m services.audit.purge`: delete the audit rows past the retention (AUDIT_RETENTION_YEARS,
default 20, counted from the end of the row's calendar year as for medical records), connected as the
maintenance role (AUDIT_PURGE_DATABASE_URL). Run it from a scheduled job (deploy/k8s/audit.yaml's
CronJob); the service itself never deletes a row and its runtime role may not."""

from __future__ import annotations

import asyncio
import datetime as dt
from zoneinfo import ZoneInfo

from services.audit import domain, service
from services.audit.settings import AuditSettings
from shared.clock import Clock
from shared.db import create_engine, session_factory


async def purge_expired(url: str, now: dt.datetime, retention_years: int, timezone: str = "Europe/Warsaw") -> int:
    """Delete, in one transaction, every row past the retention at ``now``; how many."""
    engine = create_engine(url, pool_size=1)
    try:
        async with session_factory(engine)() as session, session.begin():
            cutoff = domain.retention_cutoff(now, retention_years, ZoneInfo(timezone))
            return await service.purge(session, cutoff)
    finally:
        await engine.dispose()


def main() -> None:
    settings = AuditSettings()
    deleted = asyncio.run(
        purge_expired(
            settings.resolved_purge_database_url, Clock().now(), settings.audit_retention_years, settings.timezone
        )
    )
    print(f"audit: {deleted} row(s) older than {settings.audit_retention_years} years deleted")


if __name__ == "__main__":
    main()
