"""The bank's answers to a collection run: pain.002 rejects, camt.054
R-transactions and NACHA returns (format detected), each returned debit
reversed once (billing.direct_debit.return_entry), its payment marked failed,
its mandate moved to the state its reason code implies, and an optional
return fee invoiced. A file naming a transaction this book never collected
(or another amount) is refused whole; a file seen before changes nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from adapters.collections.nacha import parse_nacha_returns
from adapters.collections.sepa import CollectionFileError, parse_sepa_returns
from billing.direct_debit import CLEARING, mandate_state_after, return_entry
from billing.errors import InvalidBillingRequest, UnknownReference
from billing.postgres.credit_notes import lock_customer, lock_invoices
from billing.postgres.events import record_event
from billing.postgres.invoices import LineSpec, create_draft, finalize_invoice
from billing.postgres.payments import get_payment
from billing.postgres.posting import post_entries
from billing.postgres.settings import read_settings
from ledger.money import Money

__all__ = ["ReturnItem", "import_collection_returns", "parse_returns"]

WHOLE_RUN = "message:"  # a ReturnItem naming a whole run by its message id


@dataclass(frozen=True, slots=True)
class ReturnItem:
    reference: str  # SEPA end-to-end id, or ACH original trace number
    code: str | None
    reason: str | None
    amount: Decimal | None
    message: str  # pain.002, camt.054 or nacha


def parse_returns(data: bytes) -> tuple[str, list[ReturnItem]]:
    """Detect the format (XML: pain.002 or camt.054; a `1` record: NACHA) and read it."""
    head = data.lstrip()[:1]
    if head == b"<":
        try:
            found = parse_sepa_returns(data)
        except CollectionFileError as exc:
            original = exc.fields.get("original_message")
            if not isinstance(original, str):
                raise
            # A whole pain.008 rejected: every debit of the run with that message id.
            reason = exc.fields.get("reason")
            code = reason if isinstance(reason, str) else None
            item = ReturnItem(WHOLE_RUN + original, code, "message rejected", None, "pain.002")
            return "pain.002", [item]
        items = [
            ReturnItem(r.end_to_end_id, r.reason, r.additional_info, r.amount, r.message)
            for r in found
        ]
        return (found[0].message if found else "sepa"), items
    if head == b"1":
        items = [
            ReturnItem(r.original_trace, r.return_code, r.reason, r.amount, "nacha")
            for r in parse_nacha_returns(data)
        ]
        return "nacha", items
    raise CollectionFileError("not a pain.002, camt.054 or NACHA return file")


def _whole_runs(
    conn: psycopg.Connection, book_id: uuid.UUID, items: list[ReturnItem]
) -> list[ReturnItem]:
    """Items naming a whole run (a group-rejected pain.008) as one item per debit."""
    out = []
    for item in items:
        if not item.reference.startswith(WHOLE_RUN):
            out.append(item)
            continue
        message_id = item.reference.removeprefix(WHOLE_RUN)
        references = [
            r[0]
            for r in conn.execute(
                "select t.reference from collection_transactions t join collection_runs r"
                " on r.book_id = t.book_id and r.id = t.run_id"
                " where t.book_id = %s and r.message_id = %s order by t.reference",
                (book_id, message_id),
            )
        ]
        if not references:
            raise UnknownReference(
                f"the returns file rejects message {message_id}, which this book never sent;"
                " nothing was written",
                references=[message_id],
            )
        out += [ReturnItem(ref, item.code, item.reason, None, item.message) for ref in references]
    return out


def _return_fee(settings: dict[str, Any]) -> Decimal | None:
    raw = settings.get("direct_debit_return_fee")
    if raw is None:
        return None
    fee = Decimal(str(raw))
    return fee if fee > 0 else None


def import_collection_returns(
    conn: psycopg.Connection, book_id: uuid.UUID, data: bytes, today: date
) -> dict[str, Any]:
    """Reverse each returned transaction once; a file naming an unknown one writes nothing."""
    file_format, items = parse_returns(data)
    if not items:
        raise CollectionFileError("the file returns no transaction")
    items = _whole_runs(conn, book_id, items)
    references = list(dict.fromkeys(i.reference for i in items))
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "select t.*, r.scheme from collection_transactions t join collection_runs r"
            " on r.book_id = t.book_id and r.id = t.run_id"
            " where t.book_id = %s and t.reference = any(%s)",
            (book_id, references),
        ).fetchall()
    known = {r["reference"]: r for r in rows}
    scheme = "ach" if file_format == "nacha" else "sepa"
    unknown = [ref for ref in references if ref not in known or known[ref]["scheme"] != scheme]
    if unknown:
        raise UnknownReference(
            f"the returns file names transaction(s) this book never collected by {scheme}:"
            f" {', '.join(unknown)}; nothing was written",
            references=unknown,
        )
    for item in items:
        t = known[item.reference]
        if item.amount is not None and item.amount != t["amount"]:
            raise InvalidBillingRequest(
                f"{item.reference}: the file returns {item.amount}, the collection was"
                f" {t['amount']}; nothing was written",
                reference=item.reference,
            )
    settings = read_settings(conn, book_id)
    fee = _return_fee(settings)
    results = []
    seen: set[str] = set()
    for item in items:
        if item.reference in seen:
            continue
        seen.add(item.reference)
        results.append(_return_one(conn, book_id, known[item.reference], item, today, fee))
    fresh = sum(1 for r in results if not r["duplicate"])
    return {
        "object": "collection_return_import",
        "format": file_format,
        "processed": fresh,
        "duplicates": len(results) - fresh,
        "returns": results,
    }


def _return_one(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    t: dict[str, Any],
    item: ReturnItem,
    today: date,
    fee: Decimal | None,
) -> dict[str, Any]:
    lock_customer(conn, book_id, t["customer_id"])
    lock_invoices(conn, book_id, [t["invoice_id"]])
    with conn.cursor(row_factory=dict_row) as cur:
        current = cur.execute(
            "select status, return_code, fee_invoice_id from collection_transactions"
            " where book_id = %s and id = %s for update",
            (book_id, t["id"]),
        ).fetchone()
        pm = cur.execute(
            "select details from payment_methods where book_id = %s and id = %s for update",
            (book_id, t["payment_method_id"]),
        ).fetchone()
    assert current is not None and pm is not None
    outcome = mandate_state_after(item.code)
    base = {
        "transaction": str(t["id"]),
        "reference": t["reference"],
        "invoice": str(t["invoice_id"]),
        "amount": t["amount"],
        "currency": t["currency"],
        "code": item.code,
        "reason": item.reason,
    }
    if current["status"] == "returned":  # this file, or another naming it, was seen already
        return {
            **base,
            "duplicate": True,
            "code": current["return_code"],
            "mandate_status": pm["details"].get("mandate_status", "active"),
            "fee_invoice": str(current["fee_invoice_id"]) if current["fee_invoice_id"] else None,
        }
    clearing = CLEARING[t["scheme"]]
    entry = return_entry(
        t["id"],
        t["payment_id"],
        str(t["customer_id"]),
        t["invoice_id"],
        today,
        clearing,
        Money(t["amount"], t["currency"]),
        item.code,
    )
    posted = post_entries(conn, book_id, [entry])[0]
    changes: dict[str, Any] = {
        "mandate_status": outcome.mandate_state,
        "last_return_code": item.code or "",
    }
    if item.message == "pain.002" and t["sequence"] == "FRST" and outcome.retry:
        changes["sequence"] = "FRST"  # rejected before settlement: the mandate was never used
    conn.execute(
        "update payment_methods set details = details || %s where book_id = %s and id = %s",
        (Jsonb(changes), book_id, t["payment_method_id"]),
    )
    conn.execute(
        "update payments set status = 'failed' where book_id = %s and id = %s",
        (book_id, t["payment_id"]),
    )
    record_event(conn, book_id, "payment.failed", get_payment(conn, book_id, str(t["payment_id"])))
    fee_invoice = None
    if fee is not None:
        draft = create_draft(
            conn,
            book_id,
            str(t["customer_id"]),
            [LineSpec(f"Direct debit return fee ({item.code or 'returned'})", Decimal(1), fee)],
            metadata={
                "collection_transaction": str(t["id"]),
                "returned_invoice": str(t["invoice_id"]),
            },
        )
        assert draft is not None
        fee_invoice = finalize_invoice(conn, book_id, str(draft.id), today).id
    conn.execute(
        "update collection_transactions set status = 'returned', returned_on = %s,"
        " return_code = %s, return_reason = %s, return_entry_id = %s, fee_invoice_id = %s"
        " where book_id = %s and id = %s",
        (today, item.code, item.reason, posted.id, fee_invoice, book_id, t["id"]),
    )
    return {
        **base,
        "duplicate": False,
        "mandate_status": outcome.mandate_state,
        "entry": str(posted.id),
        "fee_invoice": str(fee_invoice) if fee_invoice else None,
    }
