"""Demo data for the embedded default, written through the gateway's own API (idempotent)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import structlog

log = structlog.get_logger("demo")

DEMO_FACILITY = "demo-clinic"
PRACTITIONERS = [
    {"name": "lek. Anna Kowalska", "npwz": "5425740", "profession": "doctor", "poz": True},
    {"name": "lek. Piotr Nowak", "npwz": "2234567", "profession": "doctor", "poz": True},
    {"name": "lek. Ewa Wiśniewska (kardiolog)", "npwz": "3123456", "profession": "doctor", "poz": False},
]


def working_days(start: dt.date, count: int) -> list[dt.date]:
    days: list[dt.date] = []
    day = start
    while len(days) < count:
        day += dt.timedelta(days=1)
        if day.weekday() < 5:
            days.append(day)
    return days


async def seed(
    client: httpx.AsyncClient, today: dt.date | None = None, public_url: str = "http://127.0.0.1:8000"
) -> bool:
    """Create a small clinic unless it exists; True when something was created. ``public_url`` is
    where the gateway listens: the CeR sandbox sends the demo clinic's notifications there."""
    token = (
        await client.post(
            "/api/v1/auth/dev-token", json={"sub": "demo-admin", "role": "facility_admin", "facility_id": DEMO_FACILITY}
        )
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}

    async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = await client.post(f"/api/v1/scheduling{path}", json=body, headers=headers)
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result

    existing = await client.get("/api/v1/scheduling/locations", headers=headers)
    if existing.status_code == 200 and existing.json():
        return False
    centre = await post("/locations", {"name": "Przychodnia Centrum", "department_code": "0010"})
    north = await post("/locations", {"name": "Filia Północ", "department_code": "0020"})
    doctors = [await post("/practitioners", p) for p in PRACTITIONERS]
    visit = await post("/work-types", {"name": "Wizyta POZ", "visible_online": True})
    prescriptions = await post("/work-types", {"name": "Recepty (zamówienia)", "prescription_only": True})
    cardiology = await post(
        "/work-types", {"name": "Kardiologia", "visible_online": True, "cer_specialty": "cardiology"}
    )
    for day in working_days(today or dt.date.today(), 5):
        d = day.isoformat()
        await post(
            "/schedules",
            {
                "practitioner_id": doctors[0]["id"],
                "location_id": centre["id"],
                "work_type_id": visit["id"],
                "date": d,
                "start_time": "08:00",
                "end_time": "12:00",
                "visit_minutes": 15,
            },
        )
        await post(
            "/schedules",
            {
                "practitioner_id": doctors[0]["id"],
                "location_id": centre["id"],
                "work_type_id": prescriptions["id"],
                "date": d,
                "start_time": "12:00",
                "end_time": "13:00",
                "visit_minutes": 10,
            },
        )
        await post(
            "/schedules",
            {
                "practitioner_id": doctors[1]["id"],
                "location_id": north["id"],
                "work_type_id": visit["id"],
                "date": d,
                "start_time": "10:00",
                "end_time": "16:00",
                "visit_minutes": 20,
            },
        )
        await post(
            "/schedules",
            {
                "practitioner_id": doctors[2]["id"],
                "location_id": centre["id"],
                "work_type_id": cardiology["id"],
                "date": d,
                "start_time": "14:00",
                "end_time": "18:00",
                "visit_minutes": 30,
                "cer_published": True,
            },
        )
    answer = await client.put(
        f"/api/v1/scheduling/locations/{centre['id']}/duty-practitioner",
        json={"practitioner_id": doctors[1]["id"]},
        headers=headers,
    )
    answer.raise_for_status()
    await _prescription_ordering(client, headers)
    await _cer_notifications(client, headers, public_url)
    log.info("demo data seeded", facility=DEMO_FACILITY)
    return True


async def _prescription_ordering(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    """Ordering in demo mode (from the server's today), switched on for the two POZ doctors; problems
    go to the desk's address."""
    settings = {"mode": "demo", "problem_email": "rejestracja@demo-clinic.example"}
    (await client.put("/api/v1/prescriptions/settings", json=settings, headers=headers)).raise_for_status()
    for doctor in PRACTITIONERS:
        if doctor["poz"]:
            answer = await client.put(
                f"/api/v1/prescriptions/practitioners/{doctor['npwz']}/ordering",
                json={"enabled": True},
                headers=headers,
            )
            answer.raise_for_status()


async def _cer_notifications(client: httpx.AsyncClient, headers: dict[str, str], public_url: str) -> None:
    """CeR's notifications of the demo clinic come to this gateway's webhook (a demo secret: the
    sandbox signs with it; a real facility's secret is its own)."""
    settings = {
        "endpoint": f"{public_url.rstrip('/')}/webhooks/cer/{DEMO_FACILITY}",
        "email": "cer@demo-clinic.example",
        "secret": "demo-clinic-cer-secret-for-the-sandbox",
    }
    (await client.put("/api/v1/integration/cer/settings", json=settings, headers=headers)).raise_for_status()
    contracts = {"specialties": ["cardiology"]}  # its cardiology schedules are an NFZ contract's
    (await client.put("/api/v1/integration/cer/contracts", json=contracts, headers=headers)).raise_for_status()
