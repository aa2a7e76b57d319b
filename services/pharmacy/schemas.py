"""The pharmacy API's language (requests and answers) for psychoactive OTC sales."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

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


class ReasonOut(BaseModel):
    key: str = Field(
        description="under_18, limit_exceeded, pre_2017_one_package, substance_data_missing, confirmed_by_pharmacist"
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
