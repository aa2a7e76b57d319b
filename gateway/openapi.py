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


def merge(base: dict[str, Any], services: dict[str, dict[str, Any]]) -> dict[str, Any]:
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
    merged["tags"] = list(tags.values())
    return merged
