"""Services (MSP) persistence and services: rate cards, contracts, counts,
milestones, time entries and their approval (retainer draw-down), and the
contract billing run (one invoice per client per run, through the billing
invoice code).

Postings made here that are not an invoice's (retainer draw-down, expiry to
breakage) name the contract as their document (`contract:<id>`) and carry the
customer, the period and, for a draw-down, the time entry.
"""

from __future__ import annotations

import csv
import html
import io
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from billing.errors import DocumentState, InvalidBillingRequest
from billing.msp import (
    BILLABLE_KINDS,
    ContractTerms,
    RateSources,
    RetainerClose,
    Utilization,
    close_retainer_period,
    draw_down,
    entry_amount,
    hours_text,
    is_after_hours,
    minutes_value,
    overlaps,
    parse_terms,
    prorated_units,
    ratio,
    resolve_rate,
    round_minutes,
    utilization,
    working_days,
)
from billing.periods import (
    BillingCycle,
    Interval,
    Period,
    billing_periods,
    next_period_end,
    period_containing,
)
from billing.postgres import msp_expenses, msp_progress
from billing.postgres.customers import get_customer
from billing.postgres.ids import parse_id
from billing.postgres.invoices import Invoice, LineSpec, create_draft, finalize_invoice
from billing.postgres.posting import post_entry
from billing.proration import fraction_of
from ledger.entries import JournalEntry, Posting, build_entry
from ledger.errors import NotFound
from ledger.money import Money, check_currency, price_text
from ledger.postgres.books import book_window

PREPAID_HOURS = "Liabilities:Prepaid-Hours"
SERVICES = "Income:Services"
BREAKAGE = "Income:Breakage"
UNBILLED = "Assets:Receivable:Unbilled"


def contract_doc(contract_id: object) -> str:
    return f"contract:{contract_id}"


# --- rate cards ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RateCard:
    id: uuid.UUID
    name: str
    currency: str
    customer_id: uuid.UUID | None
    rates: dict[str, Decimal]
    default_rate: Decimal | None


def _rate(value: object, name: str) -> Decimal:
    try:
        rate = Decimal(str(value))
    except ArithmeticError:
        rate = Decimal(-1)
    if isinstance(value, bool) or not rate.is_finite() or rate < 0:
        raise InvalidBillingRequest(f"{name} must be a non-negative decimal string", field=name)
    return rate


def create_rate_card(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    name: str,
    currency: str,
    rates: Mapping[str, str],
    default_rate: str | None = None,
    customer_ref: str | None = None,
) -> RateCard:
    """The book's rate card, or a client's override card when `customer_ref` is given."""
    if not name.strip():
        raise InvalidBillingRequest("name must not be empty", field="name")
    currency = check_currency(currency)
    parsed = {str(k): _rate(v, f"rates.{k}") for k, v in rates.items()}
    default = _rate(default_rate, "default_rate") if default_rate is not None else None
    if not parsed and default is None:
        raise InvalidBillingRequest("a rate card needs rates or a default_rate", field="rates")
    customer_id = get_customer(conn, book_id, customer_ref).id if customer_ref else None
    card = RateCard(uuid.uuid4(), name.strip(), currency, customer_id, parsed, default)
    conn.execute(
        "insert into rate_cards (book_id, id, name, currency, customer_id, rates, default_rate)"
        " values (%s, %s, %s, %s, %s, %s, %s)",
        (
            book_id,
            card.id,
            card.name,
            currency,
            customer_id,
            Jsonb({k: str(v) for k, v in parsed.items()}),
            default,
        ),
    )
    return card


def _latest_card(
    conn: psycopg.Connection, book_id: uuid.UUID, currency: str, customer_id: uuid.UUID | None
) -> tuple[dict[str, Decimal], Decimal | None]:
    row = conn.execute(
        "select rates, default_rate from rate_cards where book_id = %s and currency = %s"
        " and customer_id is not distinct from %s order by created_at desc, id limit 1",
        (book_id, currency, customer_id),
    ).fetchone()
    if row is None:
        return {}, None
    return {k: Decimal(v) for k, v in row[0].items()}, row[1]


# --- contracts -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Contract:
    id: uuid.UUID
    customer_id: uuid.UUID
    type: str
    currency: str
    start_date: date
    end_date: date | None
    interval: str
    status: str
    terms: ContractTerms
    raw_terms: dict[str, Any]
    milestones: tuple[dict[str, Any], ...] = field(default=())
    counts: tuple[tuple[date, int, str], ...] = field(default=())  # (from, quantity, kind)

    def counts_of(self, kind: str) -> list[tuple[date, int]]:
        return [(day, quantity) for day, quantity, k in self.counts if k == kind]

    def cycle(self) -> BillingCycle:
        return BillingCycle(self.start_date, self.start_date, Interval.MONTH)

    def period_of(self, day: date) -> Period:
        return period_containing(self.cycle(), day)

    def cycle_end_after(self, start: date) -> date:
        return next_period_end(self.start_date, start, Interval.MONTH)

    def open_on(self, day: date) -> bool:
        return (
            self.status == "active"
            and day >= self.start_date
            and (self.end_date is None or day < self.end_date)
        )


TERM_FIELDS = (
    "hourly_rate",
    "rates",
    "rounding",
    "after_hours_multiplier",
    "business_hours",
    "cap",
    "included_hours",
    "overage_rate",
    "rollover",
    "rollover_max_hours",
    "monthly_fee",
    "unit_price",
    "unit_prices",
    "proration",
    "milestones",
    "fee",
)


def create_contract(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    customer_ref: str,
    kind: str,
    start_date: date,
    raw_terms: Mapping[str, Any],
    *,
    currency: str | None = None,
    end_date: date | None = None,
    interval: str = "month",
) -> Contract:
    customer = get_customer(conn, book_id, customer_ref)
    currency = check_currency(currency or customer.currency)
    if currency != customer.currency:
        raise InvalidBillingRequest(
            f"customer bills in {customer.currency}, not {currency}", field="currency"
        )
    if interval != "month":
        raise InvalidBillingRequest("interval must be month", field="interval")
    if end_date is not None and end_date <= start_date:
        raise InvalidBillingRequest("end_date must be after start_date", field="end_date")
    window = book_window(conn, book_id)
    window.check_optional("start_date", start_date)
    terms_in = {k: raw_terms[k] for k in TERM_FIELDS if raw_terms.get(k) is not None}
    terms = parse_terms(kind, terms_in)
    contract_id = uuid.uuid4()
    conn.execute(
        "insert into contracts (book_id, id, customer_id, type, currency, start_date, end_date,"
        " interval, terms) values (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            book_id,
            contract_id,
            customer.id,
            kind,
            currency,
            start_date,
            end_date,
            interval,
            Jsonb(terms_in),
        ),
    )
    if terms.milestones:
        with conn.cursor() as cur:
            cur.executemany(
                "insert into contract_milestones (book_id, contract_id, name, amount)"
                " values (%s, %s, %s, %s)",
                [(book_id, contract_id, m.name, m.amount) for m in terms.milestones],
            )
    return get_contract(conn, book_id, str(contract_id))


def get_contract(
    conn: psycopg.Connection, book_id: uuid.UUID, ref: str, *, lock: bool = False
) -> Contract:
    contract_id = parse_id(ref, "contract")
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "select * from contracts where book_id = %s and id = %s"
            + (" for update" if lock else ""),
            (book_id, contract_id),
        ).fetchone()
        if row is None:
            raise NotFound(f"contract {ref!r} does not exist in this book", contract=ref)
        milestones = cur.execute(
            "select name, amount, completed_on, invoice_id from contract_milestones"
            " where book_id = %s and contract_id = %s order by name",
            (book_id, contract_id),
        ).fetchall()
    counts = conn.execute(
        "select date, quantity, kind from contract_counts where book_id = %s"
        " and contract_id = %s order by kind, date",
        (book_id, contract_id),
    ).fetchall()
    return Contract(
        id=row["id"],
        customer_id=row["customer_id"],
        type=row["type"],
        currency=row["currency"],
        start_date=row["start_date"],
        end_date=row["end_date"],
        interval=row["interval"],
        status=row["status"],
        terms=parse_terms(row["type"], row["terms"]),
        raw_terms=dict(row["terms"]),
        milestones=tuple(milestones),
        counts=tuple((r[0], int(r[1]), r[2]) for r in counts),
    )


def list_contracts(
    conn: psycopg.Connection, book_id: uuid.UUID, customer_ref: str | None = None
) -> list[Contract]:
    customer_id = get_customer(conn, book_id, customer_ref).id if customer_ref else None
    rows = conn.execute(
        "select id from contracts where book_id = %s and (%s::uuid is null or customer_id = %s)"
        " order by created_at, id",
        (book_id, customer_id, customer_id),
    ).fetchall()
    return [get_contract(conn, book_id, str(r[0])) for r in rows]


def close_contract(conn: psycopg.Connection, book_id: uuid.UUID, ref: str) -> Contract:
    contract = get_contract(conn, book_id, ref, lock=True)
    conn.execute(
        "update contracts set status = 'closed' where book_id = %s and id = %s",
        (book_id, contract.id),
    )
    return get_contract(conn, book_id, ref)


def record_count(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    ref: str,
    day: date,
    quantity: int,
    kind: str = "device",
) -> Contract:
    """A device or user quantity from `day` on (a later push for the same day and
    kind replaces it); the contract must price that kind."""
    contract = get_contract(conn, book_id, ref, lock=True)
    if contract.type != "managed_services":
        raise InvalidBillingRequest("counts are for managed_services contracts", field="contract")
    if kind not in contract.terms.prices_by_kind:
        priced = ", ".join(contract.terms.prices_by_kind)
        raise InvalidBillingRequest(
            f"this contract prices {priced}, not {kind!r}: counts of that kind bill nothing",
            field="kind",
        )
    if isinstance(quantity, bool) or quantity < 0:
        raise InvalidBillingRequest("quantity must be a whole number ≥ 0", field="quantity")
    if not contract.open_on(day):
        raise DocumentState(f"contract {contract.id} is not in force on {day}")
    conn.execute(
        "insert into contract_counts (book_id, contract_id, kind, date, quantity)"
        " values (%s, %s, %s, %s, %s) on conflict (book_id, contract_id, kind, date)"
        " do update set quantity = excluded.quantity",
        (book_id, contract.id, kind, day, quantity),
    )
    return get_contract(conn, book_id, ref)


def complete_milestone(
    conn: psycopg.Connection, book_id: uuid.UUID, ref: str, name: str, on: date
) -> Contract:
    """Marks a milestone complete: its revenue is earned now, as a contract asset
    (Unbilled / Income:Services); the next contract billing run invoices it
    against Unbilled (ACCOUNTING.md: milestones bill to AR against Unbilled)."""
    contract = get_contract(conn, book_id, ref, lock=True)
    row = conn.execute(
        "update contract_milestones set completed_on = %s where book_id = %s"
        " and contract_id = %s and name = %s and completed_on is null returning amount",
        (on, book_id, contract.id, name),
    ).fetchone()
    if row is None:
        if not any(m["name"] == name for m in contract.milestones):
            raise NotFound(f"contract {ref} has no milestone {name!r}", milestone=name)
        raise DocumentState(f"milestone {name!r} is already complete")
    value = Money(row[0], contract.currency).round_to_minor()
    if not value.is_zero():
        dims = {"milestone": name, "via": "milestone"}
        customer, doc = str(contract.customer_id), contract_doc(contract.id)
        post_entry(
            conn,
            book_id,
            build_entry(
                on,
                f"Milestone completed: {name}",
                [
                    Posting(UNBILLED, value, customer, doc, dims),
                    Posting(SERVICES, -value, customer, doc, dims),
                ],
                metadata={"kind": "milestone_completed", "contract": str(contract.id)},
                idempotency_key=f"contract:{contract.id}:milestone:{name}",
            ),
        )
    return get_contract(conn, book_id, ref)


# --- time entries --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimeEntrySpec:
    person: str
    contract: str
    date: date
    role: str
    minutes: int | None = None
    start: str | None = None  # "HH:MM"
    end: str | None = None
    billable: str = "billable"
    notes: str = ""
    ticket: str | None = None
    project: str | None = None
    after_hours: bool = False
    external_id: str | None = None
    adjusts: str | None = None  # the approved entry this one corrects (minutes: ± change)


@dataclass(frozen=True, slots=True)
class TimeEntry:
    id: uuid.UUID
    contract_id: uuid.UUID
    customer_id: uuid.UUID
    person: str
    date: date
    start_minute: int | None
    end_minute: int | None
    minutes: int
    rounded_minutes: int
    role: str
    billable: str
    after_hours: bool
    notes: str
    ticket: str | None
    rate: Decimal
    rate_source: str
    amount: Decimal
    status: str
    drawn_minutes: int
    overage_minutes: int
    written_down: Decimal
    accrued_amount: Decimal
    invoice_id: uuid.UUID | None
    invoice_line: int | None
    external_id: str | None
    adjusts: uuid.UUID | None
    project: str | None


def _clock(text: str, name: str) -> int:
    hh, sep, mm = text.partition(":")
    if not sep or not hh.isdigit() or not mm.isdigit() or int(hh) > 24 or int(mm) > 59:
        raise InvalidBillingRequest(f"{name} must be HH:MM", field=name)
    minute = int(hh) * 60 + int(mm)
    if minute > 1440:
        raise InvalidBillingRequest(f"{name} must be HH:MM within the day", field=name)
    return minute


def _entry_minutes(spec: TimeEntrySpec) -> tuple[int, int | None, int | None]:
    start = _clock(spec.start, "start") if spec.start else None
    end = _clock(spec.end, "end") if spec.end else None
    if (start is None) != (end is None):
        raise InvalidBillingRequest("give both start and end, or neither", field="end")
    if start is not None and end is not None:
        if end <= start:
            raise InvalidBillingRequest("end must be after start", field="end")
        if spec.minutes is not None and spec.minutes != end - start:
            raise InvalidBillingRequest("minutes disagrees with start and end", field="minutes")
        return end - start, start, end
    if spec.minutes is None:
        raise InvalidBillingRequest("give minutes, or start and end", field="minutes")
    if isinstance(spec.minutes, bool) or spec.minutes < 0:
        raise InvalidBillingRequest("minutes cannot be negative", field="minutes")
    if spec.minutes > 1440:
        raise InvalidBillingRequest("minutes cannot exceed a day (1440)", field="minutes")
    return spec.minutes, None, None


def rate_sources(conn: psycopg.Connection, book_id: uuid.UUID, contract: Contract) -> RateSources:
    client_roles, client_default = _latest_card(
        conn, book_id, contract.currency, contract.customer_id
    )
    book_roles, book_default = _latest_card(conn, book_id, contract.currency, None)
    return RateSources(
        contract_roles=contract.terms.rates,
        contract_rate=contract.terms.hourly_rate,
        client_roles=client_roles,
        client_default=client_default,
        book_roles=book_roles,
        book_default=book_default,
    )


def create_time_entry(
    conn: psycopg.Connection, book_id: uuid.UUID, spec: TimeEntrySpec
) -> TimeEntry:
    """A draft entry, rounded and rated now (raw minutes kept).

    Overlaps are refused: an entry whose clock times cross another entry of the
    same person on the same day (any contract), or minutes that would take the
    person's day past 24 hours. A person cannot bill one hour twice.
    """
    if spec.adjusts is not None:
        return _adjusting_entry(conn, book_id, spec)
    if not spec.person.strip():
        raise InvalidBillingRequest("person must not be empty", field="person")
    if spec.billable not in BILLABLE_KINDS:
        raise InvalidBillingRequest(
            f"billable must be one of {', '.join(BILLABLE_KINDS)}", field="billable"
        )
    if not spec.role.strip():
        raise InvalidBillingRequest("role must not be empty", field="role")
    raw, start, end = _entry_minutes(spec)
    contract = get_contract(conn, book_id, spec.contract)
    if not contract.open_on(spec.date):
        raise DocumentState(
            f"contract {contract.id} is {contract.status} and runs from {contract.start_date}"
            f" to {contract.end_date or 'open end'}: no time can be entered on {spec.date}",
            contract=str(contract.id),
        )
    book_window(conn, book_id).check_optional("date", spec.date)
    # Serialize a person's entries (overlap check, then insert) on an advisory lock.
    conn.execute(
        "select pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"{book_id}:{spec.person}",)
    )
    same_day = conn.execute(
        "select start_minute, end_minute, minutes from time_entries"
        " where book_id = %s and person = %s and date = %s",
        (book_id, spec.person, spec.date),
    ).fetchall()
    for other_start, other_end, _ in same_day:
        if overlaps(start, end, other_start, other_end):
            raise DocumentState(
                f"{spec.person} already has time on {spec.date} that overlaps"
                f" {spec.start}-{spec.end}",
                reason="overlap",
            )
    if sum(r[2] for r in same_day) + raw > 1440:
        raise DocumentState(f"{spec.person}'s entries on {spec.date} would exceed 24 hours")
    rounded = round_minutes(raw, contract.terms.rounding)
    rate, source = resolve_rate(spec.role, rate_sources(conn, book_id, contract))
    after_hours = is_after_hours(start, end, contract.terms.business_hours, spec.after_hours)
    multiplier = contract.terms.after_hours_multiplier if after_hours else Decimal(1)
    amount = (
        entry_amount(rounded, rate, contract.currency, multiplier).amount
        if spec.billable == "billable"
        else Decimal(0)
    )
    entry_id = uuid.uuid4()
    conn.execute(
        "insert into time_entries (book_id, id, contract_id, customer_id, person, date,"
        " start_minute, end_minute, minutes, rounded_minutes, role, billable, after_hours,"
        " notes, ticket, rate, rate_source, amount, external_id, project) values"
        " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            book_id,
            entry_id,
            contract.id,
            contract.customer_id,
            spec.person.strip(),
            spec.date,
            start,
            end,
            raw,
            rounded,
            spec.role.strip(),
            spec.billable,
            after_hours,
            spec.notes,
            spec.ticket,
            rate * multiplier,
            source,
            amount,
            spec.external_id,
            (spec.project or "").strip() or None,
        ),
    )
    return get_time_entry(conn, book_id, str(entry_id))


def _adjusting_entry(
    conn: psycopg.Connection, book_id: uuid.UUID, spec: TimeEntrySpec
) -> TimeEntry:
    """A correction of an approved (or invoiced) entry: `minutes` is the signed
    change. The corrected total is rounded again by the contract's rule and the
    adjustment carries the difference in rounded minutes, at the original rate,
    on the next invoice (a negative one reduces it)."""
    assert spec.adjusts is not None
    original = get_time_entry(conn, book_id, spec.adjusts, lock=True)
    if original.adjusts is not None:
        raise InvalidBillingRequest("adjust the original entry, not an adjustment", field="adjusts")
    if original.status == "draft":
        raise DocumentState(
            f"time entry {original.id} is a draft: change it or approve it first",
            time_entry=str(original.id),
        )
    if spec.contract and parse_id(spec.contract, "contract") != original.contract_id:
        raise InvalidBillingRequest("an adjustment stays on its entry's contract", field="contract")
    if spec.minutes is None or isinstance(spec.minutes, bool) or spec.start or spec.end:
        raise InvalidBillingRequest(
            "an adjustment gives minutes (the signed change), not start and end", field="minutes"
        )
    if spec.minutes == 0 or abs(spec.minutes) > 1440:
        raise InvalidBillingRequest(
            "minutes must be a non-zero change of at most a day", field="minutes"
        )
    contract = get_contract(conn, book_id, str(original.contract_id))
    if not contract.open_on(spec.date):
        raise DocumentState(
            f"contract {contract.id} is {contract.status} or not in force on {spec.date}",
            contract=str(contract.id),
        )
    book_window(conn, book_id).check_optional("date", spec.date)
    row = conn.execute(
        "select coalesce(sum(minutes), 0), coalesce(sum(rounded_minutes), 0) from time_entries"
        " where book_id = %s and adjusts = %s",
        (book_id, original.id),
    ).fetchone()
    assert row is not None
    raw_total = original.minutes + int(row[0]) + spec.minutes
    if raw_total < 0:
        raise InvalidBillingRequest(
            f"the entry has {original.minutes + int(row[0])} minutes: it cannot lose"
            f" {-spec.minutes}",
            field="minutes",
        )
    change = round_minutes(raw_total, contract.terms.rounding) - (
        original.rounded_minutes + int(row[1])
    )
    value = minutes_value(abs(change), original.rate, contract.currency).amount
    amount = (value if change >= 0 else -value) if original.billable == "billable" else Decimal(0)
    entry_id = uuid.uuid4()
    conn.execute(
        "insert into time_entries (book_id, id, contract_id, customer_id, person, date,"
        " minutes, rounded_minutes, role, billable, after_hours, notes, ticket, rate,"
        " rate_source, amount, external_id, adjusts, project) values"
        " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            book_id,
            entry_id,
            original.contract_id,
            original.customer_id,
            original.person,
            spec.date,
            spec.minutes,
            change,
            original.role,
            original.billable,
            original.after_hours,
            spec.notes or f"Adjusts {original.id}",
            original.ticket,
            original.rate,
            original.rate_source,
            amount,
            spec.external_id,
            original.id,
            original.project,
        ),
    )
    return get_time_entry(conn, book_id, str(entry_id))


def get_time_entry(
    conn: psycopg.Connection, book_id: uuid.UUID, ref: str, *, lock: bool = False
) -> TimeEntry:
    entry_id = parse_id(ref, "time entry")
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"select {_ENTRY_COLUMNS} from time_entries where book_id = %s and id = %s"
            + (" for update" if lock else ""),
            (book_id, entry_id),
        ).fetchone()
    if row is None:
        raise NotFound(f"time entry {ref!r} does not exist in this book", time_entry=ref)
    return TimeEntry(**row)


_ENTRY_COLUMNS = ", ".join(TimeEntry.__slots__)


def list_time_entries(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    *,
    contract_ref: str | None = None,
    invoice_id: uuid.UUID | None = None,
) -> list[TimeEntry]:
    contract_id = parse_id(contract_ref, "contract") if contract_ref else None
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"select {_ENTRY_COLUMNS} from time_entries where book_id = %s"
            " and (%s::uuid is null or contract_id = %s) and (%s::uuid is null or invoice_id = %s)"
            " order by date, start_minute nulls last, created_at, id",
            (book_id, contract_id, contract_id, invoice_id, invoice_id),
        ).fetchall()
    return [TimeEntry(**r) for r in rows]


def update_time_entry(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    ref: str,
    notes: str | None,
    ticket: str | None,
    project: str | None = None,
) -> TimeEntry:
    """Notes, ticket and project of a draft; an approved or invoiced entry is immutable."""
    entry = get_time_entry(conn, book_id, ref, lock=True)
    if entry.status != "draft":
        raise DocumentState(
            f"time entry {entry.id} is {entry.status}: it cannot be edited (record an adjusting"
            " entry instead)",
            time_entry=str(entry.id),
        )
    conn.execute(
        "update time_entries set notes = coalesce(%s, notes), ticket = coalesce(%s, ticket),"
        " project = coalesce(%s, project) where book_id = %s and id = %s",
        (notes, ticket, project, book_id, entry.id),
    )
    return get_time_entry(conn, book_id, ref)


def _period_row(
    conn: psycopg.Connection, book_id: uuid.UUID, contract: Contract, period: Period
) -> dict[str, Any]:
    conn.execute(
        "insert into contract_periods (book_id, contract_id, period_start, period_end)"
        " values (%s, %s, %s, %s) on conflict do nothing",
        (book_id, contract.id, period.start, period.end),
    )
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "select * from contract_periods where book_id = %s and contract_id = %s"
            " and period_start = %s for update",
            (book_id, contract.id, period.start),
        ).fetchone()
    assert row is not None
    return row


def drawdown_entry(
    contract: Contract, entry: TimeEntry, minutes: int, period: Period, on: date
) -> JournalEntry:
    """Approved retainer hours: Prepaid-Hours → Income:Services at fee ÷ included hours."""
    value = minutes_value(minutes, contract.terms.hourly_value(), contract.currency)
    dims = {"period": period.start.isoformat(), "time_entry": str(entry.id), "via": "drawdown"}
    customer, doc = str(contract.customer_id), contract_doc(contract.id)
    return build_entry(
        on,
        f"Retainer hours drawn: {hours_text(minutes)} h by {entry.person}",
        [
            Posting(PREPAID_HOURS, value, customer, doc, dims),
            Posting(SERVICES, -value, customer, doc, dims),
        ],
        metadata={"kind": "retainer_drawdown", "contract": str(contract.id)},
        idempotency_key=f"time_entry:{entry.id}:drawdown",
    )


def _overage_left(conn: psycopg.Connection, book_id: uuid.UUID, entry: TimeEntry) -> int:
    """Overage minutes of the corrected entry and its approved adjustments, not yet invoiced."""
    row = conn.execute(
        "select coalesce(sum(overage_minutes), 0) from time_entries where book_id = %s"
        " and (id = %s or adjusts = %s) and status = 'approved'",
        (book_id, entry.adjusts, entry.adjusts),
    ).fetchone()
    return max(0, int(row[0])) if row else 0


def approve_time_entry(
    conn: psycopg.Connection, book_id: uuid.UUID, ref: str, on: date
) -> TimeEntry:
    """draft → approved. A billable entry on a retainer draws the period's hours
    left (posting Prepaid-Hours → Income:Services); the rest is overage."""
    entry = get_time_entry(conn, book_id, ref, lock=True)
    if entry.status != "draft":
        raise DocumentState(f"time entry {entry.id} is already {entry.status}")
    contract = get_contract(conn, book_id, str(entry.contract_id), lock=True)
    drawn = overage = 0
    if contract.type == "retainer" and entry.billable == "billable":
        day = entry.date
        if entry.adjusts is not None:  # the hours belong to the corrected entry's period
            day = get_time_entry(conn, book_id, str(entry.adjusts)).date
        period = contract.period_of(day)
        row = _period_row(conn, book_id, contract, period)
        available = (
            contract.terms.included_minutes + row["carried_in_minutes"] - row["drawn_minutes"]
        )
        if row["closed"]:
            available = 0  # the period's hours are settled: late time is overage
        if entry.rounded_minutes >= 0:
            draw = draw_down(entry.rounded_minutes, available)
            drawn, overage = draw.drawn_minutes, draw.overage_minutes
        else:  # fewer hours: give back overage first, then drawn hours of an open period
            overage = -min(-entry.rounded_minutes, _overage_left(conn, book_id, entry))
            drawn = entry.rounded_minutes - overage
            if row["closed"] and drawn:
                raise DocumentState(
                    f"the period {period} of this retainer is closed: its hours cannot be"
                    " given back",
                    time_entry=str(entry.id),
                )
        if drawn:
            conn.execute(
                "update contract_periods set drawn_minutes = drawn_minutes + %s"
                " where book_id = %s and contract_id = %s and period_start = %s",
                (drawn, book_id, contract.id, period.start),
            )
            post_entry(
                conn, book_id, drawdown_entry(contract, entry, drawn, period, max(on, entry.date))
            )
    conn.execute(
        "update time_entries set status = 'approved', drawn_minutes = %s, overage_minutes = %s"
        " where book_id = %s and id = %s",
        (drawn, overage, book_id, entry.id),
    )
    return get_time_entry(conn, book_id, ref)


# --- the contract billing run ----------------------------------------------------


@dataclass(slots=True)
class _Pending:
    """What one customer's invoice of a run will hold, and what each line settles."""

    lines: list[LineSpec] = field(default_factory=list)
    entries: list[tuple[int, list[uuid.UUID]]] = field(default_factory=list)
    periods: list[tuple[uuid.UUID, date]] = field(default_factory=list)
    milestones: list[tuple[uuid.UUID, str]] = field(default_factory=list)
    # What else the invoice settles, told its id once finalized (expenses, progress).
    settle: list[Callable[[uuid.UUID], None]] = field(default_factory=list)

    def add(self, spec: LineSpec, entries: Iterable[uuid.UUID] = ()) -> int:
        self.lines.append(spec)
        line_no = len(self.lines)
        ids = list(entries)
        if ids:
            self.entries.append((line_no, ids))
        return line_no


@dataclass(frozen=True, slots=True)
class RunResult:
    as_of: date
    invoices: list[Invoice]
    written_down: dict[str, Decimal]  # contract id → amount not billed over its cap
    expired_minutes: dict[str, int]  # contract id → retainer minutes expired to breakage
    # client (customer) id → its lines' total below zero: not invoiced, carried to the next
    # run (it nets against later work), or given back by a credit note on the invoice
    held_below_zero: dict[str, Decimal]


def _money(amount: Decimal, currency: str) -> Decimal:
    return Money(amount, currency).round_to_minor().amount


def expiry_entry(contract: Contract, minutes: int, period: Period) -> JournalEntry:
    value = minutes_value(minutes, contract.terms.hourly_value(), contract.currency)
    dims = {"period": period.start.isoformat(), "via": "expiry"}
    customer, doc = str(contract.customer_id), contract_doc(contract.id)
    return build_entry(
        period.end - timedelta(days=1),
        f"Retainer hours expired: {hours_text(minutes)} h of {period}",
        [
            Posting(PREPAID_HOURS, value, customer, doc, dims),
            Posting(BREAKAGE, -value, customer, doc, dims),
        ],
        metadata={"kind": "retainer_expiry", "contract": str(contract.id)},
        idempotency_key=f"contract:{contract.id}:{period.start}:expiry",
    )


def _retainer(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    contract: Contract,
    as_of: date,
    pending: _Pending,
    expired: dict[str, int],
) -> None:
    terms, c = contract.terms, contract.currency
    for period in billing_periods(contract.cycle(), until=as_of + timedelta(days=1)):
        if contract.end_date is not None and period.start >= contract.end_date:
            break
        row = _period_row(conn, book_id, contract, period)
        if row["invoice_id"] is None:
            pending.add(
                LineSpec(
                    f"Retainer {period.start}–{period.end - timedelta(days=1)}:"
                    f" {terms.included_hours} h included",
                    Decimal(1),
                    _money(terms.retainer_fee, c),
                    revenue_account=PREPAID_HOURS,
                    kind="retainer_fee",
                )
            )
            pending.periods.append((contract.id, period.start))
            overage = conn.execute(
                "select id, overage_minutes from time_entries where book_id = %s"
                " and contract_id = %s and status = 'approved' and overage_minutes <> 0"
                " and date < %s order by date, id",
                (book_id, contract.id, period.start),
            ).fetchall()
            if overage and sum(r[1] for r in overage) > 0:
                minutes = sum(r[1] for r in overage)
                assert terms.overage_rate is not None
                pending.add(
                    LineSpec(
                        f"Retainer overage: {hours_text(minutes)} h at"
                        f" {price_text(terms.overage_rate, c)}/h",
                        Decimal(1),
                        minutes_value(minutes, terms.overage_rate, c).amount,
                        kind="retainer_overage",
                    ),
                    [r[0] for r in overage],
                )
        if period.end <= as_of and not row["closed"]:
            close = close_retainer_period(
                terms.included_minutes,
                row["carried_in_minutes"],
                row["drawn_minutes"],
                terms.rollover,
                terms.carry_max_minutes,
            )
            if close.expired_minutes:
                post_entry(conn, book_id, expiry_entry(contract, close.expired_minutes, period))
                expired[str(contract.id)] = expired.get(str(contract.id), 0) + (
                    close.expired_minutes
                )
            conn.execute(
                "update contract_periods set closed = true, carried_out_minutes = %s,"
                " expired_minutes = %s where book_id = %s and contract_id = %s"
                " and period_start = %s",
                (close.carried_minutes, close.expired_minutes, book_id, contract.id, period.start),
            )
            _drawdown_summary(conn, book_id, contract, period, row, close, pending)
            following = Period(period.end, contract.cycle_end_after(period.end))
            _period_row(conn, book_id, contract, following)
            conn.execute(
                "update contract_periods set carried_in_minutes = %s where book_id = %s"
                " and contract_id = %s and period_start = %s",
                (close.carried_minutes, book_id, contract.id, following.start),
            )


def _drawdown_summary(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    contract: Contract,
    period: Period,
    row: Mapping[str, Any],
    close: RetainerClose,
    pending: _Pending,
) -> None:
    """The closed period's draw-down on the next invoice, as a line of 0.00: hours
    included, carried in, drawn, overage, carried over and expired. The period's
    approved time that is not overage (drawn hours, no charge, do not bill) is
    traced to this line and becomes invoiced; time with overage is traced to the
    overage line instead (one line per entry). An adjustment belongs to the
    period of the entry it corrects."""
    traced = conn.execute(
        "select t.id, t.overage_minutes, t.status from time_entries t left join time_entries o"
        " on o.book_id = t.book_id and o.id = t.adjusts"
        " where t.book_id = %s and t.contract_id = %s and t.status <> 'draft'"
        " and coalesce(o.date, t.date) >= %s and coalesce(o.date, t.date) < %s"
        " order by t.date, t.start_minute nulls last, t.created_at, t.id for update of t",
        (book_id, contract.id, period.start, period.end),
    ).fetchall()
    overage = sum(r[1] for r in traced)
    span = f"{period.start}–{period.end - timedelta(days=1)}"
    pending.add(
        LineSpec(
            f"Retainer {span} draw-down: {hours_text(contract.terms.included_minutes)} h"
            f" included, {hours_text(row['carried_in_minutes'])} h carried in,"
            f" {hours_text(row['drawn_minutes'])} h drawn, {hours_text(overage)} h overage,"
            f" {hours_text(close.carried_minutes)} h carried over,"
            f" {hours_text(close.expired_minutes)} h expired",
            Decimal(1),
            Decimal(0),
            revenue_account=PREPAID_HOURS,
            kind="retainer_summary",
        ),
        [r[0] for r in traced if r[2] == "approved" and r[1] == 0],
    )


def _time_and_materials(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    contract: Contract,
    as_of: date,
    pending: _Pending,
    written: dict[str, Decimal],
) -> None:
    """Approved time of each ended period, in arrears, one line per period; time
    approved after its period was invoiced goes on the next invoice. Beyond the
    cap nothing is billed and the entry keeps what was written down."""
    cutoff = contract.period_of(as_of).start if as_of >= contract.start_date else None
    if cutoff is None or cutoff <= contract.start_date:
        return
    billed_row = conn.execute(
        "select coalesce(sum(amount - written_down), 0) from time_entries where book_id = %s"
        " and contract_id = %s and status = 'invoiced'",
        (book_id, contract.id),
    ).fetchone()
    billed = Decimal(billed_row[0]) if billed_row else Decimal(0)
    with conn.cursor(row_factory=dict_row) as cur:
        entries = cur.execute(
            "select id, date, amount, rounded_minutes, billable, accrued_amount from time_entries"
            " where book_id = %s and contract_id = %s and status = 'approved' and date < %s"
            " order by date, start_minute nulls last, created_at, id for update",
            (book_id, contract.id, cutoff),
        ).fetchall()
    by_period: dict[Period, list[dict[str, Any]]] = defaultdict(list)
    for e in entries:
        by_period[contract.period_of(e["date"])].append(e)
    for period, group in by_period.items():
        accrued_part = Decimal(0)  # billed from Unbilled (accrued as WIP at a month end)
        services_part = Decimal(0)
        excess = Decimal(0)  # accrued but not billed (over the cap): reversed
        minutes = 0
        for e in group:
            amount = Decimal(e["amount"])
            if contract.terms.cap is not None:
                room = max(Decimal(0), contract.terms.cap - billed)
                down = max(Decimal(0), amount - room)
                if down:
                    conn.execute(
                        "update time_entries set written_down = %s where book_id = %s and id = %s",
                        (down, book_id, e["id"]),
                    )
                    written[str(contract.id)] = written.get(str(contract.id), Decimal(0)) + down
                amount -= down
            billed += amount
            accrued = Decimal(e["accrued_amount"])
            relieved = min(max(amount, Decimal(0)), accrued)  # billed from Unbilled
            accrued_part += relieved
            services_part += amount - relieved  # a negative adjustment reduces it
            excess += accrued - relieved
            if e["billable"] == "billable":
                minutes += e["rounded_minutes"]
        description = (
            f"Time and materials {period.start}–{period.end - timedelta(days=1)}:"
            f" {hours_text(minutes)} h"
        )
        accrued_ids = [e["id"] for e in group if Decimal(e["accrued_amount"]) > 0]
        other_ids = [e["id"] for e in group if Decimal(e["accrued_amount"]) == 0]
        if not accrued_ids:
            pending.add(LineSpec(description, Decimal(1), services_part, kind="time"), other_ids)
        elif services_part:
            pending.add(
                LineSpec(
                    f"{description} (accrued)",
                    Decimal(1),
                    accrued_part,
                    revenue_account=UNBILLED,
                    kind="time",
                ),
                accrued_ids,
            )
            pending.add(
                LineSpec(f"{description} (not accrued)", Decimal(1), services_part, kind="time"),
                other_ids,
            )
        else:  # time not accrued bills nothing (over the cap): it is traced to the one line
            pending.add(
                LineSpec(
                    f"{description} (accrued)",
                    Decimal(1),
                    accrued_part,
                    revenue_account=UNBILLED,
                    kind="time",
                ),
                accrued_ids + other_ids,
            )
        if excess:
            post_entry(conn, book_id, wip_entry(contract, -excess, as_of, "wip_written_down"))


def wip_entry(contract: Contract, amount: Decimal, on: date, via: str) -> JournalEntry:
    """Unbilled / Income:Services for `amount` (negative: the reverse)."""
    value = Money(amount, contract.currency)
    dims = {"via": via}
    customer, doc = str(contract.customer_id), contract_doc(contract.id)
    return build_entry(
        on,
        "Unbilled time accrued (WIP)" if amount > 0 else "Accrued time not billed (over the cap)",
        [
            Posting(UNBILLED, value, customer, doc, dims),
            Posting(SERVICES, -value, customer, doc, dims),
        ],
        metadata={"kind": "wip_accrual" if amount > 0 else via, "contract": str(contract.id)},
        idempotency_key=f"contract:{contract.id}:{via}:{uuid.uuid4()}",
    )


@dataclass(frozen=True, slots=True)
class WipLine:
    contract_id: uuid.UUID
    customer_id: uuid.UUID
    currency: str
    amount: Decimal
    entries: int


def accrue_wip(
    conn: psycopg.Connection, book_id: uuid.UUID, as_of: date, today: date | None = None
) -> list[WipLine]:
    """Month-end WIP: approved, billable, not yet invoiced or accrued time of T&M
    contracts through `as_of` (a month's last day) → Unbilled / Income:Services,
    one entry per contract, up to what the contract's cap still allows. The
    invoice that bills the time relieves Unbilled. Repeatable: accrued time is
    not accrued twice."""
    if (as_of + timedelta(days=1)).day != 1:
        raise InvalidBillingRequest("as_of must be the last day of a month", field="as_of")
    if today is not None and as_of > today:
        raise InvalidBillingRequest(
            f"as_of {as_of} is after the book's today ({today})", field="as_of"
        )
    ids = conn.execute(
        "select id from contracts where book_id = %s and status = 'active'"
        " and type = 'time_and_materials' and start_date <= %s order by created_at, id for update",
        (book_id, as_of),
    ).fetchall()
    lines: list[WipLine] = []
    for (contract_id,) in ids:
        contract = get_contract(conn, book_id, str(contract_id))
        with conn.cursor(row_factory=dict_row) as cur:
            entries = cur.execute(
                "select id, date, amount, accrued_amount, status, written_down from time_entries"
                " where book_id = %s and contract_id = %s and status in ('approved', 'invoiced')"
                " order by date, start_minute nulls last, created_at, id for update",
                (book_id, contract.id),
            ).fetchall()
        # What the cap still allows: billed so far plus accrued and not billed count against it.
        used = sum(
            (
                Decimal(e["amount"]) - Decimal(e["written_down"])
                if e["status"] == "invoiced"
                else Decimal(e["accrued_amount"])
                for e in entries
            ),
            Decimal(0),
        )
        total = Decimal(0)
        accrued = 0
        for e in entries:
            if e["status"] != "approved" or e["date"] > as_of or Decimal(e["accrued_amount"]) > 0:
                continue
            amount = Decimal(e["amount"])
            if contract.terms.cap is not None:
                amount = min(amount, max(Decimal(0), contract.terms.cap - used))
            if amount <= 0:
                continue
            used += amount
            total += amount
            accrued += 1
            conn.execute(
                "update time_entries set accrued_amount = %s where book_id = %s and id = %s",
                (amount, book_id, e["id"]),
            )
        if total:
            post_entry(conn, book_id, wip_entry(contract, total, as_of, "wip"))
            lines.append(
                WipLine(contract.id, contract.customer_id, contract.currency, total, accrued)
            )
    return lines


def _managed_services(
    conn: psycopg.Connection, book_id: uuid.UUID, contract: Contract, as_of: date, pending: _Pending
) -> None:
    """Each ended period: the monthly fee, then a line per priced kind (devices,
    users) of its quantity at cut-off (or day by day)."""
    terms, c = contract.terms, contract.currency
    assert terms.monthly_fee is not None
    for period in billing_periods(contract.cycle(), until=as_of):
        if period.end > as_of:
            break
        row = _period_row(conn, book_id, contract, period)
        if row["invoice_id"] is not None:
            continue
        span = f"{period.start}–{period.end - timedelta(days=1)}"
        pending.add(
            LineSpec(
                f"Managed services {span}",
                Decimal(1),
                _money(terms.monthly_fee, c),
                kind="monthly_fee",
            )
        )
        for kind, price in terms.prices_by_kind.items():
            unit_days, days, cutoff = prorated_units(
                contract.counts_of(kind), period.start, period.end, terms.proration
            )
            if not unit_days:
                continue
            amount = fraction_of(Money(price, c), unit_days, days)
            description = (
                f"{kind.title()}s {span}: {cutoff} at cut-off"
                if terms.proration != "daily"
                else f"{kind.title()}s {span}: {unit_days} {kind}-days over {days} days"
            )
            pending.add(LineSpec(description, Decimal(1), amount.amount, kind=f"{kind}s"))
        pending.periods.append((contract.id, period.start))


def _milestones(contract: Contract, as_of: date, pending: _Pending) -> None:
    for m in contract.milestones:
        if m["completed_on"] is not None and m["completed_on"] <= as_of and m["invoice_id"] is None:
            pending.add(
                LineSpec(
                    f"Milestone: {m['name']}",
                    Decimal(1),
                    _money(Decimal(m["amount"]), contract.currency),
                    revenue_account=UNBILLED,
                    kind="milestone",
                )
            )
            pending.milestones.append((contract.id, m["name"]))


def _progress(
    conn: psycopg.Connection, book_id: uuid.UUID, contract: Contract, as_of: date, pending: _Pending
) -> None:
    found = msp_progress.progress_line(conn, book_id, contract, as_of)
    if found is not None:
        line, state = found
        pending.add(line)
        pending.settle.append(
            lambda invoice_id: msp_progress.mark_billed(
                conn, book_id, contract.id, state, invoice_id
            )
        )


def _expenses(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    lines: list[tuple[LineSpec, uuid.UUID]],
    pending: _Pending,
) -> None:
    billed = [(pending.add(line), expense_id) for line, expense_id in lines]
    if billed:
        pending.settle.append(
            lambda invoice_id: msp_expenses.mark_invoiced(conn, book_id, invoice_id, billed)
        )


def contract_billing_run(
    conn: psycopg.Connection, book_id: uuid.UUID, as_of: date, today: date | None = None
) -> RunResult:
    """Invoices every active contract through `as_of`: one invoice per client,
    dated `as_of`. Repeatable: what a period or milestone already billed is skipped.
    Like the subscription billing run, it refuses an `as_of` after the book's today."""
    if today is not None and as_of > today:
        raise InvalidBillingRequest(
            f"as_of {as_of} is after the book's today ({today}): nothing can be billed ahead",
            field="as_of",
        )
    ids = conn.execute(
        "select id from contracts where book_id = %s and status = 'active' and start_date <= %s"
        " order by customer_id, created_at, id for update",
        (book_id, as_of),
    ).fetchall()
    by_customer: dict[uuid.UUID, list[Contract]] = defaultdict(list)
    for (contract_id,) in ids:
        contract = get_contract(conn, book_id, str(contract_id))
        by_customer[contract.customer_id].append(contract)
    expenses = msp_expenses.billable_expenses(conn, book_id, as_of)
    written: dict[str, Decimal] = {}
    expired: dict[str, int] = {}
    held: dict[str, Decimal] = {}
    invoices: list[Invoice] = []
    for customer_id, contracts in by_customer.items():
        try:
            # A savepoint per client: a client whose lines come to less than zero (a
            # negative adjustment of time already invoiced, nothing new to net it with)
            # is not invoiced, and what its contracts wrote this run is undone with it.
            with conn.transaction():
                pending = _Pending()
                its_written: dict[str, Decimal] = {}
                its_expired: dict[str, int] = {}
                for contract in contracts:
                    _bill_contract(
                        conn, book_id, contract, as_of, pending, its_written, its_expired
                    )
                    if contract.id in expenses:
                        _expenses(conn, book_id, expenses[contract.id], pending)
                if pending.lines:
                    total = sum(
                        (line.quantity * line.unit_amount for line in pending.lines), Decimal(0)
                    )
                    if total < 0:
                        raise _HeldBelowZero(total)
                    invoices.append(_invoice_client(conn, book_id, customer_id, as_of, pending))
                written.update(its_written)
                expired.update(its_expired)
        except _HeldBelowZero as below:
            held[str(customer_id)] = below.total
    return RunResult(as_of, invoices, written, expired, held)


class _HeldBelowZero(Exception):
    def __init__(self, total: Decimal) -> None:
        super().__init__(f"the client's lines total {total}")
        self.total = total


def _bill_contract(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    contract: Contract,
    as_of: date,
    pending: _Pending,
    written: dict[str, Decimal],
    expired: dict[str, int],
) -> None:
    if contract.type == "retainer":
        _retainer(conn, book_id, contract, as_of, pending, expired)
    elif contract.type == "time_and_materials":
        _time_and_materials(conn, book_id, contract, as_of, pending, written)
    elif contract.type == "managed_services":
        _managed_services(conn, book_id, contract, as_of, pending)
    elif contract.terms.fee is not None:
        _progress(conn, book_id, contract, as_of, pending)
    else:
        _milestones(contract, as_of, pending)


def _invoice_client(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    customer_id: uuid.UUID,
    as_of: date,
    pending: _Pending,
) -> Invoice:
    """The client's invoice of the run, and what it bills marked as invoiced by it."""
    draft = create_draft(
        conn,
        book_id,
        str(customer_id),
        pending.lines,
        memo=f"Services through {as_of}",
        metadata={"contract_billing_run": as_of.isoformat()},
    )
    assert draft is not None
    invoice = finalize_invoice(conn, book_id, str(draft.id), as_of)
    for line_no, entry_ids in pending.entries:
        conn.execute(
            "update time_entries set status = 'invoiced', invoice_id = %s, invoice_line = %s"
            " where book_id = %s and id = any(%s)",
            (invoice.id, line_no, book_id, entry_ids),
        )
    for contract_id, start in pending.periods:
        conn.execute(
            "update contract_periods set invoice_id = %s where book_id = %s"
            " and contract_id = %s and period_start = %s",
            (invoice.id, book_id, contract_id, start),
        )
    for contract_id, name in pending.milestones:
        conn.execute(
            "update contract_milestones set invoice_id = %s where book_id = %s"
            " and contract_id = %s and name = %s",
            (invoice.id, book_id, contract_id, name),
        )
    for settle in pending.settle:
        settle(invoice.id)
    return invoice


# --- the client's time statement ------------------------------------------------

STATEMENT_COLUMNS = (
    "date",
    "person",
    "project",
    "ticket",
    "description",
    "hours",
    "rate",
    "amount",
)


def time_statement(
    conn: psycopg.Connection, book_id: uuid.UUID, invoice: Invoice
) -> list[dict[str, str]]:
    """The invoice's time entries as the client reads them (amount billed after any
    write-down over a cap). A retainer entry shows its drawn hours at the retainer's
    hourly value (fee ÷ included hours) with amount 0.00, "included" in the
    description (the fee paid for them), and its overage hours in a second row at
    the overage rate with what they bill."""
    contracts: dict[uuid.UUID, Contract] = {}
    rows: list[dict[str, str]] = []
    for e in list_time_entries(conn, book_id, invoice_id=invoice.id):
        if e.billable == "do_not_bill":  # internal time: traced to the invoice, not shown
            continue
        if e.contract_id not in contracts:
            contracts[e.contract_id] = get_contract(conn, book_id, str(e.contract_id))
        rows.extend(_statement_rows(e, contracts[e.contract_id].terms, invoice.currency))
    return rows


def _statement_rows(e: TimeEntry, terms: ContractTerms, c: str) -> list[dict[str, str]]:
    base = {
        "date": e.date.isoformat(),
        "person": e.person,
        "project": e.project or "",
        "ticket": e.ticket or "",
    }
    if terms.type != "retainer" or e.billable != "billable":
        amount = Money(e.amount - e.written_down, c).quantized().amount
        return [
            base
            | {
                "description": e.notes,
                "hours": hours_text(e.rounded_minutes),
                "rate": price_text(e.rate, c),
                "amount": str(amount),
            }
        ]
    rows = []
    if e.drawn_minutes:
        rows.append(
            base
            | {
                "description": f"{e.notes} (retainer: included)".lstrip(),
                "hours": hours_text(e.drawn_minutes),
                "rate": price_text(terms.hourly_value(), c),
                "amount": str(Money.zero(c).quantized().amount),
            }
        )
    if e.overage_minutes:
        assert terms.overage_rate is not None
        rows.append(
            base
            | {
                "description": f"{e.notes} (retainer: overage)".lstrip(),
                "hours": hours_text(e.overage_minutes),
                "rate": price_text(terms.overage_rate, c),
                "amount": str(_signed_value(e.overage_minutes, terms.overage_rate, c)),
            }
        )
    return rows


def _signed_value(minutes: int, hourly: Decimal, currency: str) -> Decimal:
    value = minutes_value(abs(minutes), hourly, currency).amount
    return value if minutes >= 0 else -value


def statement_csv(
    rows: Sequence[Mapping[str, str]], expenses: Sequence[Mapping[str, str]] = ()
) -> str:
    """Time rows, then expense rows in the same columns (no hours or rate; the
    description says "Expense: …" and names the vendor)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=STATEMENT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    for e in expenses:
        vendor = f" ({e['vendor']})" if e["vendor"] else ""
        writer.writerow(
            {
                "date": e["date"],
                "person": e["person"],
                "project": "",
                "ticket": "",
                "description": f"Expense: {e['description']}{vendor}",
                "hours": "",
                "rate": "",
                "amount": e["amount"],
            }
        )
    return out.getvalue()


def _html_table(columns: Sequence[str], rows: Sequence[Mapping[str, str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(r[c])}</td>" for c in columns) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def statement_html(
    invoice: Invoice,
    rows: Sequence[Mapping[str, str]],
    expenses: Sequence[Mapping[str, str]] = (),
) -> str:
    title = html.escape(f"Time statement — invoice {invoice.number or invoice.id}")
    extra = (
        f"<h2>Expenses</h2>{_html_table(msp_expenses.EXPENSE_COLUMNS, expenses)}"
        if expenses
        else ""
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
        f"<body><h1>{title}</h1>{_html_table(STATEMENT_COLUMNS, rows)}{extra}</body></html>"
    )


# --- reports ---------------------------------------------------------------------


def utilization_report(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    start: date,
    end: date,
    hours_per_day: Decimal = Decimal(8),
) -> list[Utilization]:
    """Billable ÷ available hours per person over `[start, end)`, from approved and
    invoiced time; available is `hours_per_day` on each weekday."""
    if end <= start:
        raise InvalidBillingRequest("to must be after from", field="to")
    rows = conn.execute(
        "select person, billable, sum(rounded_minutes)::int from time_entries"
        " where book_id = %s and status <> 'draft' and date >= %s and date < %s"
        " group by person, billable order by person, billable",
        (book_id, start, end),
    ).fetchall()
    available = int(working_days(start, end) * hours_per_day * 60)
    return utilization([(r[0], r[1], int(r[2])) for r in rows], available)


@dataclass(frozen=True, slots=True)
class Realization:
    customer_id: uuid.UUID
    currency: str
    standard: Decimal  # hours worked (billable and no charge) at their rates
    billed: Decimal  # what the invoices charged for them (after any cap)

    @property
    def realization(self) -> Decimal | None:
        return ratio(self.billed, self.standard)


def realization_report(
    conn: psycopg.Connection, book_id: uuid.UUID, start: date, end: date
) -> list[Realization]:
    """Billed ÷ standard value per client, over invoiced time dated in `[start, end)`.

    A billable retainer entry counts as billed at its drawn value (drawn hours at
    fee ÷ included hours) plus its overage hours at the overage rate; other time at
    its amount after any write-down over a cap."""
    if end <= start:
        raise InvalidBillingRequest("to must be after from", field="to")
    rows = conn.execute(
        "select t.customer_id, c.currency, t.rounded_minutes, t.rate, t.billable,"
        " t.amount - t.written_down, c.type, c.terms, t.drawn_minutes, t.overage_minutes"
        " from time_entries t join contracts c on c.book_id = t.book_id and c.id = t.contract_id"
        " where t.book_id = %s and t.status = 'invoiced' and t.billable <> 'do_not_bill'"
        " and t.date >= %s and t.date < %s order by t.customer_id",
        (book_id, start, end),
    ).fetchall()
    standard: dict[tuple[uuid.UUID, str], Decimal] = defaultdict(Decimal)
    billed: dict[tuple[uuid.UUID, str], Decimal] = defaultdict(Decimal)
    for customer_id, currency, minutes, rate, kind, charged, ctype, raw, drawn, over in rows:
        key = (customer_id, currency)
        standard[key] += _signed_value(minutes, Decimal(rate), currency)
        if kind != "billable":
            continue
        if ctype == "retainer":
            terms = parse_terms(ctype, raw)
            assert terms.overage_rate is not None
            billed[key] += _signed_value(drawn, terms.hourly_value(), currency) + _signed_value(
                over, terms.overage_rate, currency
            )
        else:
            billed[key] += Decimal(charged)
    return [Realization(k[0], k[1], standard[k], billed[k]) for k in standard]
