"""A fresh embedded suite per test without paying its start-up each time.

Most API and end-to-end tests build the whole embedded gateway (seven apps, each migrating its own
SQLite file and rendering its OpenAPI document for the gateway's routing). Both results depend only
on the code, which cannot change within one test process, so the first test pays for them and the
others reuse them:

- a service's fresh SQLite file is a copy (SQLite's online backup) of one that Alembic migrated to
  the head revision in this process, so every test still starts from exactly what the migrations
  create, in a database of its own;
- an app's OpenAPI document is rendered once per distinct route table and handed to each new app of
  the same shape as a deep copy (nobody's edits leak into another test).

The real paths still run: the first app of each kind migrates and renders, the migration tests
(``tests/integration/test_migrations.py``) and the service processes started by the integration
and distributed tests never see these shortcuts.
"""

from __future__ import annotations

import copy
import sqlite3
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

import shared.app
from shared.db import Grants

Migrate = Callable[[Path, str, Grants | None], Awaitable[None]]

_SQLITE_PREFIX = "sqlite+aiosqlite:///"


def _sqlite_file(url: str) -> Path | None:
    if not url.startswith(_SQLITE_PREFIX):
        return None
    path = url.removeprefix(_SQLITE_PREFIX).split("?", 1)[0]
    return None if not path or path == ":memory:" else Path(path)


def _copy_database(source: Path, target: Path) -> None:
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()


def migrating_from_templates(migrate: Migrate) -> Migrate:
    """``migrate`` for fresh SQLite files served from a per-process template of each service."""
    templates: dict[Path, Path] = {}
    folder = Path(tempfile.mkdtemp(prefix="ehealth-migrated-"))

    async def migrate_or_copy(migrations_dir: Path, url: str, grants: Grants | None = None) -> None:
        target = _sqlite_file(url)
        if target is None or target.exists():  # PostgreSQL, or a database that already has a past
            await migrate(migrations_dir, url, grants)
            return
        template = templates.get(migrations_dir)
        if template is None:
            await migrate(migrations_dir, url, grants)
            template = folder / f"{len(templates)}-{migrations_dir.parent.name}.db"
            _copy_database(target, template)
            templates[migrations_dir] = template
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        _copy_database(template, target)

    return migrate_or_copy


def _route_signature(app: FastAPI) -> tuple[Any, ...]:
    routes = []
    for route in app.routes:
        if isinstance(route, APIRoute):
            routes.append(
                (
                    route.path,
                    tuple(sorted(route.methods)),
                    route.name,
                    route.endpoint.__module__,
                    route.endpoint.__qualname__,
                    route.summary,
                    route.description,
                    repr(route.openapi_extra),
                    repr(route.responses),
                    id(route.response_model),
                )
            )
        else:
            routes.append((getattr(route, "path", None), type(route).__name__))
    return (app.title, app.version, app.description, tuple(routes))


def install() -> None:
    """Both shortcuts, for this test process."""
    shared.app.migrate = migrating_from_templates(shared.app.migrate)  # type: ignore[assignment]
    rendered: dict[tuple[Any, ...], dict[str, Any]] = {}
    render = FastAPI.openapi

    def openapi(self: FastAPI) -> dict[str, Any]:
        if self.openapi_schema is None:
            key = _route_signature(self)
            if key not in rendered:
                rendered[key] = copy.deepcopy(render(self))
            self.openapi_schema = copy.deepcopy(rendered[key])
        return self.openapi_schema

    FastAPI.openapi = openapi  # type: ignore[method-assign]
