"""P1 adapter: a small typed HTTP client for P1 / gabinet.gov.pl (IKP integration and e-prescriptions).

It speaks to the sandbox's P1 router or to the real platform, chosen by base URL alone (the P1 root,
e.g. ``http://sandbox:8190/sandbox/p1``). Every failure ends as one of these typed errors, so callers
decide by kind, never by parsing messages:

- ``P1Unavailable``: no usable answer (timeout, connection refused, 5xx). Retrying later is right;
  changes meanwhile wait in the integration service's queue for P1.
- ``P1Refused``: P1 understood and said no (4xx with its reason). Retrying the same call is wrong.
  ``P1NotFound`` is the 404 kind of it: P1 knows no such prescription or package.
- ``P1BadAnswer``: an answer that is not what the contract says (not JSON, missing fields, odd status).

Patient play (submitting IKP items) belongs to the sandbox alone and has no method here.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from itertools import pairwise
from typing import Literal, Self

from pydantic import Field, model_validator

from shared.http_client import DEFAULT_TIMEOUT_SECONDS as DEFAULT_TIMEOUT_SECONDS
from shared.http_client import ErrorKinds, HttpClientError, JsonAnswer, JsonClient, JsonRequest, segment


class P1Error(HttpClientError):
    """Any failure to get a valid answer from P1."""


class P1Unavailable(P1Error):
    """P1 did not answer in time, could not be reached, or failed on its side (5xx)."""


class P1Refused(P1Error):
    """P1 refused the request (4xx); ``message`` carries its reason."""


class P1NotFound(P1Refused):
    """P1 knows no such thing (404)."""


class P1BadAnswer(P1Error):
    """P1 answered something the contract does not allow (not JSON, wrong shape, odd status)."""


# ----------------------------------------------------------------------------- the wire format


class IkpStatus(JsonAnswer):
    facility_id: str
    status: Literal["off", "pending", "enabled"]
    requested_at: dt.datetime | None = None
    enabled_at: dt.datetime | None = None


class IkpRequestItem(JsonAnswer):
    """One drug a patient ordered on IKP; ``sequence`` is P1's queue position, the poll's cursor."""

    id: str = Field(min_length=1, max_length=64)
    sequence: int = Field(ge=1)
    facility_id: str
    patient_pesel: str = Field(repr=False)
    doctor_npwz: str
    drug: str
    packages: int = Field(ge=1)
    comment: str | None = None
    submitted_at: dt.datetime
    # The facility's department ("VII część kodu resortowego") the patient addressed the order to.
    department_code: str | None = Field(default=None, max_length=20)


class IkpBatch(JsonAnswer):
    items: list[IkpRequestItem]
    last_sequence: int = Field(ge=0)

    @model_validator(mode="after")
    def _a_usable_cursor(self) -> Self:
        # The poller stores last_sequence as its cursor: one that skips or repeats items loses orders.
        sequences = [item.sequence for item in self.items]
        if any(later <= earlier for earlier, later in pairwise(sequences)):
            raise ValueError("items are not in strictly increasing sequence")
        if sequences and self.last_sequence != sequences[-1]:
            raise ValueError("last_sequence is not the last item's sequence")
        return self


class PrescriptionToRegister(JsonRequest):
    key: str
    drug: str
    packages: int
    units_per_package: Decimal
    daily_dose_units: Decimal
    kind: str
    valid_from: dt.date
    valid_until: dt.date


class PackageRegistration(JsonRequest):
    """An issued package; P1 registers it idempotently by ``package_key``."""

    package_key: str
    access_code: str = Field(repr=False)
    patient_pesel: str = Field(repr=False)
    facility_id: str
    issuer_npwz: str
    issued_on: dt.date
    prescriptions: list[PrescriptionToRegister]


class RegisteredPackage(JsonAnswer):
    package_key: str = Field(min_length=1)
    status: Literal["registered"]


class RealisationReport(JsonRequest):
    """A pharmacy's (partial) realisation; ``realisation_id`` makes recording it idempotent."""

    realisation_id: uuid.UUID
    pharmacy_id: str
    packages: int
    realised_on: dt.date
    outage: bool = False


class P1Realisation(JsonAnswer):
    realisation_id: uuid.UUID
    pharmacy_id: str
    packages: int
    realised_on: dt.date
    outage: bool = False


class P1Prescription(JsonAnswer):
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
    status: Literal["issued", "partly_realised", "realised", "cancelled"]
    packages_dispensed: int = Field(ge=0)
    pharmacy_id: str | None = None
    realisations: list[P1Realisation] = Field(default_factory=list)


class P1Package(JsonAnswer):
    package_key: str
    prescriptions: list[P1Prescription] = Field(min_length=1)


# ----------------------------------------------------------------------------- the client


class P1Client(JsonClient):
    """``P1Client(base_url)`` for the network; add ``transport=httpx.ASGITransport(app=...)``
    to reach an in-process app (the embedded sandbox) through exactly the same code.
    """

    system = "P1"
    errors = ErrorKinds(unavailable=P1Unavailable, refused=P1Refused, not_found=P1NotFound, bad_answer=P1BadAnswer)
    # P1 answers 200 unless a call creates something; those calls name the statuses they accept.
    ok_statuses = (200,)

    # --- IKP

    async def ikp_enable(self, facility_id: str, department_code: str | None = None) -> IkpStatus:
        """Ask for the integration: ``pending`` until P1 confirms it, ``enabled`` if it already is."""
        body = {"facility_id": facility_id, "department_code": department_code}
        return await self._call("POST", "/ikp/enable", IkpStatus, json=body, expected=(200, 202))

    async def ikp_disable(self, facility_id: str) -> IkpStatus:
        return await self._call("POST", "/ikp/disable", IkpStatus, json={"facility_id": facility_id})

    async def ikp_status(self, facility_id: str) -> IkpStatus:
        return await self._call("GET", f"/ikp/status/{segment(facility_id)}", IkpStatus)

    async def poll_ikp_requests(self, facility_id: str, after: int, limit: int = 100) -> IkpBatch:
        """The items after the cursor ``after``; store the batch's ``last_sequence`` as the next one."""
        params: dict[str, str | int] = {"facility_id": facility_id, "after": after, "limit": limit}
        batch = await self._call("GET", "/ikp/requests", IkpBatch, params=params)
        if batch.last_sequence < after or (batch.items and batch.items[0].sequence <= after):
            raise P1BadAnswer(f"P1's poll after {after} answered items or a cursor from before it")
        if len(batch.items) > limit:
            raise P1BadAnswer(f"P1 sent {len(batch.items)} items when asked for at most {limit}")
        # Another facility's item would put its patient's order in the wrong clinic.
        if any(item.facility_id != facility_id for item in batch.items):
            raise P1BadAnswer("P1's poll answered items of another facility")
        return batch

    # --- e-prescriptions

    async def register_package(self, package: PackageRegistration) -> RegisteredPackage:
        return await self._call(
            "POST",
            "/prescriptions",
            RegisteredPackage,
            json=package,
            expected=(200, 201),
            idempotency_key=package.package_key,
        )

    async def prescription(self, key: str) -> P1Prescription:
        return await self._call("GET", f"/prescriptions/{segment(key)}", P1Prescription)

    async def lookup_package(self, access_code: str, pesel: str) -> P1Package:
        """By access code and PESEL together; a wrong one of the two is a ``P1NotFound`` either way."""
        body = {"access_code": access_code, "pesel": pesel}
        return await self._call("POST", "/packages/lookup", P1Package, json=body)

    async def record_realisation(self, key: str, realisation: RealisationReport) -> P1Prescription:
        return await self._call(
            "POST",
            f"/prescriptions/{segment(key)}/realisations",
            P1Prescription,
            json=realisation,
            expected=(200, 201),
            idempotency_key=str(realisation.realisation_id),
        )

    async def cancel_prescription(self, key: str) -> P1Prescription:
        return await self._call("POST", f"/prescriptions/{segment(key)}/cancel", P1Prescription)
