"""Operations commands: `python -m gateway.manage migrate [SERVICE ...]`.

Used by `make migrate` and by the Kubernetes init containers, so that replicas never race to
migrate on start.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from gateway.registry import SERVICES, factory
from shared.db import Grants, migrate
from shared.settings import Settings


def migrations_dir(service: str) -> Path:
    module = factory(service).__module__  # services.<name>.app
    package = module.rsplit(".", 1)[0].replace(".", "/")
    return Path(__file__).resolve().parent.parent / package / "migrations"


async def migrate_services(names: list[str]) -> None:
    for name in names:
        settings = Settings(service_name=name)
        grants = Grants.of(settings.database_runtime_role, settings.database_maintenance_role)
        await migrate(migrations_dir(name), settings.resolved_migration_database_url, grants)
        print(f"{name}: migrated to head")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m gateway.manage")
    commands = parser.add_subparsers(dest="command", required=True)
    migrate_cmd = commands.add_parser("migrate", help="create the database if missing and migrate it to head")
    migrate_cmd.add_argument("services", nargs="*", metavar="SERVICE", help=f"default: all of {', '.join(SERVICES)}")
    args = parser.parse_args()
    unknown = set(args.services) - set(SERVICES)
    if unknown:
        parser.error(f"unknown service(s): {', '.join(sorted(unknown))}")
    if args.command == "migrate":
        asyncio.run(migrate_services(args.services or list(SERVICES)))


if __name__ == "__main__":
    main()
