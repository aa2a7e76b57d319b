"""The container files, checked rather than run (no Docker engine here; see ARCHITECTURE.md).

- deploy/k8s/*.yaml against the Kubernetes API schemas (kubernetes-validate, strict: no unknown fields);
- docker-compose.yml against the Compose Specification schema (vendored by check-jsonschema);
- both against the code: the same services as ``gateway.registry.SERVICES`` plus the gateway (and in compose
  only, the development sandbox ``gateway.registry.SANDBOX``), the same
  environment variable names as ``make run-distributed`` (``gateway.distributed``), every name a field of
  ``Settings`` / ``GatewaySettings``, and values that build the settings the topology needs.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from sqlalchemy.engine import make_url

from gateway.app import Gateway
from gateway.distributed import gateway_environment, service_environment
from gateway.registry import PRODUCTION_ONLY_ENVIRONMENT, SANDBOX, SANDBOX_FACTORY, SERVICES
from gateway.registry import settings_class as service_settings_class
from services.notifications.app import SANDBOX_SMTP_PORT
from services.sandbox.settings import SandboxSettings
from shared.settings import DEFAULT_JWT_SECRET, GatewaySettings, Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"

APPS = sorted([*SERVICES, "gateway"])
# The simulated national systems: development only. docker-compose.yml runs them (and gives every process
# SANDBOX_URL, as the launcher does); deploy/k8s, which is production, has neither the app nor the variable.
SANDBOX_URL = f"{SANDBOX.upper()}_URL"
INFRASTRUCTURE = {"postgres", "rabbitmq"}
# Set by a container deployment, inherited from the caller's environment by the local launcher.
DEPLOYMENT_ONLY = {"ENVIRONMENT", "JWT_SECRET"}
# Set by a production deployment beside PRODUCTION_ONLY_ENVIRONMENT: how to reach the real systems, whose
# development stand-ins (the sandbox) need no such settings. Exactly these; every one a settings field.
PRODUCTION_CONFIGURATION: dict[str, set[str]] = {
    "notifications": {
        "SMTP_PORT",
        "SMTP_STARTTLS",
        "SMTP_USERNAME",
        "SMTP_PASSWORD",
        "MAIL_FROM",
        "SMS_TOKEN",
        "SMS_SENDER",
    },
}
# The oldest Kubernetes the manifests promise to work on, and the newest the installed schemas know.
K8S_VERSIONS = sorted({"1.30.0", kubernetes_validate.utils.latest_version()})
PORT = 8000
IMAGE_USER = 10001
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")


@pytest.fixture(autouse=True)
def _settings_from_the_files_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings built below must see the files' values, not the test runner's environment."""
    for field in GatewaySettings.model_fields:
        monkeypatch.delenv(field.upper(), raising=False)


# ---- loading ---------------------------------------------------------------------------------------


@cache
def kustomization() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return loaded


@cache
def manifests() -> tuple[dict[str, Any], ...]:
    documents = []
    for name in kustomization()["resources"]:
        documents += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d is not None]
    return tuple(documents)


def k8s(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in manifests() if d["kind"] == kind}


@cache
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def compose_apps() -> dict[str, dict[str, Any]]:
    """The compose services built from the suite's image (the rest must be infrastructure)."""
    services = compose()["services"]
    return {name: s for name, s in services.items() if s.get("build", {}).get("dockerfile") == "deploy/Dockerfile"}


# What an operator sets in the shell or .env for a variable compose requires (${VAR:?message}).
OPERATOR_SET = {"JWT_SECRET": "operator-chosen-secret-" + "7f3a" * 8}
REQUIRED = re.compile(r"\$\{(\w+):\?[^}]*\}")


def compose_environment(name: str, *, shell: Mapping[str, str] = OPERATOR_SET) -> dict[str, str]:
    """The service's environment with ${VAR:-default} read as its default and ${VAR:?...} as what the
    operator set in ``shell`` (a required variable missing there is left out, as compose would refuse)."""
    env = compose()["services"][name].get("environment", {})
    assert isinstance(env, dict), f"compose {name}: write environment as a mapping"
    resolved = {}
    for key, value in env.items():
        required = REQUIRED.fullmatch(str(value))
        if required:
            if required.group(1) in shell:
                resolved[key] = shell[required.group(1)]
            continue
        resolved[key] = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))
    return resolved


def secret_value(name: str, key: str) -> str:
    secret = k8s("Secret")[name]
    if key in secret.get("stringData", {}):
        return str(secret["stringData"][key])
    return base64.b64decode(secret["data"][key]).decode()


def container_environment(container: Mapping[str, Any]) -> dict[str, str]:
    """Every variable a k8s container gets, values resolved from the ConfigMaps and Secrets in deploy/k8s."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(k8s("ConfigMap")[source["configMapRef"]["name"]]["data"])
        else:
            secret = k8s("Secret")[source["secretRef"]["name"]]
            env.update({key: secret_value(secret["metadata"]["name"], key) for key in secret.get("stringData", {})})
            env.update({key: secret_value(secret["metadata"]["name"], key) for key in secret.get("data", {})})
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = variable["value"]
        else:
            ref = variable["valueFrom"]
            if "secretKeyRef" in ref:
                env[variable["name"]] = secret_value(ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"])
            else:
                env[variable["name"]] = k8s("ConfigMap")[ref["configMapKeyRef"]["name"]]["data"][
                    ref["configMapKeyRef"]["key"]
                ]
    return env


def pod_spec(app: str) -> dict[str, Any]:
    deployment = k8s("Deployment").get(app)
    assert deployment is not None, f"no Deployment {app!r} in deploy/k8s"
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def app_container(app: str) -> dict[str, Any]:
    containers = pod_spec(app)["containers"]
    assert len(containers) == 1, f"{app}: one container per pod"
    container: dict[str, Any] = containers[0]
    return container


def expected_names(app: str, *, production: bool = False) -> set[str]:
    launched = gateway_environment(base={}) if app == "gateway" else service_environment(app, base={})
    extra = (
        set(PRODUCTION_ONLY_ENVIRONMENT.get(app, ())) | PRODUCTION_CONFIGURATION.get(app, set())
        if production
        else set()
    )
    # The launcher points every process at its sandbox; production has none (it sets the real systems'
    # URLs, PRODUCTION_ONLY_ENVIRONMENT, instead), so there SANDBOX_URL is the one name it must not set.
    development_only = {SANDBOX_URL} if production else set()
    return (set(launched) - development_only) | DEPLOYMENT_ONLY | extra


def settings_class(app: str) -> type[Settings]:
    return GatewaySettings if app == "gateway" else service_settings_class(app)


def unknown_settings(app: str, names: Mapping[str, str]) -> list[str]:
    return sorted(name for name in names if name.lower() not in settings_class(app).model_fields)


def same(what: str, found: set[str], expected: set[str]) -> None:
    assert found == expected, (
        f"{what}: missing {sorted(expected - found) or 'nothing'}, unexpected {sorted(found - expected) or 'nothing'}"
    )


# ---- schemas ---------------------------------------------------------------------------------------


def test_kustomization_lists_every_manifest() -> None:
    listed = set(kustomization()["resources"])
    same(
        "deploy/k8s manifests in kustomization.yaml",
        listed,
        {p.name for p in K8S.glob("*.y*ml")} - {"kustomization.yaml"},
    )
    namespace = kustomization()["namespace"]
    assert k8s("Namespace").keys() == {namespace}
    for document in manifests():
        if document["kind"] != "Namespace":
            assert document["metadata"].get("namespace") == namespace, document["metadata"]["name"]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_k8s_manifests_are_valid_kubernetes(version: str) -> None:
    assert manifests()
    errors = []
    for document in manifests():
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            errors.append(f"{document['kind']}/{document['metadata']['name']}: {error.message}")
    assert not errors, "\n".join(errors)


@cache
def compose_validator() -> jsonschema.protocols.Validator:
    text = resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    schema = json.loads(text)
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)


def test_compose_file_follows_the_compose_specification() -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in compose_validator().iter_errors(compose())]
    assert not errors, "\n".join(errors)


def test_compose_schema_rejects_a_misspelt_key() -> None:
    assert not compose_validator().is_valid({"services": {"a": {"image": "x", "enviroment": {}}}})


# ---- the same services everywhere ------------------------------------------------------------------


def test_compose_runs_every_service_and_the_gateway() -> None:
    # Plus the sandbox: compose is a development topology (k8s, below, must not have it).
    same("docker-compose.yml services built from deploy/Dockerfile", set(compose_apps()), {*APPS, SANDBOX})
    same("docker-compose.yml other services", set(compose()["services"]) - set(compose_apps()), INFRASTRUCTURE)


def test_k8s_deploys_every_service_and_the_gateway() -> None:
    # Exactly these: no sandbox in production.
    same("deploy/k8s Deployments", set(k8s("Deployment")), set(APPS))
    same("deploy/k8s Services", set(k8s("Service")), set(APPS))


def test_every_service_follows_the_image_convention() -> None:
    """The image's CMD builds the uvicorn target from SERVICE_NAME; the registry must agree with it."""
    dockerfile = DOCKERFILE.read_text()
    assert "services.$SERVICE_NAME.app:create_app" in dockerfile
    assert "gateway.app:create_app" in dockerfile
    for name, target in {**SERVICES, SANDBOX: SANDBOX_FACTORY}.items():
        assert target == f"services.{name}.app:create_app", name


def test_dockerfile_builds_one_slim_non_root_image() -> None:
    dockerfile = DOCKERFILE.read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", dockerfile, re.M)
    assert re.search(r"^ARG SERVICE=gateway$", dockerfile, re.M)
    assert re.search(r"^ENV .*SERVICE_NAME=\$\{SERVICE\}", dockerfile, re.M | re.S)
    assert "-c requirements.lock" in dockerfile
    assert "pip install --no-deps ." in dockerfile
    assert re.search(rf"^USER {IMAGE_USER}:{IMAGE_USER}$", dockerfile, re.M)
    assert re.search(rf"^EXPOSE {PORT}$", dockerfile, re.M)
    assert re.search(r"^HEALTHCHECK .*/healthz", dockerfile, re.M | re.S)
    ignored = (ROOT / ".dockerignore").read_text().split()
    for needed in ("pyproject.toml", "requirements.lock", "shared", "services", "gateway"):
        assert f"!{needed}" in ignored, f".dockerignore must let {needed} into the build context"


# ---- the same variables as `make run-distributed` --------------------------------------------------


@pytest.mark.parametrize("app", APPS)
def test_compose_sets_the_variables_of_run_distributed(app: str) -> None:
    assert app in compose_apps(), f"{app} is missing from docker-compose.yml"
    env = compose_environment(app)
    same(f"compose {app} environment", set(env), expected_names(app))
    assert not unknown_settings(app, env), f"compose {app}: not settings fields: {unknown_settings(app, env)}"


@pytest.mark.parametrize("app", APPS)
def test_k8s_sets_the_variables_of_run_distributed(app: str) -> None:
    containers = [app_container(app), *pod_spec(app).get("initContainers", [])]
    for container in containers:
        env = container_environment(container)
        same(f"k8s {app}/{container['name']} environment", set(env), expected_names(app, production=True))
        assert not unknown_settings(app, env), f"k8s {app}: not settings fields: {unknown_settings(app, env)}"


# ---- values --------------------------------------------------------------------------------------


@pytest.mark.parametrize("app", APPS)
def test_compose_values_build_the_distributed_settings(app: str) -> None:
    service = compose()["services"][app]
    env = compose_environment(app)
    assert service["build"] == {"context": ".", "dockerfile": "deploy/Dockerfile", "args": {"SERVICE": app}}
    assert "healthcheck" in service
    settings = settings_class(app)(**{k.lower(): v for k, v in env.items()})
    assert settings.service_name == app
    for name in (*SERVICES, SANDBOX):
        assert settings.service_url(name) == f"http://{name}:{PORT}", name
    if app == "gateway":
        assert isinstance(settings, GatewaySettings)
        assert service["ports"] == [f"{PORT}:{PORT}"]
        # The gateway's /readyz asks the sandbox too (it forwards /sandbox/... in development).
        assert service["depends_on"] == {name: {"condition": "service_healthy"} for name in (SANDBOX, *SERVICES)}
        return
    url = make_url(settings.database_url)
    assert (url.drivername, url.host, url.database) == ("postgresql+asyncpg", "postgres", f"ehealth_{app}")
    assert settings.amqp_url is not None and "@rabbitmq:5672" in settings.amqp_url
    assert settings.run_migrations is True
    assert service["depends_on"] == {name: {"condition": "service_healthy"} for name in sorted(INFRASTRUCTURE)}


def test_compose_sandbox_is_one_process_without_database() -> None:
    """The image's CMD starts the sandbox from SERVICE_NAME; its state is in memory: one replica, one worker."""
    service = compose()["services"][SANDBOX]
    assert service["build"] == {"context": ".", "dockerfile": "deploy/Dockerfile", "args": {"SERVICE": SANDBOX}}
    assert "healthcheck" in service
    assert service["deploy"]["replicas"] == 1
    assert "ports" not in service, "reached through the gateway's /sandbox/..."
    assert "depends_on" not in service, "no database, no broker"
    env = compose_environment(SANDBOX)
    # uvicorn reads WEB_CONCURRENCY. The mail catcher listens where the notifications container sends (its
    # default, 127.0.0.1, is unreachable from another container), on a port it must not move from. The
    # deployment's auth settings, as every process: the image's defaults alone are production's.
    assert env == {
        "SERVICE_NAME": SANDBOX,
        "WEB_CONCURRENCY": "1",
        "SANDBOX_SMTP_HOST": "0.0.0.0",
        "SANDBOX_SMTP_PORT": str(SANDBOX_SMTP_PORT),
        "ENVIRONMENT": "development",
        "DEV_AUTH": "false",
        "JWT_SECRET": OPERATOR_SET["JWT_SECRET"],
    }
    settings = service_settings_class(SANDBOX).model_validate({k.lower(): v for k, v in env.items()})
    assert settings.service_name == SANDBOX
    assert settings.environment == "development"
    assert isinstance(settings, SandboxSettings)
    assert (settings.smtp_host, settings.smtp_port) == ("0.0.0.0", SANDBOX_SMTP_PORT)


def test_compose_infrastructure_is_healthchecked() -> None:
    services = compose()["services"]
    assert services["rabbitmq"]["image"] == "rabbitmq:3.10-management"
    assert services["postgres"]["image"] == "postgres:15"
    for name in INFRASTRUCTURE:
        assert "healthcheck" in services[name], name


def test_k8s_secret_placeholder_fails_closed() -> None:
    """Deployed unchanged, the placeholder is the development default, which production refuses."""
    assert secret_value("ehealth-secrets", "jwt-secret") == DEFAULT_JWT_SECRET
    env = container_environment(app_container("gateway"))
    with pytest.raises(ValueError, match="JWT_SECRET must be set in production"):
        GatewaySettings(**{k.lower(): v for k, v in env.items()})


@pytest.mark.parametrize("app", APPS)
def test_k8s_values_build_production_settings(app: str) -> None:
    env = container_environment(app_container(app)) | {"JWT_SECRET": "a-real-secret-" + "x" * 32}
    settings = settings_class(app)(**{k.lower(): v for k, v in env.items()})
    assert settings.environment == "production"
    assert settings.dev_auth is False
    assert settings.service_name == app
    for name in SERVICES:
        assert settings.service_url(name) == f"http://{name}:{PORT}", name
    assert settings.service_url(SANDBOX) is None, "the sandbox is development-only"
    if app == "gateway":
        assert isinstance(settings, GatewaySettings)
        for name in SERVICES:
            assert [p["port"] for p in k8s("Service")[name]["spec"]["ports"]] == [PORT]
        return
    url = make_url(settings.database_url)
    assert (url.drivername, url.host, url.database) == ("postgresql+asyncpg", "postgres", f"ehealth_{app}")
    assert settings.amqp_url is not None and "@rabbitmq:5672" in settings.amqp_url
    assert settings.run_migrations is False
    (migrate,) = pod_spec(app)["initContainers"]
    assert migrate["command"] == ["python", "-m", "gateway.manage", "migrate", app]
    assert migrate["image"] == app_container(app)["image"]


@pytest.mark.parametrize("app", APPS)
def test_k8s_secret_settings_come_from_the_secret(app: str) -> None:
    """A SecretStr setting (JWT_SECRET, SMTP_PASSWORD, SMS_TOKEN, ...) is never a literal or a ConfigMap value."""
    fields = settings_class(app).model_fields
    secret_fields = {name.upper() for name, field in fields.items() if "SecretStr" in str(field.annotation)}
    for container in [app_container(app), *pod_spec(app).get("initContainers", [])]:
        for variable in container.get("env", []):
            if variable["name"] in secret_fields:
                assert "secretKeyRef" in variable.get("valueFrom", {}), f"{app}/{container['name']} {variable['name']}"
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                data = k8s("ConfigMap")[source["configMapRef"]["name"]]["data"]
                assert not secret_fields & set(data), f"{app}: secrets in ConfigMap {source['configMapRef']['name']}"


@pytest.mark.parametrize("app", APPS)
def test_k8s_deployment_shape(app: str) -> None:
    deployment = k8s("Deployment")[app]
    service = k8s("Service")[app]
    spec = pod_spec(app)
    container = app_container(app)
    assert deployment["spec"]["replicas"] == 2
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert container["ports"] == [{"name": "http", "containerPort": PORT, "protocol": "TCP"}]
    # A service is ready when its database and broker are; the gateway when it runs at all.
    assert container["readinessProbe"]["httpGet"]["path"] == ("/healthz" if app == "gateway" else "/readyz")
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for each in [container, *spec.get("initContainers", [])]:
        for bound in ("requests", "limits"):
            quantities = each["resources"][bound]
            assert quantities.keys() == {"cpu", "memory"}, f"{app}/{each['name']} {bound}"
            # The API schemas accept any string here; the API server parses it as a quantity.
            assert all(QUANTITY.match(str(q)) for q in quantities.values()), f"{app}/{each['name']} {quantities}"
    assert spec["enableServiceLinks"] is False, "Service links would add *_PORT/*_HOST variables"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == IMAGE_USER
    images = {app_container(name)["image"] for name in k8s("Deployment")}
    assert len(images) == 1, f"one image for every Deployment, found {images}"


# ---- safe defaults outside a developer's laptop ---------------------------------------------------


def dockerfile_env() -> dict[str, str]:
    """The ENV of the image's final stage (every `KEY=value` of its ENV instructions)."""
    final_stage = DOCKERFILE.read_text().split("\nFROM ")[-1]
    env: dict[str, str] = {}
    for instruction in re.findall(r"^ENV ((?:.*\\\n)*.*)$", final_stage, re.M):
        env.update(re.findall(r"(\w+)=(\S+)", instruction.replace("\\\n", " ")))
    return env


def test_the_image_is_production_without_dev_auth_unless_told_otherwise() -> None:
    env = dockerfile_env()
    assert env["ENVIRONMENT"] == "production"
    assert env["DEV_AUTH"] == "false"
    assert "JWT_SECRET" not in env, "a secret baked into the image is everyone's"
    # Run as it is, it refuses to start: no secret of its own.
    with pytest.raises(ValueError, match="JWT_SECRET must be set in production"):
        GatewaySettings(**{k.lower(): v for k, v in env.items() if k.lower() in GatewaySettings.model_fields})


@pytest.mark.parametrize("app", [*APPS, SANDBOX])
def test_compose_runs_without_dev_auth_and_requires_a_secret(app: str) -> None:
    raw = compose()["services"][app]["environment"]
    assert raw["DEV_AUTH"] == "false"
    # Neither settable to development's conveniences from the shell, nor to the test suite's environment.
    assert raw["ENVIRONMENT"] == "development"
    assert REQUIRED.fullmatch(raw["JWT_SECRET"]), f"compose {app}: JWT_SECRET must be ${{JWT_SECRET:?...}}"
    # And the process itself refuses the public development default, should compose's check be bypassed.
    without = compose_environment(app, shell={})
    assert "JWT_SECRET" not in without
    with pytest.raises(ValueError, match="JWT_SECRET must be set when DEV_AUTH is off"):
        settings_class(app)(**{k.lower(): v for k, v in without.items()})


def test_compose_publishes_only_the_gateway_and_not_its_sandbox() -> None:
    published = {name for name, service in compose()["services"].items() if service.get("ports")}
    assert published == {"gateway"}
    env = compose_environment("gateway")
    gateway = Gateway(GatewaySettings(**{k.lower(): v for k, v in env.items()}))
    gateway.sandbox = object()  # type: ignore[assignment] # the compose sandbox, as build_upstreams makes it
    assert gateway.sandbox_public is False, "the gateway would forward /sandbox/... to the host's network"


def test_k8s_is_production_without_dev_auth_everywhere() -> None:
    for document in manifests():
        text = yaml.safe_dump(document)
        assert not re.search(r"DEV_AUTH\W+(value: )?['\"]?true", text, re.I), document["metadata"]["name"]
        assert "ENVIRONMENT: test" not in text
    for app in APPS:
        for container in [app_container(app), *pod_spec(app).get("initContainers", [])]:
            env = container_environment(container)
            assert (env["ENVIRONMENT"], env["DEV_AUTH"]) == ("production", "false"), f"{app}/{container['name']}"
