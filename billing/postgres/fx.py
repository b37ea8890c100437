"""Foreign exchange in PostgreSQL: the book's rate table, the realized
difference of a payment, and month-end revaluations (rules in billing.fx).

A book with no rate at all does no FX: its payments post exactly what they
did before. Once it has rates, a payment in a currency other than the
functional one needs the rates of its date and of each settled invoice's
issue date (else `missing_rate`, 422, nothing written).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from billing.chart import DEFAULT_CHART
from billing.fx import (
    FX_TRANSLATION,
    FxRate,
    OpenForeignReceivable,
    ResolvedRate,
    gain,
    realized_entry,
    resolve_rate,
    revaluation_amounts,
    revaluation_entries,
    reversal_date,
)
from billing.postgres.posting import post_entries
from billing.postgres.settings import read_settings
from billing.postings import AR, Allocation
from ledger.entries import JournalEntry
from ledger.money import Money
from ledger.postgres.books import AccountSpec, ensure_account

_MAX_RATES = 100_000


def functional_currency(conn: psycopg.Connection, book_id: uuid.UUID) -> str:
    """The book setting `functional_currency`, else the book's own currency."""
    configured = read_settings(conn, book_id).get("functional_currency")
    if isinstance(configured, str) and configured:
        return configured
    row = conn.execute("select base_currency from books where id = %s", (book_id,)).fetchone()
    assert row is not None  # read_settings found the book
    return str(row[0])


def store_rates(conn: psycopg.Connection, book_id: uuid.UUID, rates: Sequence[FxRate]) -> int:
    """Insert rates; a rate for a pair and date already held is replaced (a correction:
    entries already posted keep their amounts). Returns how many rows were written."""
    if not rates:
        return 0
    with conn.cursor() as cur:
        cur.executemany(
            "insert into fx_rates (book_id, date, base, quote, rate) values (%s, %s, %s, %s, %s)"
            " on conflict (book_id, base, quote, date) do update set rate = excluded.rate"
            " where fx_rates.rate <> excluded.rate",
            [(book_id, r.on, r.base, r.quote, r.rate) for r in rates],
        )
    return len(rates)


def has_rates(conn: psycopg.Connection, book_id: uuid.UUID) -> bool:
    return (
        conn.execute("select 1 from fx_rates where book_id = %s limit 1", (book_id,)).fetchone()
        is not None
    )


def rates_on(
    conn: psycopg.Connection, book_id: uuid.UUID, currencies: Sequence[str], on: date
) -> list[FxRate]:
    """The latest rate on or before `on` of every stored pair touching `currencies`."""
    rows = conn.execute(
        "select distinct on (base, quote) date, base, quote, rate from fx_rates"
        " where book_id = %s and date <= %s and (base = any(%s) or quote = any(%s))"
        " order by base, quote, date desc",
        (book_id, on, list(currencies), list(currencies)),
    ).fetchall()
    return [FxRate(r[0], r[1], r[2], Decimal(r[3])) for r in rows]


def rate_in_force(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    base: str,
    quote: str,
    on: date,
    functional: str | None = None,
) -> ResolvedRate:
    functional = functional or functional_currency(conn, book_id)
    wanted = sorted({base, quote, "EUR", functional})
    return resolve_rate(rates_on(conn, book_id, wanted, on), base, quote, on, functional)


def _ensure_translation_account(conn: psycopg.Connection, book_id: uuid.UUID) -> None:
    """Books created before FX existed lack the account: open it on first use."""
    code = next(a.code for a in DEFAULT_CHART if a.name == FX_TRANSLATION)
    ensure_account(conn, book_id, AccountSpec(name=FX_TRANSLATION, code=code))


def realized_for_payment(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    payment_id: uuid.UUID,
    customer_id: str,
    received_on: date,
    currency: str,
    allocations: Sequence[tuple[Allocation, date]],
) -> JournalEntry | None:
    """The realized exchange difference of a payment's allocations (each with its
    invoice's issue date), or None: same currency as the functional one, or a
    book without rates (then nothing changes from before FX existed)."""
    functional = functional_currency(conn, book_id)
    if currency == functional or not allocations or not has_rates(conn, book_id):
        return None
    now = rate_in_force(conn, book_id, currency, functional, received_on, functional)
    parts = []
    for allocation, issued in allocations:
        carried = rate_in_force(conn, book_id, currency, functional, issued, functional)
        amount = gain(allocation.amount, carried.rate, now.rate, functional)
        parts.append((allocation.invoice_id, customer_id, amount))
    entry = realized_entry(payment_id, received_on, parts)
    if entry is not None:
        _ensure_translation_account(conn, book_id)
    return entry


@dataclass(frozen=True, slots=True)
class RevaluationLine:
    invoice_id: uuid.UUID
    number: str | None
    currency: str
    open_amount: Decimal
    carried_rate: Decimal
    rate: Decimal
    amount: Decimal  # gain (+) or loss (−) in the functional currency


@dataclass(frozen=True, slots=True)
class Revaluation:
    id: uuid.UUID
    as_of: date
    functional_currency: str
    entry_id: uuid.UUID | None
    reversal_entry_id: uuid.UUID | None
    reversal_date: date
    created_at: datetime
    lines: tuple[RevaluationLine, ...] = ()
    created: bool = True


_OPEN_FOREIGN = """
select i.id, i.number, i.customer_id, i.currency, i.issue_date, sum(p.amount) as open
  from invoices i
  join postings p on p.book_id = i.book_id and p.document = 'invoice:' || i.id::text
 where i.book_id = %(book)s and i.status = 'open' and i.currency <> %(functional)s
   and i.issue_date <= %(as_of)s and p.effective_date <= %(as_of)s
   and p.account_id = (select id from accounts where book_id = %(book)s and name = %(ar)s)
 group by i.id, i.number, i.customer_id, i.currency, i.issue_date
having sum(p.amount) > 0
 order by i.id
"""


def revalue(conn: psycopg.Connection, book_id: uuid.UUID, as_of: date) -> Revaluation:
    """Revalue the open foreign receivables at `as_of`'s rates (idempotent per date:
    a second run for the same date answers the first, with `created` false)."""
    conn.execute("select 1 from books where id = %s for update", (book_id,))
    existing = _get(conn, book_id, as_of)
    if existing is not None:
        return existing
    functional = functional_currency(conn, book_id)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            _OPEN_FOREIGN, {"book": book_id, "functional": functional, "as_of": as_of, "ar": AR}
        ).fetchall()
    receivables = []
    numbers = {}
    rates: dict[str, Decimal] = {}
    for r in rows:
        now = rate_in_force(conn, book_id, r["currency"], functional, as_of, functional)
        carried = rate_in_force(
            conn, book_id, r["currency"], functional, r["issue_date"], functional
        )
        rates[r["currency"]] = now.rate
        numbers[str(r["id"])] = r["number"]
        receivables.append(
            OpenForeignReceivable(
                invoice_id=str(r["id"]),
                customer_id=str(r["customer_id"]),
                open_amount=Money(Decimal(r["open"]), r["currency"]).quantized(),
                carried_rate=carried.rate,
                rate_now=now.rate,
            )
        )
    amounts = revaluation_amounts(receivables, functional)
    run_id = uuid.uuid4()
    entries = revaluation_entries(run_id, as_of, amounts, rates)
    entry_id = reversal_id = None
    if entries is not None:
        _ensure_translation_account(conn, book_id)
        posted = post_entries(conn, book_id, list(entries))
        entry_id, reversal_id = posted[0].id, posted[1].id
    lines = [
        {
            "invoice": r.invoice_id,
            "number": numbers[r.invoice_id],
            "currency": r.open_amount.currency,
            "open_amount": str(r.open_amount.amount),
            "carried_rate": str(r.carried_rate),
            "rate": str(r.rate_now),
            "amount": str(amount.amount),
        }
        for r, amount in amounts
    ]
    conn.execute(
        "insert into fx_revaluations (book_id, id, as_of, functional_currency, entry_id,"
        " reversal_entry_id, lines) values (%s, %s, %s, %s, %s, %s, %s)",
        (book_id, run_id, as_of, functional, entry_id, reversal_id, Jsonb(lines)),
    )
    found = _get(conn, book_id, as_of)
    assert found is not None
    return replace(found, created=True)


def _get(conn: psycopg.Connection, book_id: uuid.UUID, as_of: date) -> Revaluation | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "select id, as_of, functional_currency, entry_id, reversal_entry_id, created_at,"
            " lines from fx_revaluations where book_id = %s and as_of = %s",
            (book_id, as_of),
        ).fetchone()
    if row is None:
        return None
    lines = tuple(
        RevaluationLine(
            invoice_id=uuid.UUID(x["invoice"]),
            number=x["number"],
            currency=x["currency"],
            open_amount=Decimal(x["open_amount"]),
            carried_rate=Decimal(x["carried_rate"]),
            rate=Decimal(x["rate"]),
            amount=Decimal(x["amount"]),
        )
        for x in row.pop("lines")
    )
    return Revaluation(**row, lines=lines, reversal_date=reversal_date(as_of), created=False)
