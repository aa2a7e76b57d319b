"""Reimbursement tables. The pharmacy lock and "each month once" are enforced by the database.

- ``orders.locked_by`` is taken by a conditional UPDATE (see ``service.take_order``), never by a
  read-then-write in Python; ending an order is the same kind of UPDATE.
- ``order_months`` has one row per supplied month with the primary key (order, month): a second
  realisation of a month fails on it, however the requests interleave.

Money is stored as whole grosze (BigInteger): exact on PostgreSQL and SQLite alike, where a
NUMERIC column would pass through a float.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import TYPE_ANNOTATION_MAP, new_metadata, utcnow
from shared.outbox import IdempotencyMixin, InboxMixin, OutboxMixin

POSITIVE = "positive"
NEGATIVE = "negative"

REGISTERED = "registered"
PENDING_REGISTRATION = "pending_registration"  # eZWM was down: recorded here, registered when it answers
REGISTRATION_REJECTED = "registration_rejected"  # eZWM refused it: a person must look at it
EZWM_STATUSES = (REGISTERED, PENDING_REGISTRATION, REGISTRATION_REJECTED)

MonthColumn = sa.String(7)  # "YYYY-MM": sorts and compares as the calendar does
Grosze = sa.BigInteger()


class Base(DeclarativeBase):
    metadata = new_metadata()
    type_annotation_map = TYPE_ANNOTATION_MAP


class Order(Base):
    """An order (zlecenie) as eZWM verified and numbered it, with its realisation state."""

    __tablename__ = "orders"
    __table_args__ = (
        sa.CheckConstraint("verification IN ('positive', 'negative')", name="verification_known"),
        sa.CheckConstraint("months BETWEEN 1 AND 12", name="months_range"),
        sa.CheckConstraint("pieces_per_month >= 1", name="pieces_positive"),
        # A short-form order is realisable in any pharmacy: it never holds a lock.
        sa.CheckConstraint("NOT short_form OR locked_by IS NULL", name="short_form_unlocked"),
        # Only a short-form order continues another, and an original is continued once: two
        # continuations of one original would be two lock-free orders for the same months.
        sa.CheckConstraint("short_form OR continues_order IS NULL", name="continuation_is_short_form"),
        sa.Index("uq_orders_continues_order", "continues_order", unique=True),
    )
    number: Mapped[str] = mapped_column(sa.String(40), primary_key=True)  # numer ewidencyjny from eZWM
    facility_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    issued_by: Mapped[str] = mapped_column(sa.String(200))
    patient_pesel: Mapped[str] = mapped_column(sa.String(11), index=True)
    patient_birth_date: Mapped[dt.date]
    code: Mapped[str] = mapped_column(sa.String(10))
    product_group: Mapped[str] = mapped_column(sa.String(10))
    pieces_per_month: Mapped[int]
    months: Mapped[int]
    start_month: Mapped[str] = mapped_column(MonthColumn)
    end_month: Mapped[str | None] = mapped_column(MonthColumn, default=None)
    # [{code, valid_from, valid_until}]: the doctor's, replaced by the facts a pharmacy records.
    entitlements: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON(), default=list)
    channel: Mapped[str] = mapped_column(sa.String(20))
    short_form: Mapped[bool] = mapped_column(default=False)
    continues_order: Mapped[str | None] = mapped_column(sa.String(40), default=None)
    verification: Mapped[str] = mapped_column(sa.String(10))
    reasons: Mapped[list[str]] = mapped_column(sa.JSON(), default=list)
    locked_by: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    locked_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    # The latest month supplied, kept on the row so that ending the order is checked against it in
    # the same conditional UPDATE that a concurrent realisation must also pass through.
    realized_through: Mapped[str | None] = mapped_column(MonthColumn, default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class Realisation(Base):
    """One realisation (realizacja) of an order by a pharmacy, priced by the rules of its date."""

    __tablename__ = "realisations"
    __table_args__ = (
        sa.CheckConstraint(
            "ezwm_status IN ('registered', 'pending_registration', 'registration_rejected')", name="ezwm_status_known"
        ),
        sa.CheckConstraint("pieces >= 1", name="pieces_positive"),
        sa.Index("ix_realisations_pharmacy_realized_on", "pharmacy_id", "realized_on"),
        # The registration retry only ever looks for pending rows: keep that index small.
        sa.Index(
            "ix_realisations_pending",
            "created_at",
            postgresql_where=sa.text("ezwm_status = 'pending_registration'"),
            sqlite_where=sa.text("ezwm_status = 'pending_registration'"),
        ),
    )
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    order_number: Mapped[str] = mapped_column(sa.ForeignKey("orders.number"), index=True)
    pharmacy_id: Mapped[str] = mapped_column(sa.String(64))
    realised_by: Mapped[str] = mapped_column(sa.String(200))
    realized_on: Mapped[dt.date]
    months: Mapped[list[str]] = mapped_column(sa.JSON())
    pieces: Mapped[int]
    unit_price_grosze: Mapped[int] = mapped_column(Grosze)
    per_piece_limit_grosze: Mapped[int | None] = mapped_column(Grosze, default=None)
    value_limit_grosze: Mapped[int] = mapped_column(Grosze)
    rate_percent: Mapped[int]
    subsidy_grosze: Mapped[int] = mapped_column(Grosze)
    patient_share_grosze: Mapped[int] = mapped_column(Grosze)
    rules_valid_from: Mapped[dt.date]
    entitlements: Mapped[list[str]] = mapped_column(sa.JSON(), default=list)  # in force on realized_on
    entitlements_changed: Mapped[bool] = mapped_column(default=False)
    patient_age: Mapped[int]
    continuation: Mapped[bool] = mapped_column(default=False)
    # A paper realisation registered later under its paper date, with the patient's signed statement.
    offline: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    patient_statement: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    channel: Mapped[str] = mapped_column(sa.String(20))
    group_code: Mapped[str] = mapped_column(sa.String(20))
    ezwm_status: Mapped[str] = mapped_column(sa.String(30), default=PENDING_REGISTRATION)
    ezwm_registration_number: Mapped[str | None] = mapped_column(sa.String(60), default=None)
    registration_attempts: Mapped[int] = mapped_column(default=0)
    last_registration_error: Mapped[str | None] = mapped_column(sa.String(1000), default=None)
    registered_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class OrderMonth(Base):
    """A month of an order already supplied: the primary key is the "at most once" rule."""

    __tablename__ = "order_months"
    order_number: Mapped[str] = mapped_column(sa.ForeignKey("orders.number"), primary_key=True)
    month: Mapped[str] = mapped_column(MonthColumn, primary_key=True)
    realisation_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("realisations.id"), index=True)


class MonthlyLimitAmounts(Base):
    """Amounts of an older rule set with monthly value limits, loaded by an operator.

    The source describes the pre-2023 rules but gives no amounts; they are data, not code.
    """

    __tablename__ = "monthly_limit_amounts"
    valid_from: Mapped[dt.date] = mapped_column(primary_key=True)
    standard_grosze: Mapped[int]
    higher_grosze: Mapped[int]
    loaded_by: Mapped[str] = mapped_column(sa.String(200))
    loaded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Outbox(Base, OutboxMixin):
    pass


class Inbox(Base, InboxMixin):
    pass


class IdempotencyKey(Base, IdempotencyMixin):
    pass
