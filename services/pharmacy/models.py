"""Pharmacy tables: the psychoactive limit rules, each pharmacy's product cards and its settings."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from services.pharmacy.domain import DEFAULT_POLICY, Policy
from shared.db import TYPE_ANNOTATION_MAP, new_metadata, utcnow
from shared.outbox import IdempotencyMixin, InboxMixin, OutboxMixin

# The limit check's policies, spelt out in a CHECK constraint of the settings table.
POLICIES_SQL = ", ".join(f"'{policy}'" for policy in Policy)
Milligrams = sa.Numeric(12, 3)


class Base(DeclarativeBase):
    metadata = new_metadata()
    type_annotation_map = TYPE_ANNOTATION_MAP


def _id() -> Mapped[uuid.UUID]:
    return mapped_column(primary_key=True, default=uuid.uuid4)


class PsychoactiveLimit(Base):
    """Maximum amount per sale, by substance and the day it took effect: law as data, not code.

    Shared by every pharmacy (it is the national rule); seeded by the first migration.
    """

    __tablename__ = "psychoactive_limits"
    __table_args__ = (sa.CheckConstraint("max_mg_per_sale > 0", name="max_positive"),)
    substance: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    valid_from: Mapped[dt.date] = mapped_column(primary_key=True)
    max_mg_per_sale: Mapped[Decimal] = mapped_column(Milligrams)
    legal_basis: Mapped[str | None] = mapped_column(sa.String(300))


class Product(Base):
    """A product card (karta towaru) of one pharmacy."""

    __tablename__ = "products"
    __table_args__ = (
        sa.UniqueConstraint("pharmacy_id", "name", "marketed_on", name="uq_products_pharmacy_name_marketed_on"),
    )
    id: Mapped[uuid.UUID] = _id()
    pharmacy_id: Mapped[str] = mapped_column(sa.String(64))
    name: Mapped[str] = mapped_column(sa.String(200))
    marketed_on: Mapped[dt.date]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    substances: Mapped[list[ProductSubstance]] = relationship(
        lazy="selectin", cascade="all, delete-orphan", order_by="ProductSubstance.position"
    )


class ProductSubstance(Base):
    """One row of the card's "SUBSTANCJE PSYCHOAKTYWNE" window.

    ``multiplier`` (mnożnik) and ``max_mg_per_sale`` (maksymalna ilość) are as computed when the card
    was written, for display; the sale check recomputes from ``mg_per_package`` and the rule in force
    on the sale day, so a change of law never leaves a stale number deciding a sale.
    """

    __tablename__ = "product_substances"
    __table_args__ = (
        sa.UniqueConstraint("product_id", "substance", name="uq_product_substances_product_substance"),
        sa.CheckConstraint("mg_per_package IS NULL OR mg_per_package > 0", name="mg_positive"),
    )
    id: Mapped[uuid.UUID] = _id()
    product_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("products.id", ondelete="CASCADE"))
    position: Mapped[int]
    substance: Mapped[str] = mapped_column(sa.String(100))  # canonical key, e.g. "pseudoephedrine"
    mg_per_package: Mapped[Decimal | None] = mapped_column(Milligrams)  # ilość w produkcie; None: not filled in
    max_mg_per_sale: Mapped[Decimal | None] = mapped_column(Milligrams)
    multiplier: Mapped[Decimal | None] = mapped_column(sa.Numeric(16, 5))


class PharmacySettings(Base):
    __tablename__ = "pharmacy_settings"
    __table_args__ = (sa.CheckConstraint(f"psychoactive_policy IN ({POLICIES_SQL})", name="psychoactive_policy_known"),)
    pharmacy_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    psychoactive_policy: Mapped[str] = mapped_column(sa.String(20), default=DEFAULT_POLICY.value)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SaleRefusal(Base):
    """A sale the pharmacist refused (art. 8 ust. 3: suspected non-medical use, or a risk to health),
    kept with the pharmacy's sale records: what was asked for, why, by whom, when."""

    __tablename__ = "sale_refusals"
    __table_args__ = (sa.Index("ix_sale_refusals_pharmacy_at", "pharmacy_id", "refused_at"),)
    id: Mapped[uuid.UUID] = _id()
    pharmacy_id: Mapped[str] = mapped_column(sa.String(64))
    pharmacist: Mapped[str] = mapped_column(sa.String(200))
    # [{"product_id": "...", "packages": n}]: the products of the pharmacy's catalogue at the time.
    lines: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON)
    reason: Mapped[str] = mapped_column(sa.String(1000))
    buyer_age: Mapped[int | None]
    on_date: Mapped[dt.date]
    refused_at: Mapped[dt.datetime]


class PrescriptionHold(Base):
    """What this suite's pharmacies dispensed of one e-prescription, locked for each realisation.

    Every realisation takes this row FOR UPDATE and the CHECK below bounds what it may record, so
    two pharmacists at the same moment can never dispense more than prescribed together: the
    second waits, sees the first one's packages and the pharmacy that holds the rest.
    """

    __tablename__ = "prescription_holds"
    __table_args__ = (
        sa.CheckConstraint("packages_dispensed >= 0 AND reduced_packages >= 0", name="counts_positive"),
        sa.CheckConstraint("packages_dispensed + reduced_packages <= packages_prescribed", name="never_over"),
        sa.CheckConstraint("packages_dispensed = 0 OR pharmacy_id IS NOT NULL", name="held_by_a_pharmacy"),
    )
    key: Mapped[str] = mapped_column(sa.String(44), primary_key=True)
    package_key: Mapped[str] = mapped_column(sa.String(44))
    drug: Mapped[str] = mapped_column(sa.String(200))
    kind: Mapped[str] = mapped_column(sa.String(24))
    issued_on: Mapped[dt.date]
    valid_from: Mapped[dt.date]
    valid_until: Mapped[dt.date]
    packages_prescribed: Mapped[int]
    units_per_package: Mapped[Decimal]
    daily_dose_units: Mapped[Decimal]
    packages_dispensed: Mapped[int] = mapped_column(default=0)
    reduced_packages: Mapped[int] = mapped_column(default=0)
    reduction_applied: Mapped[bool] = mapped_column(default=False)
    pharmacy_id: Mapped[str | None] = mapped_column(sa.String(64))
    # The patient as a keyed digest (code_limit.pesel_digest), to check an outage printout against:
    # known once the package was opened by access code + PESEL (or realised on a printout); else None.
    patient_digest: Mapped[str | None] = mapped_column(sa.String(64))
    cancelled: Mapped[bool] = mapped_column(default=False)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class PrescriptionRealisation(Base):
    __tablename__ = "prescription_realisations"
    id: Mapped[uuid.UUID] = _id()
    key: Mapped[str] = mapped_column(sa.ForeignKey("prescription_holds.key"), index=True)
    pharmacy_id: Mapped[str] = mapped_column(sa.String(64))
    pharmacist: Mapped[str] = mapped_column(sa.String(200))
    packages: Mapped[int]
    realised_on: Mapped[dt.date]
    outage: Mapped[bool]
    # A substitute is recorded with what was prescribed (the hold's drug).
    dispensed_product: Mapped[str | None] = mapped_column(sa.String(200))
    # An outage realisation: the identity document the patient showed (the printout's data is the hold's).
    identity_document: Mapped[str | None] = mapped_column(sa.String(20))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class P1Status(Base):
    """Since when P1 has been failing, as this service saw it: the first failed call, until one succeeds.

    One row (id 1), shared by every process of the service: an outage realisation may be dated back
    to this day, never further (DOMAIN.md 4).
    """

    __tablename__ = "p1_status"
    __table_args__ = (sa.CheckConstraint("id = 1", name="one_row"),)
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    down_since: Mapped[dt.datetime | None]


class CodeAttempt(Base):
    """One access-code try, reserved before P1 is asked (see ``code_limit``): deleted again when the
    code was right or the try was refused, kept (until it leaves the window) when the code was wrong.

    The PESEL is kept only as a keyed digest: the row exists to be counted, never to be read back.
    """

    __tablename__ = "code_attempts"
    __table_args__ = (
        sa.Index("ix_code_attempts_pharmacy_at", "pharmacy_id", "at"),
        sa.Index("ix_code_attempts_pesel_at", "pesel_digest", "at"),
    )
    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    pharmacy_id: Mapped[str] = mapped_column(sa.String(64))
    pesel_digest: Mapped[str] = mapped_column(sa.String(64))
    at: Mapped[dt.datetime]


class Outbox(Base, OutboxMixin):
    pass


class Inbox(Base, InboxMixin):
    pass


class IdempotencyKey(Base, IdempotencyMixin):
    pass
