"""`make bench`: booking throughput of the distributed suite, side by side in one run.

Distributed mode on the machine's PostgreSQL and RabbitMQ, 32 concurrent clients:
  1. through the gateway  (gateway -> scheduling -> PostgreSQL)
  2. directly against the scheduling service (so the gateway's cost is a ratio)
  3. a bare asyncpg INSERT loop on the same database (the ceiling, so the service's cost is a ratio)
  4. contention: every client races for the same few slots; double bookings are counted (must be 0)
  5. psychoactive sale checks: the pure rule in a loop, and through the gateway (so the service and
     the gateway cost a ratio of the rule itself)
  6. prescription requests routed through the gateway, 16 clients (each asks scheduling for the
     doctor, the location and the free prescription slots, then books one), against 2. as a ratio
  7. signed CeR notifications through the gateway's webhook and directly to integration, against
     the signature rule alone
Ends with one table of every figure against its baseline.
Prints figures; asserts nothing about speed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal

import asyncpg
import httpx

from gateway import distributed
from gateway.registry import SANDBOX, SERVICES
from services.integration import domain as integration_domain
from services.pharmacy import domain as pharmacy_domain
from shared.auth import Claims, issue_token
from shared.settings import Settings

CLIENTS = int(os.environ.get("BENCH_CLIENTS", "32"))
BOOKINGS = int(os.environ.get("BENCH_BOOKINGS", "2000"))
CONTENDED_SLOTS = 50
PG_BASE = os.environ.get("PG_BASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432")
RX_CLIENTS = 16
RX_REQUESTS = int(os.environ.get("BENCH_RX_REQUESTS", "400"))
FACILITY = "bench-clinic"
RX_FACILITY = "bench-rx-clinic"
PESEL = "44051401359"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Run:
    name: str
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0

    def record(self, status: int, seconds: float) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.latencies.append(seconds)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def drive(run: Run, jobs: list[Callable[[], Awaitable[int]]], clients: int = CLIENTS) -> Run:
    queue: asyncio.Queue[Callable[[], Awaitable[int]]] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)

    async def worker() -> None:
        while not queue.empty():
            job = queue.get_nowait()
            started = time.perf_counter()
            try:
                status = await job()
            except httpx.HTTPError:
                status = 599
            run.record(status, time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    run.seconds = time.perf_counter() - started
    return run


async def setup_slots(client: httpx.AsyncClient, headers: dict[str, str], needed: int) -> list[str]:
    async def post(path: str, body: dict[str, object]) -> dict[str, str]:
        answer = await client.post(f"/api/v1/scheduling{path}", json=body, headers=headers)
        answer.raise_for_status()
        result: dict[str, str] = answer.json()
        return result

    location = await post("/locations", {"name": "Bench"})
    work = await post("/work-types", {"name": "Visit"})
    doctor = await post("/practitioners", {"name": "Dr Bench", "npwz": "5425740", "profession": "doctor"})
    day = dt.date(2031, 1, 1)
    per_day = (24 * 60 - 5) // 5
    for i in range(needed // per_day + 1):
        await post(
            "/schedules",
            {
                "practitioner_id": doctor["id"],
                "location_id": location["id"],
                "work_type_id": work["id"],
                "date": (day + dt.timedelta(days=i)).isoformat(),
                "start_time": "00:00",
                "end_time": "23:59",
                "visit_minutes": 5,
            },
        )
    slots: list[str] = []
    while len(slots) < needed:
        page = (
            await client.get(
                "/api/v1/scheduling/slots",
                params={"status": "free", "limit": 2000, "date_from": day.isoformat()},
                headers=headers,
            )
        ).json()
        fresh = [s["id"] for s in page if s["id"] not in set(slots)]
        if not fresh:
            break
        slots.extend(fresh)
        day = dt.date.fromisoformat(page[-1]["start"][:10])
    return slots[:needed]


def booking_jobs(
    client: httpx.AsyncClient, headers: dict[str, str], slot_ids: list[str]
) -> list[Callable[[], Awaitable[int]]]:
    def job(slot_id: str) -> Callable[[], Awaitable[int]]:
        async def book() -> int:
            answer = await client.post(
                "/api/v1/scheduling/bookings",
                headers=headers,
                json={"slot_id": slot_id, "patient_pesel": PESEL, "source": "desk"},
            )
            return answer.status_code

        return book

    return [job(s) for s in slot_ids]


REALISATIONS = int(os.environ.get("BENCH_REALISATIONS", "400"))


async def realisations_through_gateway(client: httpx.AsyncClient, settings: Settings) -> Run:
    """eZWM realisations per second: each order realised once, by one pharmacy (which takes its lock)."""
    doctor = {
        "Authorization": "Bearer "
        + issue_token(Claims(sub="bench-dr", role="practitioner", facility_id=FACILITY, npwz="5425740"), settings)
    }
    pharmacist = {
        "Authorization": "Bearer "
        + issue_token(Claims(sub="bench-ph", role="pharmacist", pharmacy_id="bench-apteka"), settings)
    }
    today = dt.date.today()
    order = {
        "patient_pesel": PESEL,
        "code": "P.100",
        "group": "MCH1",
        "pieces_per_month": 90,
        "months": 3,
        "start_month": today.strftime("%Y-%m"),
        "entitlements": [],
        "channel": "visit",
    }
    numbers: list[str] = []

    def issue() -> Callable[[], Awaitable[int]]:
        async def post() -> int:
            answer = await client.post("/api/v1/reimbursement/orders", json=order, headers=doctor)
            if answer.status_code == 201:
                numbers.append(answer.json()["number"])
            return answer.status_code

        return post

    await drive(Run("issue orders"), [issue() for _ in range(REALISATIONS)])
    body = {"months": [today.strftime("%Y-%m")], "pieces": 90, "unit_price": "1.50"}  # dated by the server

    def realise(number: str) -> Callable[[], Awaitable[int]]:
        async def post() -> int:
            answer = await client.post(
                f"/api/v1/reimbursement/orders/{number}/realizations", json=body, headers=pharmacist
            )
            return answer.status_code

        return post

    return await drive(Run("eZWM realisations via gateway"), [realise(n) for n in numbers])


async def prescription_requests_through_gateway(client: httpx.AsyncClient, settings: Settings) -> Run:
    """Requests routed per second: every one books the doctor's earliest free prescription slot."""
    admin = {
        "Authorization": "Bearer "
        + issue_token(Claims(sub="bench", role="facility_admin", facility_id=RX_FACILITY), settings)
    }

    async def post(path: str, body: dict[str, object]) -> dict[str, str]:
        answer = await client.post(path, json=body, headers=admin)
        answer.raise_for_status()
        result: dict[str, str] = answer.json()
        return result

    location = await post("/api/v1/scheduling/locations", {"name": "Bench Rx"})
    work = await post("/api/v1/scheduling/work-types", {"name": "Recepty", "prescription_only": True})
    doctor = await post(
        "/api/v1/scheduling/practitioners", {"name": "Dr Rx", "npwz": "5425740", "profession": "doctor", "poz": True}
    )
    first_day = dt.date.today() + dt.timedelta(days=1)
    for i in range(RX_REQUESTS // 287 + 1):  # 287 five-minute slots a day
        day = (first_day + dt.timedelta(days=i)).isoformat()
        body = {"practitioner_id": doctor["id"], "location_id": location["id"], "work_type_id": work["id"]}
        await post(
            "/api/v1/scheduling/schedules",
            {**body, "date": day, "start_time": "00:00", "end_time": "23:59", "visit_minutes": 5},
        )
    settings_answer = await client.put(
        "/api/v1/prescriptions/settings",
        json={"mode": "full"},  # activated today, the server's date
        headers=admin,
    )
    settings_answer.raise_for_status()
    (
        await client.put("/api/v1/prescriptions/practitioners/5425740/ordering", json={"enabled": True}, headers=admin)
    ).raise_for_status()
    request = {
        "patient_pesel": PESEL,
        "practitioner_npwz": "5425740",
        "location_id": location["id"],
        "items": [{"drug": "Metformax 500", "packages": 2}],
    }

    def order() -> Callable[[], Awaitable[int]]:
        async def post_request() -> int:
            answer = await client.post("/api/v1/prescriptions/requests", json=request, headers=admin)
            return answer.status_code if answer.json().get("routed_to") == "own" else 599

        return post_request

    return await drive(
        Run(f"Rx requests routed ({RX_CLIENTS} clients)"), [order() for _ in range(RX_REQUESTS)], RX_CLIENTS
    )


SALE_CHECKS = int(os.environ.get("BENCH_SALE_CHECKS", "2000"))


def pure_sale_checks(count: int) -> Run:
    """The rule alone: a two-line sale of pseudoephedrine and codeine products, policy ``ask``."""
    on = dt.date.today()
    limits = pharmacy_domain.LimitTable(
        [
            pharmacy_domain.LimitRule("pseudoephedrine", Decimal(720), dt.date(2015, 1, 1)),
            pharmacy_domain.LimitRule("codeine", Decimal(240), dt.date(2015, 1, 1)),
        ]
    )
    advil = pharmacy_domain.ProductCard(
        "1", "Advil Zatoki", dt.date(2018, 1, 1), (pharmacy_domain.Content("pseudoephedrine", Decimal(120)),)
    )
    syrup = pharmacy_domain.ProductCard(
        "2", "Syrop", dt.date(2018, 1, 1), (pharmacy_domain.Content("codeine", Decimal(60)),)
    )
    lines = [pharmacy_domain.SaleLine(advil, 3), pharmacy_domain.SaleLine(syrup, 5)]
    run = Run("sale check: the pure rule")
    started = time.perf_counter()
    for _ in range(count):
        one = time.perf_counter()
        pharmacy_domain.check_sale(
            lines, buyer_age=30, policy=pharmacy_domain.Policy.ask, confirmed=False, on=on, limits=limits
        )
        run.record(200, time.perf_counter() - one)
    run.seconds = time.perf_counter() - started
    return run


async def sale_checks_through_gateway(client: httpx.AsyncClient, settings: Settings) -> Run:
    pharmacist = {
        "Authorization": "Bearer "
        + issue_token(Claims(sub="bench-ph", role="pharmacist", pharmacy_id="bench-apteka"), settings)
    }
    ids = []
    for name, substance, mg in (("Advil Zatoki", "pseudoephedrine", 120), ("Syrop", "codeine", 60)):
        product = {
            "name": name,
            "marketed_on": "2018-01-01",
            "substances": [{"substance": substance, "mg_per_package": mg}],
        }
        answer = await client.post("/api/v1/pharmacy/products", json=product, headers=pharmacist)
        answer.raise_for_status()
        ids.append(answer.json()["id"])
    body = {
        "buyer_age": 30,
        "lines": [{"product_id": ids[0], "packages": 3}, {"product_id": ids[1], "packages": 5}],
        "confirmed": False,
    }

    def check() -> Callable[[], Awaitable[int]]:
        async def post() -> int:
            return (await client.post("/api/v1/pharmacy/sales/check", json=body, headers=pharmacist)).status_code

        return post

    return await drive(Run("sale check via gateway"), [check() for _ in range(SALE_CHECKS)])


CER_NOTIFICATIONS = int(os.environ.get("BENCH_CER_NOTIFICATIONS", "1000"))
CER_SECRET = "bench-cer-secret-0123456789abcdef"


async def cer_webhooks(client: httpx.AsyncClient, name: str) -> Run:
    """Signed notifications, each a new event id (verified, recorded once, turned into an event)."""

    def notify() -> Callable[[], Awaitable[int]]:
        async def post() -> int:
            body = json.dumps(
                {
                    "event_id": f"bench-{uuid.uuid4()}",
                    "event_type": "booking_cancelled_ikp",
                    "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
                    "slot_id": str(uuid.uuid4()),
                    "patient_pesel": PESEL,
                }
            ).encode()
            now = int(time.time())
            headers = {
                "content-type": "application/json",
                "x-cer-timestamp": str(now),
                "x-cer-signature": integration_domain.sign(CER_SECRET, now, body),
            }
            return (await client.post(f"/webhooks/cer/{FACILITY}", content=body, headers=headers)).status_code

        return post

    return await drive(Run(name), [notify() for _ in range(CER_NOTIFICATIONS)])


def pure_signature_checks(count: int) -> Run:
    body = json.dumps({"event_id": "x", "slot_id": str(uuid.uuid4()), "patient_pesel": PESEL}).encode()
    run = Run("CeR signature: the pure rule")
    started = time.perf_counter()
    for _ in range(count):
        one = time.perf_counter()
        now = int(time.time())
        integration_domain.verify_signature(
            CER_SECRET, str(now), integration_domain.sign(CER_SECRET, now, body), body, now
        )
        run.record(200, time.perf_counter() - one)
    run.seconds = time.perf_counter() - started
    return run


async def bare_insert_loop(dsn: str, count: int) -> Run:
    """The ceiling: single-row INSERT transactions over CLIENTS asyncpg connections."""
    pool = await asyncpg.create_pool(dsn, min_size=CLIENTS, max_size=CLIENTS)
    try:
        await pool.execute(
            "CREATE TABLE IF NOT EXISTS bench_insert (id uuid PRIMARY KEY, slot_id uuid, "
            "patient_pesel varchar(11), created_at timestamptz DEFAULT now())"
        )

        def job() -> Callable[[], Awaitable[int]]:
            async def insert() -> int:
                await pool.execute(
                    "INSERT INTO bench_insert (id, slot_id, patient_pesel) VALUES ($1, $2, $3)",
                    uuid.uuid4(),
                    uuid.uuid4(),
                    PESEL,
                )
                return 201

            return insert

        return await drive(Run("bare asyncpg INSERT (ceiling)"), [job() for _ in range(count)])
    finally:
        await pool.close()


async def count_double_bookings(dsn: str) -> tuple[int, int]:
    connection = await asyncpg.connect(dsn)
    try:
        doubles = await connection.fetchval(
            "SELECT count(*) FROM (SELECT slot_id FROM bookings WHERE status = 'booked' "
            "GROUP BY slot_id HAVING count(*) > 1) d"
        )
        total = await connection.fetchval("SELECT count(*) FROM bookings WHERE status = 'booked'")
        return int(doubles), int(total)
    finally:
        await connection.close()


def print_table(runs: list[Run]) -> None:
    print(f"\n{'run':<34}{'requests':>9}{'2xx':>7}{'409':>6}{'other':>7}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}")
    for r in runs:
        ok = sum(v for k, v in r.statuses.items() if 200 <= k < 300)
        conflict = r.statuses.get(409, 0)
        other = len(r.latencies) - ok - conflict
        print(
            f"{r.name:<34}{len(r.latencies):>9}{ok:>7}{conflict:>6}{other:>7}{r.rate:>9.0f}"
            f"{r.pct(0.5):>9.1f}{r.pct(0.99):>9.1f}"
        )
    for r in runs:
        odd = {status: n for status, n in r.statuses.items() if not (200 <= status < 300 or status == 409)}
        if odd:
            print(f"  {r.name}: other answers by status {odd} (599: no answer, the client gave up)")


async def benchmark(ports: dict[str, int], prefix: str) -> None:
    settings = Settings()
    token = issue_token(Claims(sub="bench", role="facility_admin", facility_id=FACILITY), settings)
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    gateway_url = f"http://127.0.0.1:{ports['gateway']}"
    direct_url = f"http://127.0.0.1:{ports['scheduling']}"
    async with (
        httpx.AsyncClient(base_url=gateway_url, timeout=30, limits=limits) as via_gateway,
        httpx.AsyncClient(base_url=direct_url, timeout=30, limits=limits) as direct,
    ):
        # The ceiling first, while the services' connection pools are small (PostgreSQL allows 100).
        dsn = f"{PG_BASE.replace('+asyncpg', '')}/{prefix}_scheduling"
        bare = await bare_insert_loop(dsn, BOOKINGS)
        slots = await setup_slots(via_gateway, headers, 2 * BOOKINGS + CONTENDED_SLOTS)
        print(f"{len(slots)} free slots prepared; {CLIENTS} concurrent clients, {BOOKINGS} bookings per run")
        gateway_slots, direct_slots = slots[:BOOKINGS], slots[BOOKINGS : 2 * BOOKINGS]
        contended = slots[2 * BOOKINGS :]
        runs = [
            await drive(Run("through the gateway"), booking_jobs(via_gateway, headers, gateway_slots)),
            await drive(Run("direct to scheduling"), booking_jobs(direct, headers, direct_slots)),
        ]
        # Every slot attempted by 8 clients at once, half through the gateway, half directly.
        racing = [
            j
            for s in contended
            for j in (booking_jobs(via_gateway, headers, [s] * 4) + booking_jobs(direct, headers, [s] * 4))
        ]
        runs.append(await drive(Run(f"contention ({CONTENDED_SLOTS} slots x 8)"), racing))
        realisations = await realisations_through_gateway(via_gateway, settings)
        routed = await prescription_requests_through_gateway(via_gateway, settings)
        sales = await sale_checks_through_gateway(via_gateway, settings)
        saved = await via_gateway.put(
            "/api/v1/integration/cer/settings",
            json={
                "endpoint": f"{gateway_url}/webhooks/cer/{FACILITY}",
                "email": "cer@bench.example",
                "secret": CER_SECRET,
            },
            headers=headers,
        )
        saved.raise_for_status()
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{ports['integration']}", timeout=30, limits=limits
        ) as integration:
            webhooks = await cer_webhooks(via_gateway, "CeR webhook via gateway")
            webhooks_direct = await cer_webhooks(integration, "CeR webhook direct to integration")
    pure_sales = pure_sale_checks(SALE_CHECKS * 10)
    pure_signatures = pure_signature_checks(CER_NOTIFICATIONS * 20)
    runs.append(bare)
    print_table([*runs, realisations, routed, sales, pure_sales, webhooks, webhooks_direct, pure_signatures])
    doubles, total = await count_double_bookings(dsn)
    gw, di, bare = runs[0], runs[1], runs[3]
    print(f"\ncontention:    {runs[2].statuses.get(201, 0)} bookings won for {CONTENDED_SLOTS} slots")
    print(f"double bookings: {doubles}   (active bookings in the database: {total})")
    print_ratios(
        [
            ("booking through the gateway", gw, "direct to scheduling", di),
            ("booking direct to scheduling", di, "bare asyncpg INSERT", bare),
            ("Rx request routed via gateway", routed, "direct booking", di),
            ("eZWM realisation via gateway", realisations, "direct booking", di),
            ("sale check via gateway", sales, "the pure rule", pure_sales),
            ("CeR webhook via gateway", webhooks, "direct to integration", webhooks_direct),
            ("CeR webhook direct", webhooks_direct, "the signature rule", pure_signatures),
        ]
    )


def print_ratios(rows: list[tuple[str, Run, str, Run]]) -> None:
    """Every service's figure next to its baseline, measured in this same run."""
    print(f"\n{'figure':<32}{'per s':>9}{'p50 ms':>9}   {'baseline':<24}{'per s':>9}{'p50 ms':>9}{'ratio':>9}")
    for name, run, base_name, base in rows:
        print(
            f"{name:<32}{run.rate:>9.0f}{run.pct(0.5):>9.1f}   {base_name:<24}{base.rate:>9.0f}"
            f"{base.pct(0.5):>9.2f}{run.rate / max(base.rate, 1e-9):>8.3f}x"
        )


async def drop_databases(prefix: str) -> None:
    connection = await asyncpg.connect(f"{PG_BASE.replace('+asyncpg', '')}/postgres")
    try:
        for name in SERVICES:
            await connection.execute(f'DROP DATABASE IF EXISTS "{prefix}_{name}" WITH (FORCE)')
    finally:
        await connection.close()


def main() -> None:
    prefix = f"bench_{uuid.uuid4().hex[:8]}"
    ports = {name: free_port() for name in [*SERVICES, SANDBOX, "gateway"]}
    env = {
        **os.environ,
        "LOG_LEVEL": "WARNING",
        "ENVIRONMENT": "test",
        "ALLOW_TEST_ENVIRONMENT": "true",  # the test suite's own drills (shared/settings.py)
        "AMQP_URL": os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    }
    print(f"distributed suite on PostgreSQL ({prefix}_*) and RabbitMQ, {os.cpu_count()} cores")
    processes = distributed.start_all(
        int(os.environ.get("WORKERS", "1")), ports=ports, base_env=env, database_prefix=prefix
    )
    try:
        if not distributed.wait_ready(f"http://127.0.0.1:{ports['gateway']}/readyz", timeout=90):
            sys.exit("the distributed suite did not become ready")
        asyncio.run(benchmark(ports, prefix))
    finally:
        distributed.stop_all(processes)
        asyncio.run(drop_databases(prefix))


if __name__ == "__main__":
    main()
