"""Merge every service's OpenAPI document into the gateway's one."""

from __future__ import annotations

import copy
import json
from typing import Any

REF_PREFIX = "#/components/schemas/"


def _rename_refs(node: Any, renames: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {
            k: (
                REF_PREFIX + renames.get(v[len(REF_PREFIX) :], v[len(REF_PREFIX) :])
                if k == "$ref" and isinstance(v, str) and v.startswith(REF_PREFIX)
                else _rename_refs(v, renames)
            )
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rename_refs(v, renames) for v in node]
    return node


def merge(
    base: dict[str, Any], services: dict[str, dict[str, Any]], *, unavailable: list[str] | None = None
) -> dict[str, Any]:
    """``unavailable``: the services whose spec could not be loaded yet. The document names them (a
    note in ``info.description``, ``x-unavailable-services`` and a tag each) instead of silently
    leaving their operations out."""
    merged = copy.deepcopy(base)
    paths: dict[str, Any] = merged.setdefault("paths", {})
    components = merged.setdefault("components", {})
    schemas: dict[str, Any] = components.setdefault("schemas", {})
    components.setdefault("securitySchemes", {})["bearerAuth"] = {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }
    tags = {t["name"]: t for t in merged.get("tags", [])}
    for name, spec in services.items():
        theirs: dict[str, Any] = spec.get("components", {}).get("schemas", {})
        # Same name, different shape: keep both, the service's one prefixed with its name.
        renames = {
            s: f"{name.title()}{s}"
            for s, body in theirs.items()
            if s in schemas and json.dumps(schemas[s], sort_keys=True) != json.dumps(body, sort_keys=True)
        }
        spec = _rename_refs(spec, renames)
        for schema_name, body in spec.get("components", {}).get("schemas", {}).items():
            schemas[renames.get(schema_name, schema_name)] = body
        for path, item in spec.get("paths", {}).items():
            if path.startswith("/api/"):
                paths[path] = item
        tags.setdefault(name, {"name": name, "description": spec.get("info", {}).get("title", name)})
    for name in unavailable or []:
        tags[name] = {"name": name, "description": f"UNAVAILABLE: {_unavailable_note(name)}"}
    merged["tags"] = list(tags.values())
    if unavailable:
        merged["x-unavailable-services"] = list(unavailable)
        info = merged.setdefault("info", {})
        notes = "\n".join(f"- **{name}**: {_unavailable_note(name)}" for name in unavailable)
        info["description"] = f"{info.get('description', '')}\n\n**Incomplete document.**\n{notes}".strip()
    return merged


def _unavailable_note(name: str) -> str:
    return (
        f"the {name} service has not answered the gateway yet, so its operations are missing from this "
        "document; reload it once the service is up (the gateway's /readyz lists the missing specs)."
    )


# ----------------------------------------------------------------------------- errors as documented

METHODS = ("get", "put", "post", "delete", "patch")


def document_problems(spec: dict[str, Any], problem: dict[str, Any]) -> dict[str, Any]:
    """Every error answer is problem+json, so the document says so: each 4xx/5xx response of each
    operation gets the Problem schema under ``application/problem+json`` (FastAPI's default 422
    would name its own ``HTTPValidationError`` as plain JSON), and the errors the house answers for
    every operation of a kind are listed where the operation has that kind: 401/403 with a token,
    400/413/422 with a body, 422 with parameters, 404 with path ids, 502/503/504 when the gateway
    cannot reach the service. ``problem`` is the Problem model's JSON schema."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for name, body in problem.pop("$defs", {}).items():
        schemas[name] = body
    schemas["Problem"] = problem
    content = {"application/problem+json": {"schema": {"$ref": f"{REF_PREFIX}Problem"}}}
    for path, item in spec.get("paths", {}).items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            responses: dict[str, Any] = operation.setdefault("responses", {})
            for added in _house_errors(path, operation):
                responses.setdefault(str(added), {"description": _DESCRIPTIONS[added]})
            for status, response in responses.items():
                if status[0] in "45":
                    response["content"] = copy.deepcopy(content)
    if not _refers(spec["paths"], "HTTPValidationError"):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
    return spec


_DESCRIPTIONS = {
    400: "Bad request (the body is not JSON)",
    401: "Not authenticated: no, bad or expired token",
    403: "Forbidden: this role or tenant may not",
    404: "Not found (or not yours)",
    413: "Request body too large",
    422: "Validation failed: `errors` names each bad field",
    502: "The service behind the gateway could not be reached",
    503: "Service unavailable",
    504: "The service behind the gateway did not answer in time",
}


def _house_errors(path: str, operation: dict[str, Any]) -> list[int]:
    found = []
    if operation.get("x-roles"):
        found += [401, 403]
    if "requestBody" in operation:
        found += [400, 413, 422]
    if operation.get("parameters"):
        found.append(422)
    if "{" in path:
        found.append(404)
    if path.startswith("/api/v1/") and not path.startswith("/api/v1/auth/"):
        found += [502, 503, 504]
    return found


def _refers(node: Any, schema_name: str) -> bool:
    return f"{REF_PREFIX}{schema_name}" in json.dumps(node)
