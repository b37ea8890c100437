"""Percent-complete fixed-fee contracts: revenue recognized by progress, invoiced
by progress.

Each progress update sets earned-to-date = round(fee × percent ÷ 100) and posts
the difference to Income:Services. What is earned beyond what was billed is a
contract asset (`Assets:Receivable:Unbilled`); what was billed beyond what is
earned is a contract liability (`Liabilities:Deferred-Revenue`). Every event
moves the contract from one position to the other, so a posting touches
Unbilled and/or Deferred-Revenue by exactly the change of each balance:

    earn 30 % of 10,000.00, nothing billed:   Unbilled 3,000.00 / Services 3,000.00
    the run bills 3,000.00:                    AR 3,000.00 / Unbilled 3,000.00
    adjusted down to 25 % (after billing):     Services 500.00 / Deferred 500.00
    progress to 40 %:                          Deferred 500.00, Unbilled 1,000.00 /
                                               Services 1,500.00

Invoicing is by progress: each contract billing run bills earned − billed when
positive (against Unbilled). Percent complete only rises; a lower figure needs
`adjustment: true` (a revised estimate), and is refused below what keeps
earned ≥ 0.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

import psycopg
from psycopg.rows import dict_row

from billing.errors import DocumentState, InvalidBillingRequest
from billing.msp import contract_position, recognized_to_date
from billing.postgres.invoices import LineSpec
from billing.postgres.posting import post_entry
from ledger.entries import JournalEntry, Posting, build_entry
from ledger.money import Money
from ledger.postgres.books import book_window

if TYPE_CHECKING:
    from billing.postgres.msp import Contract

UNBILLED = "Assets:Receivable:Unbilled"
DEFERRED = "Liabilities:Deferred-Revenue"
SERVICES = "Income:Services"


@dataclass(frozen=True, slots=True)
class ProgressState:
    seq: int
    kind: str
    date: date
    percent_complete: Decimal
    earned: Decimal
    billed: Decimal
    invoice_id: uuid.UUID | None


def progress_history(
    conn: psycopg.Connection, book_id: uuid.UUID, contract_id: uuid.UUID
) -> list[ProgressState]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "select seq, kind, date, percent_complete, earned, billed, invoice_id"
            " from contract_progress where book_id = %s and contract_id = %s order by seq",
            (book_id, contract_id),
        ).fetchall()
    return [ProgressState(**r) for r in rows]


def _latest(conn: psycopg.Connection, book_id: uuid.UUID, contract_id: uuid.UUID) -> ProgressState:
    history = progress_history(conn, book_id, contract_id)
    if history:
        return history[-1]
    return ProgressState(0, "progress", date.min, Decimal(0), Decimal(0), Decimal(0), None)


def _append(
    conn: psycopg.Connection, book_id: uuid.UUID, contract_id: uuid.UUID, state: ProgressState
) -> None:
    conn.execute(
        "insert into contract_progress (book_id, contract_id, seq, kind, date, percent_complete,"
        " earned, billed, invoice_id) values (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            book_id,
            contract_id,
            state.seq,
            state.kind,
            state.date,
            state.percent_complete,
            state.earned,
            state.billed,
            state.invoice_id,
        ),
    )


def _percent(text: str) -> Decimal:
    try:
        value = Decimal(str(text))
    except InvalidOperation:
        value = Decimal("NaN")
    if isinstance(text, bool) or not value.is_finite() or not 0 <= value <= 100:
        raise InvalidBillingRequest(
            "percent_complete must be a decimal string from 0 to 100", field="percent_complete"
        )
    return value


def record_progress(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    ref: str,
    on: date,
    percent_text: str,
    *,
    adjustment: bool = False,
) -> ProgressState:
    """Sets the contract's percent complete on `on` and posts the revenue it earns
    (or, for a downward adjustment, gives back)."""
    from billing.postgres.msp import get_contract

    contract = get_contract(conn, book_id, ref, lock=True)
    if contract.type != "fixed_fee" or contract.terms.fee is None:
        raise InvalidBillingRequest(
            "progress is for fixed_fee contracts with a fee (percent complete)", field="contract"
        )
    if not contract.open_on(on):
        raise DocumentState(f"contract {contract.id} is not in force on {on}")
    book_window(conn, book_id).check_optional("date", on)
    percent = _percent(percent_text)
    last = _latest(conn, book_id, contract.id)
    if on < last.date:
        raise InvalidBillingRequest(
            f"progress was last recorded on {last.date}: a later update cannot be dated {on}",
            field="date",
        )
    if percent < last.percent_complete and not adjustment:
        raise DocumentState(
            f"the contract is {last.percent_complete} % complete: percent complete cannot go"
            f" down to {percent} % except by an adjustment (adjustment: true)",
            reason="progress_decrease",
        )
    earned = recognized_to_date(contract.terms.fee, percent, contract.currency)
    state = ProgressState(
        last.seq + 1,
        "adjustment" if percent < last.percent_complete else "progress",
        on,
        percent,
        earned,
        last.billed,
        None,
    )
    _append(conn, book_id, contract.id, state)
    delta = earned - last.earned
    if delta:
        post_entry(conn, book_id, _progress_entry(contract, last, state, delta))
    return state


def _progress_entry(
    contract: Contract, before: ProgressState, after: ProgressState, delta: Decimal
) -> JournalEntry:
    c = contract.currency
    u0, d0 = contract_position(before.earned, before.billed)
    u1, d1 = contract_position(after.earned, after.billed)
    customer, doc = str(contract.customer_id), f"contract:{contract.id}"
    dims = {"via": "progress", "percent_complete": str(after.percent_complete)}
    postings = [Posting(SERVICES, Money(-delta, c), customer, doc, dims)]
    if u1 != u0:
        postings.append(Posting(UNBILLED, Money(u1 - u0, c), customer, doc, dims))
    if d1 != d0:
        postings.append(Posting(DEFERRED, Money(d0 - d1, c), customer, doc, dims))
    return build_entry(
        after.date,
        f"Revenue by progress: {after.percent_complete} % complete",
        postings,
        metadata={"kind": "progress_recognized", "contract": str(contract.id)},
        idempotency_key=f"contract:{contract.id}:progress:{after.seq}",
    )


def progress_line(
    conn: psycopg.Connection, book_id: uuid.UUID, contract: Contract, as_of: date
) -> tuple[LineSpec, ProgressState] | None:
    """The run's line for a percent-complete contract: earned − billed, when
    positive, billed against Unbilled (progress recorded through `as_of`)."""
    history = [s for s in progress_history(conn, book_id, contract.id) if s.date <= as_of]
    if not history:
        return None
    last = _latest(conn, book_id, contract.id)
    earned = history[-1].earned
    due = earned - last.billed
    if due <= 0:
        return None
    assert contract.terms.fee is not None
    text = (
        f"Progress: {history[-1].percent_complete} % of"
        f" {Money(contract.terms.fee, contract.currency).quantized().amount} complete"
    )
    line = LineSpec(text, Decimal(1), due, revenue_account=UNBILLED, kind="progress")
    after = ProgressState(
        last.seq + 1,
        "billed",
        max(as_of, last.date),
        last.percent_complete,
        last.earned,
        last.billed + due,
        None,
    )
    return line, after


def mark_billed(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    contract_id: uuid.UUID,
    state: ProgressState,
    invoice_id: uuid.UUID,
) -> None:
    _append(
        conn,
        book_id,
        contract_id,
        ProgressState(
            state.seq,
            state.kind,
            state.date,
            state.percent_complete,
            state.earned,
            state.billed,
            invoice_id,
        ),
    )
