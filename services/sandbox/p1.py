"""P1 / gabinet.gov.pl simulator: the e-health platform, as the suite's integration service sees it.

Behaviour, so tests and demos can steer it:

- IKP integration of a facility: ``POST /ikp/enable`` leaves it ``pending`` until
  ``p1_ikp_confirm_seconds`` have passed (read from the injectable clock, so a test moves time
  instead of sleeping); ``POST /ikp/{facility_id}/confirm`` confirms at once.
- Patient play: ``POST /ikp/requests`` is what a patient does on IKP (only for a facility whose
  integration is enabled), optionally addressed to one of the facility's departments (its
  ``department_code``, which every polled item then carries); ``GET /ikp/requests`` is the
  facility's poll, resumed by ``after``: every item gets a strictly increasing ``sequence`` on submit.
- E-prescriptions: ``POST /prescriptions`` registers a package, idempotent by ``package_key``;
  ``POST /packages/lookup`` finds it by access code and PESEL together; realisations are idempotent
  by ``realisation_id``; the first pharmacy to realise a prescription holds it; a prescription with a
  realisation can no longer be cancelled.
- ``POST /down`` makes every other endpoint answer 503 until ``POST /up``: an outage.

State lives in memory, per app instance: a restart forgets everything, like a fresh test system.
"""

from __future__ import annotations

import bisect
import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Literal, Self

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from services.sandbox.outage import available, outage_controls
from shared.identifiers import Pesel
from shared.problems import PROBLEM_RESPONSES, Conflict, NotFound

Identifier = Annotated[str, Field(min_length=1, max_length=64)]
# Not validated as an NPWZ: a patient may address a number the facility does not know.
LooseNpwz = Annotated[str, Field(min_length=1, max_length=8)]
PrescriptionKey = Annotated[str, Field(pattern=r"^[0-9]{44}$")]
AccessCode = Annotated[str, Field(pattern=r"^[0-9]{4}$")]
Units = Annotated[Decimal, Field(gt=0, max_digits=10, decimal_places=3)]
IkpStatusText = Literal["off", "pending", "enabled"]
PrescriptionStatus = Literal["issued", "partly_realised", "realised", "cancelled"]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# ----------------------------------------------------------------------------- schemas


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class IkpEnableIn(_In):
    facility_id: Identifier
    department_code: str | None = Field(default=None, min_length=1, max_length=4)


class IkpFacilityIn(_In):
    facility_id: Identifier


class IkpStatusOut(BaseModel):
    facility_id: str
    status: IkpStatusText
    requested_at: dt.datetime | None
    enabled_at: dt.datetime | None


class IkpItemIn(_In):
    drug: str = Field(min_length=1, max_length=200)
    packages: int = Field(ge=1, le=99)
    comment: str | None = Field(default=None, max_length=1000)
    submitted_at: AwareDatetime | None = Field(default=None, description="omitted: the moment P1 receives it")


class IkpRequestsIn(_In):
    facility_id: Identifier
    patient_pesel: Pesel
    doctor_npwz: LooseNpwz
    department_code: str | None = Field(
        default=None,
        pattern=r"^\d{4}$",
        description="the facility's department (VII część kodu resortowego) the order is addressed to",
    )
    items: list[IkpItemIn] = Field(min_length=1, max_length=20)


class IkpItemOut(BaseModel):
    id: str
    sequence: int
    facility_id: str
    patient_pesel: str
    doctor_npwz: str
    department_code: str | None = None
    drug: str
    packages: int
    comment: str | None
    submitted_at: dt.datetime


class IkpSubmittedOut(BaseModel):
    items: list[IkpItemOut]


class IkpBatchOut(BaseModel):
    items: list[IkpItemOut]
    last_sequence: int = Field(description="the `after` to send next: the last item's sequence, or `after` if none")


class PrescriptionLineIn(_In):
    key: PrescriptionKey
    drug: str = Field(min_length=1, max_length=200)
    packages: int = Field(ge=1, le=999)
    units_per_package: Units
    daily_dose_units: Units
    kind: str = Field(min_length=1, max_length=32)
    valid_from: dt.date
    valid_until: dt.date

    @model_validator(mode="after")
    def _valid_period(self) -> Self:
        if self.valid_until < self.valid_from:
            raise ValueError("valid_until: must not be before valid_from")
        return self


class PackageIn(_In):
    package_key: PrescriptionKey
    access_code: AccessCode
    patient_pesel: Pesel
    facility_id: Identifier
    issuer_npwz: LooseNpwz
    issued_on: dt.date
    prescriptions: list[PrescriptionLineIn] = Field(min_length=1, max_length=5)

    @model_validator(mode="after")
    def _distinct_keys(self) -> Self:
        if len({line.key for line in self.prescriptions}) != len(self.prescriptions):
            raise ValueError("prescriptions: a key appears twice in the package")
        return self


class RegisteredOut(BaseModel):
    package_key: str
    status: Literal["registered"] = "registered"


class RealisationIn(_In):
    realisation_id: uuid.UUID
    pharmacy_id: Identifier
    packages: int = Field(ge=1, le=999)
    realised_on: dt.date
    outage: bool = Field(default=False, description="dispensed while P1 was down, reported afterwards")


class RealisationOut(BaseModel):
    realisation_id: uuid.UUID
    pharmacy_id: str
    packages: int
    realised_on: dt.date
    outage: bool


class PrescriptionOut(BaseModel):
    key: str
    package_key: str
    drug: str
    packages: int
    units_per_package: Decimal
    daily_dose_units: Decimal
    kind: str
    valid_from: dt.date
    valid_until: dt.date
    issued_on: dt.date
    issuer_npwz: str
    facility_id: str
    status: PrescriptionStatus
    packages_dispensed: int
    pharmacy_id: str | None = Field(description="the pharmacy that realised it first, which then holds it")
    realisations: list[RealisationOut]


class LookupIn(_In):
    access_code: AccessCode
    pesel: Pesel


class PackageOut(BaseModel):
    package_key: str
    prescriptions: list[PrescriptionOut]


# ----------------------------------------------------------------------------- state


@dataclass
class IkpIntegration:
    requested_at: dt.datetime
    department_code: str | None
    confirmed_at: dt.datetime | None = None


@dataclass
class SimulatedPrescription:
    line: PrescriptionLineIn
    package: PackageIn
    cancelled: bool = False
    realisations: list[RealisationIn] = field(default_factory=list)

    @property
    def packages_dispensed(self) -> int:
        return sum(r.packages for r in self.realisations)

    @property
    def pharmacy_id(self) -> str | None:
        return self.realisations[0].pharmacy_id if self.realisations else None

    @property
    def status(self) -> PrescriptionStatus:
        if self.cancelled:
            return "cancelled"
        if self.packages_dispensed >= self.line.packages:
            return "realised"
        return "partly_realised" if self.realisations else "issued"


@dataclass
class P1State:
    confirm_after: dt.timedelta = dt.timedelta(seconds=2)
    now: Callable[[], dt.datetime] = _utcnow
    up: bool = True
    ikp: dict[str, IkpIntegration] = field(default_factory=dict)
    # Items per facility, each list in sequence order because sequences only grow.
    ikp_items: dict[str, list[IkpItemOut]] = field(default_factory=dict)
    last_sequence: int = 0
    packages: dict[str, PackageIn] = field(default_factory=dict)
    by_code: dict[tuple[str, str], str] = field(default_factory=dict)
    prescriptions: dict[str, SimulatedPrescription] = field(default_factory=dict)
    realisations: dict[uuid.UUID, str] = field(default_factory=dict)

    def ikp_status(self, facility_id: str) -> IkpStatusOut:
        integration = self.ikp.get(facility_id)
        if integration is None:
            return IkpStatusOut(facility_id=facility_id, status="off", requested_at=None, enabled_at=None)
        enabled_at = integration.confirmed_at
        if enabled_at is None and self.now() >= integration.requested_at + self.confirm_after:
            enabled_at = integration.requested_at + self.confirm_after
        return IkpStatusOut(
            facility_id=facility_id,
            status="enabled" if enabled_at is not None else "pending",
            requested_at=integration.requested_at,
            enabled_at=enabled_at,
        )

    def next_sequence(self) -> int:
        self.last_sequence += 1
        return self.last_sequence


def p1_state(request: Request) -> P1State:
    state: P1State = request.app.state.p1
    return state


StateDep = Annotated[P1State, Depends(p1_state)]


# ----------------------------------------------------------------------------- rules


def _prescription(state: P1State, key: str) -> SimulatedPrescription:
    prescription = state.prescriptions.get(key)
    if prescription is None:
        raise NotFound(f"P1 knows no prescription {key}")
    return prescription


def _view(prescription: SimulatedPrescription) -> PrescriptionOut:
    line, package = prescription.line, prescription.package
    return PrescriptionOut(
        key=line.key,
        package_key=package.package_key,
        drug=line.drug,
        packages=line.packages,
        units_per_package=line.units_per_package,
        daily_dose_units=line.daily_dose_units,
        kind=line.kind,
        valid_from=line.valid_from,
        valid_until=line.valid_until,
        issued_on=package.issued_on,
        issuer_npwz=package.issuer_npwz,
        facility_id=package.facility_id,
        status=prescription.status,
        packages_dispensed=prescription.packages_dispensed,
        pharmacy_id=prescription.pharmacy_id,
        realisations=[RealisationOut(**r.model_dump()) for r in prescription.realisations],
    )


def _check_realisation(prescription: SimulatedPrescription, data: RealisationIn) -> None:
    if prescription.cancelled:
        raise Conflict("the prescription is cancelled", code="prescription-cancelled")
    if prescription.pharmacy_id not in (None, data.pharmacy_id):
        raise Conflict("another pharmacy has already realised part of this prescription", code="realised-elsewhere")
    remaining = prescription.line.packages - prescription.packages_dispensed
    if data.packages > remaining:
        raise Conflict(
            f"{data.packages} packages exceed the {remaining} that remain to be dispensed", code="packages-exceeded"
        )


def _check_new_package(state: P1State, body: PackageIn) -> None:
    taken = [line.key for line in body.prescriptions if line.key in state.prescriptions]
    if taken:
        raise Conflict(
            f"prescription keys already registered in another package: {', '.join(taken)}",
            code="prescription-key-taken",
        )
    # The code and PESEL together must name one package, or a pharmacy could dispense the wrong one.
    if (body.access_code, body.patient_pesel) in state.by_code:
        raise Conflict("this access code is already in use for another package of the patient", code="code-taken")


# ----------------------------------------------------------------------------- routes

_control = outage_controls(p1_state, "other endpoints answer 503")
_system = APIRouter(dependencies=[Depends(available(p1_state, "P1", "p1-unavailable"))])


@_system.post(
    "/ikp/enable",
    status_code=202,
    response_model=IkpStatusOut,
    summary="Ask for a facility's IKP integration; P1 confirms it after a while",
    responses={200: {"description": "already enabled (or confirmed at once): nothing changes"}},
)
async def ikp_enable(body: IkpEnableIn, state: StateDep, response: Response) -> IkpStatusOut:
    if body.facility_id not in state.ikp:
        state.ikp[body.facility_id] = IkpIntegration(requested_at=state.now(), department_code=body.department_code)
    current = state.ikp_status(body.facility_id)
    if current.status == "enabled":
        response.status_code = 200
    return current


@_system.post("/ikp/disable", response_model=IkpStatusOut, summary="End a facility's IKP integration")
async def ikp_disable(body: IkpFacilityIn, state: StateDep) -> IkpStatusOut:
    state.ikp.pop(body.facility_id, None)
    return state.ikp_status(body.facility_id)


@_system.get("/ikp/status/{facility_id}", response_model=IkpStatusOut, summary="Unknown facilities are off")
async def ikp_status(facility_id: str, state: StateDep) -> IkpStatusOut:
    return state.ikp_status(facility_id)


@_system.post(
    "/ikp/{facility_id}/confirm", response_model=IkpStatusOut, summary="Confirm a pending integration now (demos)"
)
async def ikp_confirm(facility_id: str, state: StateDep) -> IkpStatusOut:
    integration = state.ikp.get(facility_id)
    if integration is None:
        raise Conflict("the facility has not asked for IKP integration", code="ikp-off")
    if state.ikp_status(facility_id).status == "pending":
        integration.confirmed_at = state.now()
    return state.ikp_status(facility_id)


@_system.post(
    "/ikp/requests",
    status_code=201,
    response_model=IkpSubmittedOut,
    summary="Patient play: order drugs on IKP from a facility",
)
async def ikp_submit(body: IkpRequestsIn, state: StateDep) -> IkpSubmittedOut:
    if state.ikp_status(body.facility_id).status != "enabled":
        raise Conflict("the facility has no enabled IKP integration", code="ikp-not-enabled")
    received_at = state.now()
    items = [
        IkpItemOut(
            id=str(uuid.uuid4()),
            sequence=state.next_sequence(),
            facility_id=body.facility_id,
            patient_pesel=body.patient_pesel,
            doctor_npwz=body.doctor_npwz,
            department_code=body.department_code,
            drug=item.drug,
            packages=item.packages,
            comment=item.comment,
            submitted_at=item.submitted_at or received_at,
        )
        for item in body.items
    ]
    state.ikp_items.setdefault(body.facility_id, []).extend(items)
    return IkpSubmittedOut(items=items)


@_system.get("/ikp/requests", response_model=IkpBatchOut, summary="The facility's poll, resumed after a sequence")
async def ikp_poll(
    state: StateDep,
    facility_id: Annotated[str, Query(min_length=1, max_length=64)],
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> IkpBatchOut:
    queue = state.ikp_items.get(facility_id, [])
    start = bisect.bisect_right(queue, after, key=lambda item: item.sequence)
    items = queue[start : start + limit]
    return IkpBatchOut(items=items, last_sequence=items[-1].sequence if items else after)


@_system.post(
    "/prescriptions",
    status_code=201,
    response_model=RegisteredOut,
    summary="Register an issued package of e-prescriptions",
    responses={200: {"description": "the same package again: the first answer"}},
)
async def register_package(body: PackageIn, state: StateDep, response: Response) -> RegisteredOut:
    known = state.packages.get(body.package_key)
    if known is not None:
        if known != body:
            raise Conflict("another package is registered under this package_key", code="package-key-reused")
        response.status_code = 200
        return RegisteredOut(package_key=body.package_key)
    _check_new_package(state, body)
    state.packages[body.package_key] = body
    state.by_code[(body.access_code, body.patient_pesel)] = body.package_key
    for line in body.prescriptions:
        state.prescriptions[line.key] = SimulatedPrescription(line=line, package=body)
    return RegisteredOut(package_key=body.package_key)


@_system.get("/received", response_model=list[str], summary="Keys of the packages registered so far, in order")
async def received(state: StateDep) -> list[str]:
    return list(state.packages)


@_system.get("/prescriptions/{key}", response_model=PrescriptionOut)
async def get_prescription(key: str, state: StateDep) -> PrescriptionOut:
    return _view(_prescription(state, key))


@_system.post(
    "/packages/lookup",
    response_model=PackageOut,
    summary="A pharmacy finds a package by access code and PESEL (POST: neither belongs in a URL)",
)
async def lookup_package(body: LookupIn, state: StateDep) -> PackageOut:
    package_key = state.by_code.get((body.access_code, body.pesel))
    if package_key is None:
        # One answer whichever half is wrong, so the code cannot be guessed PESEL by PESEL.
        raise NotFound("no package matches this access code and PESEL")
    package = state.packages[package_key]
    return PackageOut(
        package_key=package_key,
        prescriptions=[_view(state.prescriptions[line.key]) for line in package.prescriptions],
    )


@_system.post(
    "/prescriptions/{key}/realisations",
    status_code=201,
    response_model=PrescriptionOut,
    summary="Record a (partial) realisation",
    responses={200: {"description": "the same realisation_id again: nothing added"}},
)
async def record_realisation(key: str, body: RealisationIn, state: StateDep, response: Response) -> PrescriptionOut:
    prescription = _prescription(state, key)
    earlier = state.realisations.get(body.realisation_id)
    if earlier is not None:
        if earlier != key:
            raise Conflict("this realisation_id is recorded for another prescription", code="realisation-id-reused")
        response.status_code = 200
        return _view(prescription)
    _check_realisation(prescription, body)
    prescription.realisations.append(body)
    state.realisations[body.realisation_id] = key
    return _view(prescription)


@_system.post("/prescriptions/{key}/cancel", response_model=PrescriptionOut, summary="The issuer cancels it")
async def cancel_prescription(key: str, state: StateDep) -> PrescriptionOut:
    prescription = _prescription(state, key)
    if prescription.realisations:  # a cancelled one never has any: realising it is refused
        raise Conflict("a prescription with a realisation cannot be cancelled", code="prescription-realised")
    prescription.cancelled = True
    return _view(prescription)


router = APIRouter(prefix="/sandbox/p1", tags=["sandbox: P1 / gabinet.gov.pl"], responses=PROBLEM_RESPONSES)
router.include_router(_control)
router.include_router(_system)
