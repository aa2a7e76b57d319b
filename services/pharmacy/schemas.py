"""The pharmacy API's language (requests and answers) for psychoactive OTC sales."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.pharmacy.catalogue_csv import (
    EARLIEST_MARKETED_ON,
    LATEST_MARKETED_ON,
    MAX_MG,
    MAX_NAME,
    MAX_SUBSTANCE,
    MAX_SUBSTANCES_PER_PRODUCT,
    MG_PLACES,
)
from services.pharmacy.domain import Decision, Policy
from shared.identifiers import Pesel

Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME)]
SubstanceName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_SUBSTANCE,
        description="English, Latin (Pseudoephedrinum, Codeinum, Dextromethorphanum), Polish or salt name; "
        "stored under one key such as `pseudoephedrine`",
        examples=["Pseudoephedrinum"],
    ),
]
Milligrams = Annotated[
    Decimal,
    Field(
        gt=0,
        le=MAX_MG,
        decimal_places=MG_PLACES,
        description="Total amount of the substance in ONE package, in mg (4 tablets × 30 mg = 120)",
        examples=[120],
    ),
]
Day = Annotated[dt.date, Field(ge=EARLIEST_MARKETED_ON, le=LATEST_MARKETED_ON)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# ----------------------------------------------------------------------------- products


class SubstanceIn(_In):
    substance: SubstanceName
    mg_per_package: Milligrams | None = Field(
        default=None, description="null: not filled in (the sale check then cannot check this substance)"
    )


class ProductIn(_In):
    name: Name
    marketed_on: Day = Field(description="Day the product was marketed; before 2017-01-01 special rules apply")
    substances: list[SubstanceIn] = Field(min_length=1, max_length=MAX_SUBSTANCES_PER_PRODUCT)


class ProductSubstanceOut(_Out):
    substance: str
    mg_per_package: float | None
    max_mg_per_sale: float | None = Field(description="The limit when the card was written; null: not limited")
    multiplier: float | None = Field(
        description="mg_per_package / max_mg_per_sale rounded to 5 places, for display (checks are exact)",
        examples=[0.16667],
    )


class ProductOut(_Out):
    id: uuid.UUID
    name: str
    marketed_on: dt.date
    substances: list[ProductSubstanceOut]


class ImportRejection(BaseModel):
    line: int = Field(description="Line number in the file; the header is line 1")
    error: str


class ImportOut(BaseModel):
    imported: int = Field(description="Lines imported")
    products: int = Field(description="Products created from them")
    rejected: list[ImportRejection]


# ----------------------------------------------------------------------------- settings


class SettingsIn(_In):
    psychoactive_policy: Policy = Field(
        description="ask: warn, the pharmacist confirms; block: refuse over the limit; off: no check; "
        "warn_from_card: only warn about products whose substance amount is not filled in"
    )


class SettingsOut(BaseModel):
    psychoactive_policy: Policy


# ----------------------------------------------------------------------------- sale check


class SaleLineIn(_In):
    product_id: uuid.UUID
    packages: int = Field(ge=1, le=1000)


class SaleCheckIn(_In):
    buyer_age: int = Field(ge=0, le=130)
    lines: list[SaleLineIn] = Field(min_length=1, max_length=100)
    confirmed: bool = Field(
        default=False,
        description="The pharmacist's 'yes' to the warnings of an earlier check: a `warn` becomes `allow`. "
        "It never overrides a `block` (buyer under 18, or over the limit under the `block` policy).",
    )
    on_date: Day | None = Field(default=None, description="Sale day (default: today in Warsaw); the limits in force")


class RefusalIn(_In):
    lines: list[SaleLineIn] = Field(min_length=1, max_length=100, description="what the buyer asked for")
    reason: str = Field(
        min_length=1,
        max_length=1000,
        description="why the pharmacist refused, e.g. suspected non-medical use (art. 8 ust. 3)",
        examples=["podejrzenie użycia w celach pozamedycznych: trzecia wizyta dziś po ten sam lek"],
    )
    buyer_age: int | None = Field(default=None, ge=0, le=130)


class RefusalOut(BaseModel):
    id: uuid.UUID
    lines: list[SaleLineIn]
    reason: str
    buyer_age: int | None
    pharmacist: str
    refused_at: dt.datetime
    on_date: dt.date = Field(description="the day of the refusal (Europe/Warsaw)")


class ReasonOut(BaseModel):
    key: str = Field(
        description="under_18, limit_exceeded, pre_2017_one_package, pre_2017_sale_one_package (a sale before 2017: "
        "one package of each product with pseudoephedrine, dextromethorphan or codeine), substance_data_missing, "
        "confirmed_by_pharmacist"
    )
    pl: str
    en: str
    substance: str | None = None
    product_id: uuid.UUID | None = None


class SubstanceTotalOut(BaseModel):
    substance: str
    total_multiplier: float = Field(description="Sum of multiplier × packages, exact then rounded to 5 places")
    total_mg: float
    max_mg_per_sale: float


class SaleCheckOut(BaseModel):
    decision: Decision
    reasons: list[ReasonOut]
    substances: list[SubstanceTotalOut]
    policy: Policy
    on_date: dt.date


# ----------------------------------------------------------------------------- e-prescription realisation

VisitDay = Annotated[dt.date, Field(ge=dt.date(2000, 1, 1), le=dt.date(2100, 12, 31))]
PrescriptionKey = Annotated[str, Field(pattern=r"^[0-9]{44}$", description="the 44-digit key scanned or typed")]
IdentityDocument = Literal["id_card", "passport", "mobywatel", "residence_card", "driving_licence"]
AccessCode = Annotated[str, Field(pattern=r"^[0-9]{4}$", description="the package's 4-digit access code")]


class LookupIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    key: PrescriptionKey | None = None
    access_code: AccessCode | None = None
    pesel: Pesel | None = None

    @model_validator(mode="after")
    def _one_way(self) -> LookupIn:
        by_code = self.access_code is not None or self.pesel is not None
        if self.key is not None and by_code:
            raise ValueError("key: give either the key or the access code with the PESEL, not both")
        if self.key is None and (self.access_code is None or self.pesel is None):
            missing = "pesel" if self.access_code is not None else "access_code"
            raise ValueError(f"{missing}: the access code is used together with the PESEL (or give the key)")
        return self


class DispensableOut(BaseModel):
    key: str
    drug: str
    kind: str
    packages_prescribed: int
    packages_dispensed: int
    packages_dispensable: int = Field(
        description="what may be dispensed here today: left after the reduction, capped at 180 days a visit"
    )
    valid_from: dt.date
    valid_until: dt.date
    reduction_days: int = Field(description="days of use the 365-day reduction counts today (0: none)")
    reduced_packages: int
    held_by_this_pharmacy: bool
    reason_code: str | None = Field(
        description="why nothing is dispensable here today (null when something is): cancelled, "
        "realised_elsewhere, not_yet_valid, expired, fully_dispensed, used_up_by_reduction, visit_cap_reached",
        examples=["realised_elsewhere"],
    )
    reason: str | None = Field(description="the same, as a sentence for the pharmacist")


class PackageLookupOut(BaseModel):
    package_key: str
    prescriptions: list[DispensableOut]


class Printout(BaseModel):
    """The prescription as the patient's printout (or its e-mail PDF, or the copy in mObywatel) shows it:
    required on an outage realisation, and checked against what P1 showed this pharmacy of it before."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    package_key: PrescriptionKey
    patient_pesel: Pesel = Field(description="the patient's PESEL on the printout (and on the identity document)")
    drug: Annotated[str, Field(min_length=1, max_length=200)]
    kind: Annotated[str, Field(pattern=r"^(standard|extended|antibiotic|narcotic_psychotropic|immunological)$")]
    issued_on: VisitDay
    valid_from: VisitDay | None = Field(default=None, description="the realise-from date, when the printout has one")
    packages: int = Field(ge=1, le=999)
    units_per_package: Annotated[Decimal, Field(gt=0, max_digits=12, decimal_places=4)]
    daily_dose_units: Annotated[Decimal, Field(gt=0, max_digits=12, decimal_places=4)]


class RealisationIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    key: PrescriptionKey
    packages: int = Field(ge=1, le=999)
    on_date: VisitDay | None = Field(
        default=None,
        description="only on an outage realisation: the day it was dispensed while P1 was down (from the day "
        "P1 went down through today); otherwise the realisation is dated today by the server",
    )
    outage_statement: bool = Field(
        default=False,
        description="P1 is down: the patient signed the statement that the prescription was not realised before; "
        "with the printout's data (`printout`) and the identity document shown (`identity_document`)",
    )
    identity_document: IdentityDocument | None = Field(
        default=None, description="on an outage realisation: the identity document the patient showed"
    )
    substitute: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        default=None, description="the equivalent product dispensed instead of the prescribed one"
    )
    printout: Printout | None = Field(default=None, description="on an outage realisation: the printout's data")

    @model_validator(mode="after")
    def _outage_basis(self) -> RealisationIn:
        # DOMAIN.md 4: during an outage, never on a bare key (or the SMS code + PESEL) alone.
        if self.outage_statement and self.printout is None:
            raise ValueError("printout: an outage realisation needs the printout's data (package, patient, drug, ...)")
        if self.outage_statement and self.identity_document is None:
            raise ValueError("identity_document: an outage realisation needs the identity document the patient showed")
        if not self.outage_statement and (self.printout is not None or self.identity_document is not None):
            raise ValueError("outage_statement: the printout and identity document are for an outage realisation")
        return self


class RealisationOut(BaseModel):
    key: str
    packages_dispensed: int
    packages_remaining: int
    reduced_packages: int = Field(description="packages the 365-day reduction removed (at the first realisation)")
    outage: bool
