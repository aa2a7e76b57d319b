"""`make chaos`: outage drills against the distributed suite on the real PostgreSQL and RabbitMQ.

Every service is its own process (as `make run-distributed`, on fresh databases and ports). Three
drills, each printing its counts; the command exits non-zero when a count is wrong:

1. RabbitMQ stopped and started in the middle of 1,000 desk bookings of CeR-published slots:
   every booking must be answered 201, and every booking event must be applied exactly once by
   its two consumers (a CeR change queued in integration, a message row in notifications).
2. The scheduling process killed (SIGKILL) in the middle of a burst of schedule creations and
   bookings, then started again: no partial state (a schedule has all its slots and its event, a
   booking its event; nothing half-written).
3. The sandbox's CeR down while the desk books and cancels: every change queued, then delivered
   when CeR returns - each once, each visit's booking before its cancellation.

Stopping RabbitMQ uses `rabbitmqctl stop_app` / `start_app` (the machine's broker, for a while).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
import httpx

from gateway import distributed
from gateway.registry import SANDBOX, SERVICES
from shared.auth import Claims, issue_token
from shared.settings import Settings
from tests.bench.run import drop_databases, free_port
from tests.integration.conftest import new_npwz

FACILITY = "chaos-clinic"
PESELS = ("44051401359", "02070803628")
BOOKINGS = int(os.environ.get("CHAOS_BOOKINGS", "1000"))
PG_BASE = os.environ.get("PG_BASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432")


@dataclass
class Suite:
    ports: dict[str, int]
    prefix: str
    env: dict[str, str]
    processes: list[subprocess.Popen[bytes]]
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}"

    def dsn(self, service: str) -> str:
        return f"{PG_BASE.replace('+asyncpg', '')}/{self.prefix}_{service}"

    async def count(self, service: str, sql: str, *args: object) -> int:
        connection = await asyncpg.connect(self.dsn(service))
        try:
            return int(await connection.fetchval(sql, *args) or 0)
        finally:
            await connection.close()

    def restart(self, service: str) -> None:
        index = 1 + list(SERVICES).index(service)  # the sandbox is started first
        self.processes[index] = subprocess.Popen(
            distributed.uvicorn_command(SERVICES[service], self.ports[service]),
            env=distributed.service_environment(service, self.env, database_prefix=self.prefix, ports=self.ports),
        )


def rabbitmq(action: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", action], check=True, capture_output=True, timeout=120)


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise SystemExit(f"FAILED: timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.5)


async def _after(first: asyncio.Task[None], action: str) -> None:
    await first
    await asyncio.to_thread(rabbitmq, action)


def verdict(name: str, ok: bool, figures: str) -> bool:
    print(f"  {'ok  ' if ok else 'FAIL'} {name}: {figures}", flush=True)
    return ok


# ----------------------------------------------------------------------------- clinic data


async def cardiology_slots(client: httpx.AsyncClient, suite: Suite, count: int, day: int) -> list[str]:
    async def post(path: str, body: dict[str, object]) -> dict[str, str]:
        answer = await client.post(f"/api/v1/scheduling/{path}", json=body, headers=suite.headers)
        answer.raise_for_status()
        found: dict[str, str] = answer.json()
        return found

    location = await post("locations", {"name": f"Kardiologia {day}", "cer_specialty": "cardiology"})
    work = await post("work-types", {"name": "Konsultacja kardiologiczna"})
    slots: list[str] = []
    for n in range(count // 100 + 1):
        doctor = await post("practitioners", {"name": f"Dr {day}-{n}", "npwz": new_npwz(), "profession": "doctor"})
        await post(
            "schedules",
            {
                "practitioner_id": doctor["id"],
                "location_id": location["id"],
                "work_type_id": work["id"],
                "date": f"2031-0{1 + day}-{10 + n % 18:02d}",
                "start_time": "06:00",
                "end_time": "14:20",
                "visit_minutes": 5,
            },
        )
        found = await client.get(
            "/api/v1/scheduling/slots",
            params={"practitioner_id": doctor["id"], "status": "free", "limit": 2000},
            headers=suite.headers,
        )
        slots += [s["id"] for s in found.json()]
    return slots[:count]


async def book_all(
    client: httpx.AsyncClient, suite: Suite, slots: list[str], on_progress: Callable[[int], None]
) -> dict[int, int]:
    statuses: dict[int, int] = {}
    queue = list(enumerate(slots))
    done = 0

    async def worker() -> None:
        nonlocal done
        while queue:
            i, slot_id = queue.pop(0)
            try:
                answer = await client.post(
                    "/api/v1/scheduling/bookings",
                    json={"slot_id": slot_id, "patient_pesel": PESELS[i % 2]},
                    headers=suite.headers,
                )
                status = answer.status_code
            except httpx.HTTPError:
                status = 0
            statuses[status] = statuses.get(status, 0) + 1
            done += 1
            on_progress(done)

    await asyncio.gather(*(worker() for _ in range(16)))
    return statuses


# ----------------------------------------------------------------------------- drills


async def broker_outage(client: httpx.AsyncClient, suite: Suite) -> bool:
    print(f"\n1. RabbitMQ stopped and started during {BOOKINGS} bookings", flush=True)
    slots = await cardiology_slots(client, suite, BOOKINGS, day=1)
    events: list[str] = []
    switches: list[asyncio.Task[None]] = []

    def progress(done: int) -> None:
        # The broker is switched on a thread: the bookings go on meanwhile.
        if done == BOOKINGS * 3 // 10 and "stop" not in events:
            events.append("stop")
            switches.append(asyncio.create_task(asyncio.to_thread(rabbitmq, "stop_app")))
            print(f"   stopping the broker after {done} bookings", flush=True)
        elif done == BOOKINGS * 7 // 10 and "start" not in events:
            events.append("start")
            switches.append(asyncio.create_task(_after(switches[0], "start_app")))
            print(f"   starting the broker after {done} bookings", flush=True)

    started = time.monotonic()
    statuses = await book_all(client, suite, slots, progress)
    await asyncio.gather(*switches)
    if "start" not in events:
        await asyncio.to_thread(rabbitmq, "start_app")
    print(f"   bookings answered {statuses} in {time.monotonic() - started:.1f} s", flush=True)

    async def consumed() -> bool:
        queued = await suite.count("integration", "SELECT count(*) FROM cer_visits WHERE facility_id = $1", FACILITY)
        return queued >= BOOKINGS

    await until(consumed, "integration to consume every booking event")
    booked = await suite.count("scheduling", "SELECT count(*) FROM bookings WHERE facility_id = $1", FACILITY)
    sent = await suite.count(
        "scheduling", "SELECT count(*) FROM outbox WHERE event_type = 'scheduling.booking.created'"
    )
    visits = await suite.count("integration", "SELECT count(*) FROM cer_visits WHERE facility_id = $1", FACILITY)
    books = await suite.count("integration", "SELECT count(*) FROM cer_outgoing WHERE kind = 'book'")
    distinct = await suite.count(
        "integration", "SELECT count(DISTINCT reference) FROM cer_outgoing WHERE kind = 'book'"
    )

    async def messages_done() -> bool:
        found = await suite.count(
            "notifications", "SELECT count(*) FROM messages WHERE event_type = 'scheduling.booking.created'"
        )
        return found >= BOOKINGS

    await until(messages_done, "notifications to consume every booking event")
    messages = await suite.count(
        "notifications", "SELECT count(*) FROM messages WHERE event_type = 'scheduling.booking.created'"
    )
    message_events = await suite.count(
        "notifications", "SELECT count(DISTINCT event_id) FROM messages WHERE event_type = 'scheduling.booking.created'"
    )
    lost = BOOKINGS - min(visits, message_events)
    twice = (books - distinct) + (messages - message_events)
    return verdict(
        "broker outage",
        statuses == {201: BOOKINGS} and booked == sent == BOOKINGS and lost == 0 and twice == 0,
        f"{statuses.get(201, 0)}/{BOOKINGS} booked, {sent} events, consumed by integration {visits} "
        f"and notifications {message_events}: lost {lost}, applied twice {twice}",
    )


async def killed_service(client: httpx.AsyncClient, suite: Suite) -> bool:
    print("\n2. The scheduling process killed mid-request and started again", flush=True)
    slots = await cardiology_slots(client, suite, 200, day=2)
    location = (await client.get("/api/v1/scheduling/locations", headers=suite.headers)).json()[0]["id"]
    work = (await client.get("/api/v1/scheduling/work-types", headers=suite.headers)).json()[0]["id"]
    doctors = []
    for n in range(12):
        answer = await client.post(
            "/api/v1/scheduling/practitioners",
            json={"name": f"Dr kill {n}", "npwz": new_npwz(), "profession": "doctor"},
            headers=suite.headers,
        )
        doctors.append(answer.json()["id"])

    async def schedule(doctor: str) -> int:
        body = {
            "practitioner_id": doctor,
            "location_id": location,
            "work_type_id": work,
            "date": "2031-05-05",
            "start_time": "00:00",
            "end_time": "23:55",
            "visit_minutes": 5,
        }
        try:
            return (await client.post("/api/v1/scheduling/schedules", json=body, headers=suite.headers)).status_code
        except httpx.HTTPError:
            return 0

    burst = asyncio.gather(*(schedule(d) for d in doctors), book_all(client, suite, slots, lambda _done: None))
    await asyncio.sleep(0.4)
    suite.processes[1 + list(SERVICES).index("scheduling")].send_signal(signal.SIGKILL)
    outcomes = await burst
    schedule_answers = [o for o in outcomes[: len(doctors)] if isinstance(o, int)]
    print(f"   killed; schedule answers {sorted(schedule_answers)}; bookings {outcomes[-1]}", flush=True)
    suite.restart("scheduling")
    if not distributed.wait_ready(f"http://127.0.0.1:{suite.ports['scheduling']}/readyz", timeout=90):
        raise SystemExit("FAILED: scheduling did not come back")
    partial = await suite.count(
        "scheduling",
        "SELECT count(*) FROM schedules s WHERE s.date = '2031-05-05' AND "
        "(SELECT count(*) FROM slots WHERE schedule_id = s.id) <> 287",
    )
    without_event = await suite.count(
        "scheduling",
        "SELECT count(*) FROM schedules s WHERE NOT EXISTS (SELECT 1 FROM outbox o WHERE "
        "o.event_type = 'scheduling.schedule.published' "
        "AND o.envelope::jsonb -> 'payload' ->> 'schedule_id' = s.id::text)",
    )
    bookings_without_event = await suite.count(
        "scheduling",
        "SELECT count(*) FROM bookings b WHERE NOT EXISTS (SELECT 1 FROM outbox o WHERE "
        "o.event_type = 'scheduling.booking.created' AND o.envelope::jsonb -> 'payload' ->> 'booking_id' = b.id::text)",
    )
    whole = await suite.count("scheduling", "SELECT count(*) FROM schedules WHERE date = '2031-05-05'")
    created = schedule_answers.count(201)
    return verdict(
        "killed process",
        partial == 0 and without_event == 0 and bookings_without_event == 0 and whole >= created,
        f"{len(doctors)} schedules sent, {created} answered 201, {whole} in the database, {partial} partial, "
        f"{without_event} without their event, {bookings_without_event} bookings without their event",
    )


async def national_outage(client: httpx.AsyncClient, suite: Suite) -> bool:
    print("\n3. The sandbox's CeR down while the desk books and cancels", flush=True)
    slots = await cardiology_slots(client, suite, 100, day=3)
    sandbox = httpx.AsyncClient(base_url=f"http://127.0.0.1:{suite.ports[SANDBOX]}/sandbox/cer")

    async def backlog() -> int:
        ready = (await client.get("/readyz")).json()
        return int(ready["services"]["integration"]["checks"]["cer_backlog"])

    await until(lambda: _zero(backlog), "the schedules published to CeR")
    await sandbox.post("/down")
    ids = []
    for i, slot_id in enumerate(slots):
        answer = await client.post(
            "/api/v1/scheduling/bookings",
            json={"slot_id": slot_id, "patient_pesel": PESELS[i % 2]},
            headers=suite.headers,
        )
        ids.append(answer.json()["id"])
    cancelled = ids[::4]
    for booking_id in cancelled:
        await client.post(f"/api/v1/scheduling/bookings/{booking_id}/cancel", headers=suite.headers)
    await until(lambda: _at_least(backlog, len(ids) - len(cancelled) + len(cancelled)), "the changes queued", 120)
    waiting = await backlog()
    await asyncio.sleep(3)
    await sandbox.post("/up")
    await until(lambda: _zero(backlog), "the queue delivered")
    changes = (await sandbox.get(f"/facilities/{FACILITY}/changes")).json()
    await sandbox.aclose()
    first = [c for c in changes if c["kind"] in ("book", "cancel") and not c["repeated"] and c["reference"] in ids]
    position = {(c["kind"], c["reference"]): c["sequence"] for c in first}
    books = sum(1 for c in first if c["kind"] == "book")
    cancels = sum(1 for c in first if c["kind"] == "cancel")
    out_of_order = sum(
        1 for b in cancelled if ("book", b) in position and position[("book", b)] > position[("cancel", b)]
    )
    missing = sum(1 for b in set(ids) - set(cancelled) if ("book", b) not in position)
    return verdict(
        "national system outage",
        missing == 0 and out_of_order == 0 and cancels == len(cancelled),
        f"{waiting} changes waited; delivered {books} bookings and {cancels} cancellations; "
        f"{missing} missing, {out_of_order} out of order",
    )


async def _zero(value: Callable[[], Awaitable[int]]) -> bool:
    return await value() == 0


async def _at_least(value: Callable[[], Awaitable[int]], floor: int) -> bool:
    return await value() >= floor


async def drills(suite: Suite) -> bool:
    settings = Settings()
    token = issue_token(Claims(sub="chaos", role="facility_admin", facility_id=FACILITY), settings)
    suite.headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=suite.gateway, timeout=30) as client:
        await client.put(
            "/api/v1/integration/cer/settings",
            json={
                "endpoint": f"{suite.gateway}/webhooks/cer/{FACILITY}",
                "email": "cer@chaos.example",
                "secret": "chaos-cer-secret-0123456789abcdef",
            },
            headers=suite.headers,
        )
        results = [
            await broker_outage(client, suite),
            await killed_service(client, suite),
            await national_outage(client, suite),
        ]
    return all(results)


def main() -> None:
    prefix = f"chaos_{uuid.uuid4().hex[:8]}"
    ports = {name: free_port() for name in [*SERVICES, SANDBOX, "gateway"]}
    env = {
        **os.environ,
        "LOG_LEVEL": "ERROR",
        "ENVIRONMENT": "test",
        "ALLOW_TEST_ENVIRONMENT": "true",  # the test suite's own drills (shared/settings.py)
        "AMQP_URL": os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
        "CER_RETRY_SECONDS": "0.5",
        "CER_RETRY_MAX_SECONDS": "2",
        "OUTBOX_POLL_SECONDS": "0.2",
    }
    print(f"chaos drills: distributed suite on PostgreSQL ({prefix}_*) and RabbitMQ, {os.cpu_count()} cores")
    processes = distributed.start_all(1, ports=ports, base_env=env, database_prefix=prefix)
    suite = Suite(ports, prefix, env, processes)
    ok = False
    try:
        if not distributed.wait_ready(f"http://127.0.0.1:{ports['gateway']}/readyz", timeout=90):
            sys.exit("the distributed suite did not become ready")
        ok = asyncio.run(drills(suite))
    finally:
        subprocess.run(["rabbitmqctl", "-q", "start_app"], capture_output=True, timeout=120)
        distributed.stop_all(suite.processes)
        asyncio.run(drop_databases(prefix))
    print("\nall drills passed" if ok else "\nSOME DRILLS FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
