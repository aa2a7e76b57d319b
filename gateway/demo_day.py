"""`make demo`: one scripted clinic-and-pharmacy day through the gateway, printed step by step.

``python -m gateway.demo_day`` builds the embedded default (every service and the sandbox in this
process, SQLite in a fresh temporary directory, the in-process bus), runs its lifespan and plays a
day through HTTP calls to the gateway only: the API a front end uses, plus ``/sandbox/*`` to play
the patients (IKP, CeR) and to read what the mail catcher and the SMS provider received.

The services' background passes (outbox relays, the P1 poller, IKP sealing, the P1 and CeR
forwarders, the notification sender) run on timers. To keep the day quick and deterministic the
demo runs them itself between steps, like the e2e tests do: that is the one place it reaches into
the apps' state, :func:`run_background_passes_now`, beside :func:`connect_cer_sandbox_to_this_gateway`
(CeR's sandbox delivers its signed notifications to this in-process gateway instead of the network).

PESELs are masked (``440514*****``), the access code is never printed (``code ****``), ids are
shortened. Any unexpected answer stops the day with a message naming the step; the exit status is 1.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import httpx
from fastapi import FastAPI

from gateway.app import Gateway, create_app
from gateway.registry import PRODUCTION_ONLY_ENVIRONMENT, SERVICES
from services.prescriptions.settings import PrescriptionsSettings
from services.sandbox.settings import SandboxSettings
from shared.app import ServiceContext
from shared.settings import GatewaySettings

T = TypeVar("T")
Headers = dict[str, str]
Json = dict[str, Any]

WARSAW = ZoneInfo("Europe/Warsaw")
BASE_URL = "http://gateway"
FACILITY = "demo-day-clinic"
PHARMACY_A = "apteka-pod-lipami"
PHARMACY_B = "apteka-centralna"
CER_SECRET = "demo-day-cer-secret-for-the-sandbox"  # noqa: S105 - the sandbox's, signs nothing real
PROBLEM_EMAIL = "rejestracja@demo-day-clinic.example"
DEPARTMENT_CODE = "0010"
STEPS = 9


@dataclass(frozen=True)
class Person:
    name: str
    pesel: str
    email: str
    phone: str


@dataclass(frozen=True)
class Doctor:
    name: str
    npwz: str
    poz: bool


JAN = Person("Jan Kowalski", "44051401359", "jan.kowalski@example.pl", "+48600100200")
MARIA = Person("Maria Zielińska", "02070803628", "maria.zielinska@example.pl", "+48600300400")
POZ = Doctor("lek. Anna Kowalska", "5425740", poz=True)
DUTY = Doctor("lek. Piotr Nowak", "2234567", poz=True)
CARDIOLOGIST = Doctor("lek. Ewa Wiśniewska", "3123456", poz=False)
ADVIL = {
    "name": "Advil Zatoki 4 tabl.",
    "marketed_on": "2017-03-01",
    "substances": [{"substance": "Pseudoephedrinum", "mg_per_package": 120}, {"substance": "Ibuprofen"}],
}


class DemoFailed(RuntimeError):
    """A step got an answer the day does not expect."""


class DemoDaySettings(GatewaySettings, PrescriptionsSettings, SandboxSettings):
    """The gateway's settings carrying the two services' own knobs the demo turns: IKP grouping
    (a service takes its settings object as it is when it is already of its own class) and the mail
    catcher's port. A plain ``GatewaySettings(ikp_group_gap_seconds=...)`` would drop them silently."""


def demo_settings(workdir: Path) -> DemoDaySettings:
    """The embedded default on ``workdir``, whatever the environment says about brokers and URLs."""
    return DemoDaySettings(
        environment="development",
        database_url=f"sqlite+aiosqlite:///{workdir}/{{service}}.db",
        amqp_url=None,
        dev_auth=True,
        run_migrations=True,
        seed_demo_data=False,
        log_json=False,
        log_level="WARNING",
        scheduling_url=None,
        prescriptions_url=None,
        integration_url=None,
        notifications_url=None,
        pharmacy_url=None,
        reimbursement_url=None,
        sandbox_url=None,
        # Items up to 1.5 s apart are "one go"; a group is sealed 0.5 s after that (defaults 120 s + 30 s).
        ikp_group_gap_seconds=1.5,
        ikp_seal_grace_seconds=0.5,
    ).model_copy(update={"smtp_port": 0})  # the mail catcher on a free port: never a collision


# ----------------------------------------------------------------------------- masking


def masked_pesel(pesel: str) -> str:
    return f"{pesel[:6]}*****"


def short(identifier: object) -> str:
    return str(identifier)[:8]


def short_key(key: str) -> str:
    """The last six digits of a 44-digit key (never a 4-digit run that could pass for a code)."""
    return f"…{key[-6:]}"


def masked_phone(phone: str) -> str:
    return f"{phone[:6]}***{phone[-3:]}"


def redacted(text: str) -> str:
    """An upstream answer quoted in an error: no PESEL or access code in full."""
    text = re.sub(r"(?<!\d)(\d{6})\d{5}(?!\d)", r"\1*****", text)
    return re.sub(r'("access_code"\s*:\s*")\d{4}"', r'\1****"', text)


def local_time(instant: str) -> str:
    return dt.datetime.fromisoformat(instant).astimezone(WARSAW).strftime("%H:%M")


# ----------------------------------------------------------------------------- reaching into app state


def _service(gateway_app: FastAPI, name: str) -> ServiceContext:
    gateway: Gateway = gateway_app.state.gateway
    app = gateway.upstreams[name].app
    if app is None:
        raise DemoFailed(f"the {name} service is not part of this process: the demo needs the embedded default")
    ctx: ServiceContext = app.state.ctx
    return ctx


async def run_background_passes_now(gateway_app: FastAPI) -> None:
    """Run the background passes now instead of waiting for their timers: every outbox published,
    every event consumed, IKP polled and sealed, P1 and CeR offered their queues, due messages sent."""
    gateway: Gateway = gateway_app.state.gateway
    for name in SERVICES:
        await _service(gateway_app, name).relay.publish_pending()
    if gateway.bus is not None:
        await gateway.bus.drain()
    integration = _service(gateway_app, "integration").extras
    await integration["poller"].poll_all()
    await _service(gateway_app, "prescriptions").extras["sealer"].seal_due()
    await integration["forwarder"].forward_pending()
    await integration["cer_forwarder"].forward_pending()
    await _service(gateway_app, "notifications").extras["sender"].send_due()


def connect_cer_sandbox_to_this_gateway(gateway_app: FastAPI) -> None:
    """CeR's sandbox sends the facility's signed notifications to this in-process gateway app."""
    gateway: Gateway = gateway_app.state.gateway
    if gateway.sandbox is None or gateway.sandbox.app is None:
        raise DemoFailed("the sandbox is not part of this process")
    cer = gateway.sandbox.app.state.cer
    cer.transport = httpx.ASGITransport(app=gateway_app)
    cer.retry_seconds = 0.05


# ----------------------------------------------------------------------------- the day


@dataclass
class DayReport:
    """What the day did, for the summary and for the test (``access_code`` is never printed)."""

    steps_done: list[int] = field(default_factory=list)
    slots: int = 0
    bookings: dict[str, str] = field(default_factory=dict)
    package_key: str = ""
    access_code: str = ""
    realised: dict[str, str] = field(default_factory=dict)
    sale_decision: str = ""
    subsidy: str = ""
    patient_share: str = ""
    mails: list[str] = field(default_factory=list)
    sms: int = 0
    seconds: float = 0.0


class Day:
    def __init__(self, client: httpx.AsyncClient, app: FastAPI, out: Callable[[str], None]) -> None:
        self.client = client
        self.app = app
        self.out = out
        self.report = DayReport()
        self.ids: dict[str, str] = {}
        self.names: dict[str, str] = {}
        self.admin: Headers = {}
        self.desk: Headers = {}
        self.step_no = 0
        self.step_title = ""
        today = dt.datetime.now(WARSAW).date()
        self.today, self.tomorrow = today, today + dt.timedelta(days=1)

    # -- printing and calling

    def step(self, number: int, title: str) -> None:
        self.step_no, self.step_title = number, title
        self.out(f"\n{number}. {title}")

    def say(self, text: str) -> None:
        self.out(f"   - {text}")

    def detail(self, text: str) -> None:
        self.out(f"       {text}")

    async def call(
        self,
        method: str,
        path: str,
        who: Headers | None = None,
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
        expect: int = 200,
    ) -> httpx.Response:
        try:
            answer = await self.client.request(method, path, json=body, params=params, headers=who)
        except httpx.HTTPError as exc:
            raise DemoFailed(f"{method} {path} failed: {type(exc).__name__}: {exc}") from exc
        if answer.status_code != expect:
            raise DemoFailed(
                f"{method} {path} answered {answer.status_code}, expected {expect}: {redacted(answer.text[:400])}"
            )
        return answer

    async def obj(self, method: str, path: str, who: Headers | None = None, body: Any = None, **kw: Any) -> Json:
        found = (await self.call(method, path, who, body, **kw)).json()
        if not isinstance(found, dict):
            raise DemoFailed(f"{method} {path}: expected an object, got {type(found).__name__}")
        return found

    async def rows(self, path: str, who: Headers | None = None, **kw: Any) -> list[Json]:
        found = (await self.call("GET", path, who, **kw)).json()
        if not isinstance(found, list):
            raise DemoFailed(f"GET {path}: expected a list, got {type(found).__name__}")
        return found

    async def created(self, path: str, body: Json, who: Headers | None = None) -> Json:
        return await self.obj("POST", path, who or self.admin, body, expect=201)

    async def token(self, **claims: str) -> Headers:
        answer = await self.obj("POST", "/api/v1/auth/dev-token", body=claims)
        return {"Authorization": f"Bearer {answer['access_token']}"}

    def expect(self, condition: bool, what: str) -> None:
        if not condition:
            raise DemoFailed(redacted(what))

    async def until(self, what: str, check: Callable[[], Awaitable[T | None]], within: float = 15.0) -> T:
        """Run the background passes until ``check`` returns something."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            found = await check()
            if found is not None and found is not False:
                return found
            if loop.time() > deadline:
                raise DemoFailed(f"timed out after {within:.0f} s waiting for {what}")
            await run_background_passes_now(self.app)
            await asyncio.sleep(0.05)

    # -- the steps

    async def run(self) -> DayReport:
        started = time.perf_counter()
        self.admin = await self.token(sub="demo-admin", role="facility_admin", facility_id=FACILITY)
        self.desk = await self.token(sub="demo-desk", role="registrar", facility_id=FACILITY)
        for number, play in enumerate(
            (
                self.clinic_setup,
                self.desk_booking,
                self.cer_booking,
                self.ikp_order,
                self.issue_package,
                self.realise_in_two_pharmacies,
                self.psychoactive_sale,
                self.ezwm_order,
                self.messages,
            ),
            start=1,
        ):
            try:
                await play()
            except DemoFailed as exc:
                raise DemoFailed(redacted(f"step {self.step_no} ({self.step_title}): {exc}")) from exc
            except Exception as exc:  # an answer without the field it should have, a pass that broke
                what = f"{type(exc).__name__}: {exc}"
                raise DemoFailed(redacted(f"step {self.step_no} ({self.step_title}): unexpected {what}")) from exc
            self.report.steps_done.append(number)
        self.report.seconds = time.perf_counter() - started
        await self.summary()
        return self.report

    async def clinic_setup(self) -> None:
        self.step(1, "Clinic set-up")
        centre = await self.created(
            "/api/v1/scheduling/locations", {"name": "Przychodnia Centrum", "department_code": DEPARTMENT_CODE}
        )
        north = await self.created("/api/v1/scheduling/locations", {"name": "Filia Północ"})
        self.ids.update(centre=centre["id"], north=north["id"])
        self.say(
            f"locations: Przychodnia Centrum {short(centre['id'])} (department code {DEPARTMENT_CODE}), "
            f"Filia Północ {short(north['id'])}"
        )
        for role, doctor in (("poz", POZ), ("duty", DUTY), ("cardiologist", CARDIOLOGIST)):
            body = {"name": doctor.name, "npwz": doctor.npwz, "profession": "doctor", "poz": doctor.poz}
            self.ids[role] = (await self.created("/api/v1/scheduling/practitioners", body))["id"]
            self.names[self.ids[role]] = doctor.name
        self.say(f"practitioners: {POZ.name} (POZ), {DUTY.name} (POZ, duty doctor of Centrum), {CARDIOLOGIST.name}")
        await self.obj(
            "PUT",
            f"/api/v1/scheduling/locations/{centre['id']}/duty-practitioner",
            self.admin,
            {"practitioner_id": self.ids["duty"]},
        )
        work_types = {
            "visit": {"name": "Wizyta POZ", "visible_online": True},
            "rx": {"name": "Recepty (zamówienia)", "prescription_only": True},
            "cardiology": {"name": "Kardiologia", "visible_online": True, "cer_specialty": "cardiology"},
        }
        for name, body in work_types.items():
            self.ids[name] = (await self.created("/api/v1/scheduling/work-types", body))["id"]
        self.say("work types: Wizyta POZ, Recepty (zamówienia) (prescriptions only), Kardiologia (CeR: cardiology)")
        # CeR's notifications first, so that its sandbox knows where to call when the schedule arrives.
        connect_cer_sandbox_to_this_gateway(self.app)
        cer = await self.obj(
            "PUT",
            "/api/v1/integration/cer/settings",
            self.admin,
            {
                "endpoint": f"{BASE_URL}/webhooks/cer/{FACILITY}",
                "email": "cer@demo-day-clinic.example",
                "secret": CER_SECRET,
            },
        )
        self.say(f"CeR settings: notifications to {cer['endpoint']}, secret set: {cer['secret_set']}")
        contracts = await self.obj(
            "PUT", "/api/v1/integration/cer/contracts", self.admin, {"specialties": ["cardiology"]}
        )
        self.say(f"NFZ contracts in CeR specialties: {', '.join(contracts['specialties'])}")
        schedules = (
            ("poz", "centre", "visit", "08:00", "12:00", 15),
            ("duty", "centre", "rx", "12:00", "13:00", 10),
            ("duty", "north", "visit", "13:30", "16:00", 30),
            ("cardiologist", "centre", "cardiology", "14:00", "16:00", 30),
        )
        for who, where, work, start, end, minutes in schedules:
            made = await self.created(
                "/api/v1/scheduling/schedules",
                {
                    "practitioner_id": self.ids[who],
                    "location_id": self.ids[where],
                    "work_type_id": self.ids[work],
                    "date": self.tomorrow.isoformat(),
                    "start_time": start,
                    "end_time": end,
                    "visit_minutes": minutes,
                },
            )
            self.report.slots += made["slots_created"]
            cer_note = " (published to CeR)" if made["cer_published"] else ""
            self.say(
                f"schedule {self.tomorrow} {start}-{end} {work} for {self.names[self.ids[who]]}: "
                f"{made['slots_created']} slots{cer_note}"
            )
        ordering = await self.obj(
            "PUT",
            "/api/v1/prescriptions/settings",
            self.admin,
            {"mode": "demo", "activated_on": self.today.isoformat(), "problem_email": PROBLEM_EMAIL},
        )
        for doctor in (POZ, DUTY):
            await self.obj(
                "PUT", f"/api/v1/prescriptions/practitioners/{doctor.npwz}/ordering", self.admin, {"enabled": True}
            )
        self.say(
            f"prescription ordering: mode {ordering['mode']}, active {ordering['active']}, "
            f"on for {POZ.name} and {DUTY.name}"
        )
        for person in (JAN, MARIA):
            await self.obj(
                "PUT",
                f"/api/v1/notifications/patients/{person.pesel}/contact",
                self.desk,
                {"email": person.email, "phone": person.phone, "channels": ["email", "sms"]},
            )
            self.say(
                f"contact of {person.name} {masked_pesel(person.pesel)}: {person.email}, "
                f"{masked_phone(person.phone)} (e-mail + SMS)"
            )

    async def desk_booking(self) -> None:
        self.step(2, "Desk booking")
        free = await self.rows(
            "/api/v1/scheduling/slots",
            self.desk,
            params={"practitioner_id": self.ids["poz"], "work_type_id": self.ids["visit"], "status": "free"},
        )
        self.expect(bool(free), f"no free visit slot of {POZ.name}")
        booking = await self.created(
            "/api/v1/scheduling/bookings",
            {"slot_id": free[0]["id"], "patient_pesel": MARIA.pesel, "source": "desk"},
            self.desk,
        )
        self.expect(booking["status"] == "booked", f"the desk booking is {booking['status']}")
        self.report.bookings["desk"] = booking["id"]
        self.say(
            f"the desk books {MARIA.name} {masked_pesel(MARIA.pesel)} with {POZ.name}, "
            f"{self.tomorrow} {local_time(free[0]['start'])}: booking {short(booking['id'])} ({booking['source']})"
        )
        again = await self.call(
            "POST",
            "/api/v1/scheduling/bookings",
            self.desk,
            {"slot_id": free[0]["id"], "patient_pesel": JAN.pesel, "source": "desk"},
            expect=409,
        )
        self.say(f"the same slot for another patient: {again.status_code} {again.json()['title']}")

    async def cer_booking(self) -> None:
        self.step(3, "CeR booking (a patient books cardiology in CeR)")
        local = await self.rows("/api/v1/scheduling/slots", self.desk, params={"work_type_id": self.ids["cardiology"]})
        wanted = {s["id"] for s in local}

        async def published() -> list[Json] | None:
            slots = await self.rows(f"/sandbox/cer/facilities/{FACILITY}/slots")
            return slots if {s["slot_id"] for s in slots} >= wanted else None

        in_cer = await self.until("the cardiology schedule in CeR", published)
        self.say(f"CeR offers {len(in_cer)} cardiology slots of the clinic")
        slot = local[0]
        played = await self.obj(
            "POST",
            "/sandbox/cer/patients/bookings",
            body={"facility_id": FACILITY, "slot_id": slot["id"], "patient_pesel": MARIA.pesel, "channel": "ikp"},
            expect=201,
        )
        self.say(
            f"{MARIA.name} {masked_pesel(MARIA.pesel)} books {local_time(slot['start'])} on IKP: "
            f"CeR booking {short(played['cer_booking_id'])}"
        )

        async def booked_here() -> Json | None:
            bookings = await self.rows("/api/v1/scheduling/bookings", self.desk, params={"status": "booked"})
            return next((b for b in bookings if b["slot_id"] == slot["id"]), None)

        booking = await self.until("the CeR booking on the local slot", booked_here)
        deliveries = await self.rows("/sandbox/cer/deliveries", params={"facility_id": FACILITY})
        delivered = [d for d in deliveries if d["status"] == "delivered"]
        self.expect(bool(delivered), f"CeR delivered nothing: {deliveries}")
        self.say(f"CeR's signed notification reached /webhooks/cer/{FACILITY} (answer {delivered[-1]['last_status']})")
        self.expect(booking["source"] == "cer_ikp", f"the local booking's source is {booking['source']}")
        self.report.bookings["cer"] = booking["id"]
        self.say(f"local slot booked: booking {short(booking['id'])} ({booking['source']})")
        report = await self.obj("GET", "/api/v1/integration/cer/compliance", self.desk)
        cardiology = next((s for s in report["specialties"] if s["specialty"] == "cardiology"), None)
        self.expect(cardiology is not None, "no cardiology line in the compliance report")
        assert cardiology is not None
        risks = Counter(r["status"] for r in cardiology["payment_risks"])
        self.say(
            f"compliance, cardiology: {cardiology['schedules']} schedule(s), published {cardiology['published']}"
            f" (since {cardiology['first_published_on']}), unsent changes {cardiology['unsent_changes']}, "
            f"payment dates: {', '.join(f'{n} {s}' for s, n in sorted(risks.items())) or 'none'}"
        )

    async def ikp_order(self) -> None:
        self.step(4, "IKP order routed to the duty doctor")
        await run_background_passes_now(self.app)  # the integration service hears that ordering is on
        enabled = await self.obj("POST", "/api/v1/integration/ikp/enable", self.admin, {})
        self.expect(enabled["status"] in ("pending", "enabled"), f"IKP is {enabled['status']} after enabling")
        await self.obj("POST", f"/sandbox/p1/ikp/{FACILITY}/confirm")
        status = await self.obj("GET", "/api/v1/integration/ikp/status", self.admin)
        self.expect(status["status"] == "enabled", f"IKP is {status['status']} after P1 confirmed")
        self.say(f"IKP asked of P1 ({enabled['status']}), P1 confirmed: {status['status']}")
        poller = await self.obj("PUT", "/api/v1/integration/ikp/poller", self.admin, {"practitioner_npwz": POZ.npwz})
        self.expect(poller["polling"] is True, "the poller is not polling")
        self.say(f"poller: {POZ.name} at department code {poller['department_code']}, polling {poller['polling']}")
        for drug in ("Metformax 500", "Bisocard 5"):
            path = f"/api/v1/prescriptions/patients/{JAN.pesel}/account-drugs"
            await self.call("POST", path, self.desk, {"drug": drug}, expect=201)
        self.say(f"{JAN.name}'s drugs on his account: Metformax 500, Bisocard 5")
        for index, drug in enumerate(("Metformax 500", "Bisocard 5")):
            if index:
                await asyncio.sleep(0.5)  # the second item a moment later: still "one go"
            await self.obj(
                "POST",
                "/sandbox/p1/ikp/requests",
                body={
                    "facility_id": FACILITY,
                    "patient_pesel": JAN.pesel,
                    "doctor_npwz": POZ.npwz,
                    "items": [{"drug": drug, "packages": 1, "comment": "jak zwykle"}],
                },
                expect=201,
            )
        self.say(f"{JAN.name} {masked_pesel(JAN.pesel)} orders on IKP from {POZ.name}, who has no prescription slot")

        async def sealed() -> Json | None:
            found = await self.rows("/api/v1/prescriptions/requests", self.desk)
            return next((r for r in found if r["source"] == "ikp"), None)

        request = await self.until("the IKP items grouped into one request", sealed)
        self.expect(len(request["items"]) == 2, f"the IKP request has {len(request['items'])} items, not 2")
        self.expect(
            (request["routed_to"], request["assigned_npwz"]) == ("duty", DUTY.npwz),
            f"routed to {request['routed_to']} {request['assigned_npwz']}, not to the duty doctor",
        )
        self.ids["request"] = request["id"]
        self.say(
            f"request {short(request['id'])}: {len(request['items'])} items in one go, routed to the duty doctor "
            f"{DUTY.name}, slot {local_time(request['slot_start'])} tomorrow, notice(s) {request['problems']} "
            f"to {PROBLEM_EMAIL}"
        )

    async def issue_package(self) -> None:
        self.step(5, "The duty doctor issues the package")
        duty = await self.token(sub="dr-nowak", role="practitioner", facility_id=FACILITY, npwz=DUTY.npwz)
        package = await self.created(
            f"/api/v1/prescriptions/requests/{self.ids['request']}/issue",
            {
                "issuer_npwz": DUTY.npwz,
                "issuer_profession": "doctor",
                "prescriptions": [
                    {"drug": "Metformax 500", "packages": 2, "units_per_package": "30", "daily_dose_units": "1"},
                    {"drug": "Bisocard 5", "packages": 1, "units_per_package": "28", "daily_dose_units": "1"},
                ],
            },
            duty,
        )
        prescriptions = package["prescriptions"]
        self.expect(len(prescriptions) == 2, f"{len(prescriptions)} prescriptions issued, not 2")
        self.report.package_key, self.report.access_code = package["package_key"], package["access_code"]
        self.say(f"package {short_key(package['package_key'])}, code ****, {len(prescriptions)} prescriptions:")
        for p in prescriptions:
            self.detail(
                f"{short_key(p['key'])} {p['drug']} x{p['packages']}, valid {p['valid_from']}..{p['valid_until']}"
            )

        async def in_p1() -> bool:
            received = await self.rows("/sandbox/p1/received")
            return package["package_key"] in received

        await self.until("the package registered in P1", in_p1)
        self.say("registered in P1 (the integration service's queue forwarded it)")

    async def realise_in_two_pharmacies(self) -> None:
        self.step(6, "Realised in two pharmacies")
        keys = [p["key"] for p in (await self._lookup(PHARMACY_A))["prescriptions"]]
        for pharmacy, key in ((PHARMACY_A, keys[0]), (PHARMACY_B, keys[1])):
            who = await self.token(sub=f"mgr-{pharmacy}", role="pharmacist", pharmacy_id=pharmacy)
            found = await self._lookup(pharmacy, who)
            line = next(p for p in found["prescriptions"] if p["key"] == key)
            self.say(
                f"{pharmacy}: code **** + PESEL {masked_pesel(JAN.pesel)} -> {len(found['prescriptions'])} "
                f"prescriptions; {line['drug']} {line['packages_dispensable']} package(s) dispensable"
            )
            done = await self.created(
                "/api/v1/pharmacy/realizations", {"key": key, "packages": line["packages_dispensable"]}, who
            )
            self.expect(done["packages_remaining"] == 0, f"{done['packages_remaining']} packages left")
            self.say(f"{pharmacy}: realised {short_key(key)}, {done['packages_dispensed']} package(s), none left")

        async def reported() -> list[Json] | None:
            views = [await self.obj("GET", f"/sandbox/p1/prescriptions/{key}") for key in keys]
            return views if all(v["status"] == "realised" for v in views) else None

        for view in await self.until("both realisations reported to P1", reported):
            self.report.realised[view["key"]] = view["pharmacy_id"]
            self.say(f"P1: {short_key(view['key'])} {view['drug']} {view['status']} by {view['pharmacy_id']}")

    async def _lookup(self, pharmacy: str, who: Headers | None = None) -> Json:
        who = who or await self.token(sub=f"mgr-{pharmacy}", role="pharmacist", pharmacy_id=pharmacy)
        return await self.obj(
            "POST",
            "/api/v1/pharmacy/prescriptions/lookup",
            who,
            {"access_code": self.report.access_code, "pesel": JAN.pesel},
        )

    async def psychoactive_sale(self) -> None:
        self.step(7, "A psychoactive OTC sale refused")
        who = await self.token(sub=f"mgr-{PHARMACY_B}", role="pharmacist", pharmacy_id=PHARMACY_B)
        product = await self.created("/api/v1/pharmacy/products", ADVIL, who)
        self.say(f"{PHARMACY_B}: product {product['name']} (pseudoephedrine 120 mg a package)")
        policy = await self.obj("PUT", "/api/v1/pharmacy/settings", who, {"psychoactive_policy": "block"})
        self.say(f"policy: {policy['psychoactive_policy']} (refuse a sale over the limit)")

        async def check(packages: int) -> Json:
            body = {"buyer_age": 30, "lines": [{"product_id": product["id"], "packages": packages}]}
            return await self.obj("POST", "/api/v1/pharmacy/sales/check", who, body)

        six = await check(6)
        self.expect(six["decision"] == "allow", f"6 packages: {six['decision']}")
        seven = await check(7)
        self.expect(seven["decision"] == "block", f"7 packages: {seven['decision']}, not block")
        self.report.sale_decision = seven["decision"]
        total = seven["substances"][0]
        self.say(
            f"6 packages: {six['decision']}; 7 packages: {seven['decision']} "
            f"({total['total_mg']:g} mg of {total['max_mg_per_sale']:g} mg allowed)"
        )
        self.say(f"reason: {seven['reasons'][0]['pl']}")

    async def ezwm_order(self) -> None:
        self.step(8, "eZWM order realised and settled")
        doctor = await self.token(sub="dr-kowalska", role="practitioner", facility_id=FACILITY, npwz=POZ.npwz)
        month = self.today.strftime("%Y-%m")
        order = await self.created(
            "/api/v1/reimbursement/orders",
            {
                "patient_pesel": JAN.pesel,
                "code": "P.100",
                "group": "MCH1",
                "pieces_per_month": 90,
                "months": 3,
                "start_month": month,
                "entitlements": [],
                "channel": "teleconsultation",
            },
            doctor,
        )
        self.expect(order["verification"] == "positive", f"eZWM verification {order['verification']}")
        self.say(
            f"{POZ.name} issues order {order['number']} ({order['group_code']}, 90 a month for 3 months) for "
            f"{masked_pesel(JAN.pesel)} in a teleconsultation: eZWM verification {order['verification']}"
        )
        pharmacist = await self.token(sub=f"mgr-{PHARMACY_A}", role="pharmacist", pharmacy_id=PHARMACY_A)
        realised = await self.created(
            f"/api/v1/reimbursement/orders/{order['number']}/realizations",
            {
                "months": [month],
                "pieces": 90,
                "unit_price": "1.50",
                "realized_on": self.today.isoformat(),
                "pesel": JAN.pesel,
            },
            pharmacist,
        )
        self.report.subsidy, self.report.patient_share = realised["subsidy"], realised["patient_share"]
        self.say(
            f"{PHARMACY_A} realises {month}: 90 pieces at 1.50 = {realised['total']} PLN, "
            f"subsidy {realised['subsidy']}, patient pays {realised['patient_share']} "
            f"(eZWM: {realised['ezwm_status']})"
        )
        settled = await self.obj(
            "GET", "/api/v1/reimbursement/settlements", pharmacist, params={"month": month, "format": "json"}
        )
        totals = settled["totals"]
        self.expect(totals["subsidy"] == realised["subsidy"], f"settlement subsidy {totals['subsidy']}")
        csv = await self.call(
            "GET", "/api/v1/reimbursement/settlements", pharmacist, params={"month": month, "format": "csv"}
        )
        lines = csv.text.strip().splitlines()
        self.expect(lines[-1].startswith("TOTAL"), "the settlement CSV has no TOTAL line")
        self.say(
            f"settlement {month} of {PHARMACY_A}: {totals['realisations']} realisation(s), subsidy "
            f"{totals['subsidy']} PLN, patient share {totals['patient_share']} PLN; CSV {len(lines)} lines"
        )

    async def messages(self) -> None:
        self.step(9, "Messages sent")

        async def all_sent() -> list[Json] | None:
            found = await self.rows("/api/v1/notifications/messages", self.admin, params={"limit": "500"})
            return found if found and all(m["status"] not in ("queued", "failed") for m in found) else None

        await run_background_passes_now(self.app)  # the last events of the day reach the notifications service
        sent = await self.until("every message sent", all_sent)
        by_status = Counter((m["channel"], m["status"]) for m in sent)
        self.say("notifications: " + ", ".join(f"{n} {c} {s}" for (c, s), n in sorted(by_status.items())))
        mails = await self.rows("/sandbox/mail/messages")
        sms = await self.rows("/sandbox/sms/messages")
        # Maria: two booking confirmations; the desk: the notice of step 4; Jan: the prescriptions and
        # the eZWM order number. A booking made for a prescription request is not announced.
        self.expect(
            (len(mails), len(sms)) == (5, 4), f"{len(mails)} e-mails and {len(sms)} SMS caught, expected 5 and 4"
        )
        self.report.mails = [m["subject"] or "" for m in mails]
        self.report.sms = len(sms)
        self.say(f"mail catcher: {len(mails)} e-mails")
        for mail in mails:
            attached = f" [{len(mail['attachments'])} attachment(s)]" if mail["attachments"] else ""
            self.detail(f"to {', '.join(mail['to'])}: {mail['subject']}{attached}")
        per_phone = Counter(masked_phone(m["to"]) for m in sms)
        self.say(f"SMS provider: {len(sms)} SMS (" + ", ".join(f"{n} to {p}" for p, n in per_phone.items()) + ")")

    async def summary(self) -> None:
        ready = await self.obj("GET", "/readyz")
        self.expect(ready["status"] == "ready", f"the gateway is {ready['status']} at the end of the day: {ready}")
        r = self.report
        self.out(
            f"\nSummary: {len(r.steps_done)}/{STEPS} steps in {r.seconds:.1f} s. {r.slots} slots; bookings from the "
            f"desk and CeR; an IKP order to the duty doctor; package {short_key(r.package_key)} (code ****) realised "
            f"in {len(set(r.realised.values()))} pharmacies; psychoactive sale: {r.sale_decision}; eZWM subsidy "
            f"{r.subsidy} PLN, patient {r.patient_share} PLN; {len(r.mails)} e-mails and {r.sms} SMS sent. "
            f"Gateway readiness: {ready['status']}."
        )


# ----------------------------------------------------------------------------- running it


@asynccontextmanager
async def embedded_gateway(workdir: Path) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(demo_settings(workdir))
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        yield app, client


def refuse_real_systems() -> None:
    """The day plays the sandbox: a variable pointing a service at a real national system or provider
    would send the demo's patients there."""
    set_here = sorted({n for names in PRODUCTION_ONLY_ENVIRONMENT.values() for n in names if os.environ.get(n)})
    if set_here:
        raise DemoFailed(f"unset {', '.join(set_here)}: the demo day runs on the sandbox only")


async def demo_day(out: Callable[[str], None] | None = None) -> DayReport:
    """The whole day on a fresh temporary directory; raises :class:`DemoFailed` on a wrong answer."""

    def printed(text: str) -> None:
        print(text, flush=True)

    say = out or printed
    refuse_real_systems()
    with tempfile.TemporaryDirectory(prefix="ehealth-demo-") as tmp:
        say(f"E-health suite: a clinic-and-pharmacy day (embedded default: SQLite in {tmp}, in-process bus)")
        async with embedded_gateway(Path(tmp)) as (app, client):
            return await Day(client, app, say).run()


def main() -> None:
    try:
        asyncio.run(demo_day())
    except DemoFailed as exc:
        print(f"\nThe demo day failed: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
