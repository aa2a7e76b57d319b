"""The audit service's settings: the shared ones plus how long rows are kept."""

from __future__ import annotations

from pydantic import Field

from shared.settings import Settings


class AuditSettings(Settings):
    service_name: str = "audit"
    # Medical documentation is kept 20 years from the end of the year of the entry (ustawa o prawach
    # pacjenta, art. 29): so is who saw it.
    audit_retention_years: int = Field(default=20, ge=1, le=100)
    # The retention purge's connection, as the maintenance role (the only one that may DELETE audit rows);
    # unset: DATABASE_URL (a deployment where one user does everything).
    audit_purge_database_url: str | None = None

    @property
    def resolved_purge_database_url(self) -> str:
        return self._resolved(self.audit_purge_database_url or self.database_url)
