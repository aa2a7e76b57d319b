"""The dated CeR table on the real PostgreSQL: operators correcting one entry at the same moment on
two replicas of the integration service. Each correction gets its own revision and history row;
none is lost and none is a 500 (the entry's row lock orders them)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
import pytest

from services.integration.app import create_app
from tests.conftest import make_settings, token_for
from tests.integration.conftest import scalar, serving

pytestmark = pytest.mark.infra

TABLE = "/api/v1/integration/cer/specialties"
CORRECTIONS_PER_REPLICA = 8


@asynccontextmanager
async def two_replicas(pg_url: str, tmp_path: Path) -> AsyncIterator[tuple[list[httpx.AsyncClient], str]]:
    # The table needs no other service: scheduling's address is never called here.
    settings = make_settings(
        tmp_path, service_name="integration", database_url=pg_url, scheduling_url="http://scheduling.invalid"
    )
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(serving(create_app(settings))) for _ in range(2)]
        yield clients, token_for(settings, "operator")


async def test_concurrent_corrections_of_one_entry_each_become_one_revision_and_one_history_row(
    pg_url: str, tmp_path: Path
) -> None:
    async with two_replicas(pg_url, tmp_path) as (clients, token):
        headers = {"Authorization": f"Bearer {token}"}

        def correction(n: int) -> list[dict[str, object]]:
            day = f"2026-09-{n + 1:02d}"  # every correction differs from every other
            return [
                {"specialty": "endocrinology", "covered_from": day, "source": f"korekta {n}", "draft": False},
                {"specialty": "nephrology", "covered_from": day, "source": f"korekta {n}", "draft": False},
            ]

        answers = await asyncio.gather(
            *(
                clients[n % 2].put(TABLE, json=correction(n), headers=headers)
                for n in range(2 * CORRECTIONS_PER_REPLICA)
            )
        )
        assert [a.status_code for a in answers] == [200] * len(answers), [a.text for a in answers]
        table = {e["specialty"]: e for e in (await clients[0].get(TABLE, headers=headers)).json()}

    corrections = 2 * CORRECTIONS_PER_REPLICA
    for specialty in ("endocrinology", "nephrology"):
        assert table[specialty]["revision"] == corrections
        revisions = await scalar(
            pg_url, "SELECT count(DISTINCT revision) FROM cer_coverage_changes WHERE specialty = :s", s=specialty
        )
        rows = await scalar(pg_url, "SELECT count(*) FROM cer_coverage_changes WHERE specialty = :s", s=specialty)
        assert revisions == rows == corrections
        # The entry holds what its last revision recorded: the history and the table agree.
        last = await scalar(
            pg_url,
            "SELECT new_source FROM cer_coverage_changes WHERE specialty = :s AND revision = :n",
            s=specialty,
            n=corrections,
        )
        assert table[specialty]["source"] == last
    events = await scalar(pg_url, "SELECT count(*) FROM outbox WHERE event_type = 'integration.cer.coverage_changed'")
    assert events == 2 * corrections
