"""The audit's retention purge in deploy/k8s: a CronJob running the purge module with audit settings only."""

from __future__ import annotations

import importlib.util

from services.audit.settings import AuditSettings
from tests.unit.test_deploy_config import app_container, container_environment, k8s


def test_the_purge_cronjob_runs_the_purge_module_as_the_maintenance_role_with_the_suites_image() -> None:
    job = k8s("CronJob")["audit-purge"]
    (container,) = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["command"][:2] == ["python", "-m"]
    assert importlib.util.find_spec(container["command"][2]) is not None
    assert container["image"] == app_container("audit")["image"]
    env = container_environment(container)
    unknown = [name for name in env if name.lower() not in AuditSettings.model_fields]
    assert not unknown, f"not audit settings: {unknown}"
    settings = AuditSettings(**{k.lower(): v for k, v in env.items()})
    assert settings.service_name == "audit"
    assert settings.audit_purge_database_url is not None
    assert settings.resolved_purge_database_url != container_environment(app_container("audit"))["DATABASE_URL"]
    assert job["spec"]["concurrencyPolicy"] == "Forbid"
