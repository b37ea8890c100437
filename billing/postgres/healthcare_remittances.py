"""Importing 835 remittances: balanced first, then each claim matched by its
patient control number (CLP01 = our CLM01) and posted, in one transaction.

A file that does not balance at line, claim or file level is refused whole
before anything is read from or written to the book. A trace (TRN02 with the
payer's TRN03) already imported posts nothing. Unmatched claims are listed,
never guessed; what they were paid stays in the remittance clearing account.
Entries are dated the book's today (the day the remittance is posted); the
payer's payment date (BPR16) is kept on the remittance. A claim's status moves
only along its states (`remittance_moves`); a claim the 835 may not move (a
closed one, a paid one denied without a reversal) refuses the file whole.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from billing.healthcare.entries import (
    REMITTANCE_CLEARING,
    ClaimRef,
    adjudicated_status,
    claim_remittance_entry,
    remittance_moves,
    remittance_payment_entry,
)
from billing.healthcare.remittance import (
    DENIALS,
    PLB_ACCOUNTS,
    PROVIDER_ADJUSTMENTS,
    REVERSAL_STATUS,
    AdjustmentRules,
    InvalidRemittance,
    Remittance,
    adjudication,
    check_balance,
    claim_postings,
)
from billing.postgres.posting import post_entries
from billing.postgres.settings import read_settings
from ledger.entries import JournalEntry
from ledger.postgres.books import ensure_account, get_book

Row = dict[str, Any]
POST_BATCH = 1000  # entries per post_entries call (one statement each)


def _text(amount: Decimal) -> str:
    return f"{amount:.2f}"


def _claim_rows(
    conn: psycopg.Connection, book_id: uuid.UUID, numbers: Sequence[str]
) -> dict[str, Row]:
    rows = conn.execute(
        "select c.control_number, c.id, c.encounter_id, c.payer_id, e.patient_id, c.status,"
        " v.priority, p.payer_id"
        " from claims c join encounters e on e.book_id = c.book_id and e.id = c.encounter_id"
        " join coverages v on v.book_id = c.book_id and v.id = c.coverage_id"
        " join payers p on p.book_id = c.book_id and p.id = c.payer_id"
        " where c.book_id = %s and c.control_number = any(%s) order by c.id for update of c",
        (book_id, list(numbers)),
    ).fetchall()
    return {
        r[0]: {
            "id": r[1],
            "encounter": r[2],
            "payer": r[3],
            "patient": r[4],
            "status": r[5],
            "priority": r[6],
            "payer_code": r[7],
        }
        for r in rows
    }


def _has_remittance_postings(conn: psycopg.Connection, book_id: uuid.UUID, claim_id: Any) -> bool:
    row = conn.execute(
        "select 1 from postings where book_id = %s and document = %s limit 1",
        (book_id, f"claim:{claim_id}"),
    ).fetchone()
    return row is not None


def import_remittances(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    remittances: Sequence[Remittance],
    file_sha256: str,
    today: date,
    rules: AdjustmentRules | None = None,
) -> Row:
    if rules is None:
        # OA/PI (and any GROUP-CARC) may be pointed elsewhere by the book's setting.
        overrides = read_settings(conn, book_id).get("healthcare_adjustment_accounts") or {}
        rules = AdjustmentRules(overrides=overrides)
    for remittance in remittances:
        check_balance(remittance)  # before anything is written
    currency = get_book(conn, book_id).base_currency
    results = []
    entries: list[JournalEntry] = []
    for remittance in remittances:
        result, made = _one_remittance(
            conn, book_id, remittance, file_sha256, today, rules, currency
        )
        results.append(result)
        entries += made
    if entries:
        accounts = {p.account for e in entries for p in e.postings}
        opened_on_use = {REMITTANCE_CLEARING, PROVIDER_ADJUSTMENTS, *PLB_ACCOUNTS.values()}
        for name in sorted(accounts & opened_on_use):
            ensure_account(conn, book_id, name)
        for start in range(0, len(entries), POST_BATCH):
            post_entries(conn, book_id, entries[start : start + POST_BATCH])
    return {
        "object": "remittance_import",
        "file_sha256": file_sha256,
        "remittances": results,
        "claims": [c for r in results for c in r["claims"]],
        "unmatched": [u for r in results for u in r["unmatched"]],
    }


def _duplicate(conn: psycopg.Connection, book_id: uuid.UUID, remittance: Remittance) -> Row | None:
    """The answer for a trace already imported: what it said then, and nothing posted."""
    found = conn.execute(
        "select id, summary from remittances where book_id = %s and originator = %s"
        " and trace_number = %s",
        (book_id, remittance.originator, remittance.trace_number),
    ).fetchone()
    if found is None:
        return None
    return {**found[1], "id": str(found[0]), "duplicate": True, "claims": [], "unmatched": []}


def _one_remittance(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    remittance: Remittance,
    file_sha256: str,
    today: date,
    rules: AdjustmentRules,
    currency: str,
) -> tuple[Row, list[JournalEntry]]:
    found = _duplicate(conn, book_id, remittance)
    if found is not None:
        return found, []
    remittance_id = uuid.uuid4()
    matched = _claim_rows(conn, book_id, [c.control_number for c in remittance.claims])
    entries: list[JournalEntry] = []
    claims_out, unmatched = [], []
    # claim id → (status, the adjudication kept for the next payer, submitted by the 835)
    statuses: dict[Any, tuple[str, dict[str, object] | None, bool]] = {}
    for index, clp in enumerate(remittance.claims):
        row = matched.get(clp.control_number)
        summary = {
            "control_number": clp.control_number,
            "status_code": clp.status,
            "charge": _text(clp.charge),
            "paid": _text(clp.paid),
            "adjusted": _text(clp.adjusted("CO", "OA", "PI", "CR")),
            "patient_responsibility": _text(clp.adjusted("PR")),
        }
        if row is None:
            unmatched.append(summary)
            continue
        if clp.status == REVERSAL_STATUS and not _has_remittance_postings(conn, book_id, row["id"]):
            raise InvalidRemittance(
                f"claim {clp.control_number!r} is reversed (CLP02 = 22) but was never"
                " adjudicated in this book; nothing was posted",
                claim=clp.control_number,
            )
        lines = claim_postings(clp, rules, secondary=row["priority"] != "primary")
        denied = sum((p.amount for p in lines if p.account == DENIALS), Decimal(0))
        status = adjudicated_status(clp.status, clp.paid, clp.adjusted("PR"), denied)
        reversed_ = clp.status == REVERSAL_STATUS
        moves = remittance_moves(row["status"], status, reversal=reversed_)
        if moves is None:
            hint = "" if reversed_ else " (a payer changing its decision reverses it first)"
            raise InvalidRemittance(
                f"claim {clp.control_number!r} is {row['status']} and this 835 would make it"
                f" {status}, which its states do not allow{hint}; nothing was posted",
                claim=clp.control_number,
                claim_status=row["status"],
                new_status=status,
            )
        ref = ClaimRef(
            str(row["id"]),
            clp.control_number,
            str(row["encounter"]),
            str(row["patient"]),
            str(row["payer"]),
        )
        entry = claim_remittance_entry(remittance_id, index, ref, lines, currency, today, status)
        if entry is not None:
            entries.append(entry)
        statuses[row["id"]] = (
            status,
            None if reversed_ else adjudication(clp, row["payer_code"], today),
            "submitted" in moves,
        )
        claims_out.append({**summary, "claim": str(row["id"]), "status": status})
    payment = remittance_payment_entry(
        remittance_id,
        remittance.trace_number,
        remittance.claims_paid(),
        remittance.payment_total,
        remittance.provider_adjustments,
        currency,
        today,
    )
    if payment is not None:
        entries.append(payment)
    result = {
        "id": str(remittance_id),
        "trace_number": remittance.trace_number,
        "payer_name": remittance.payer_name,
        "payment_total": _text(remittance.payment_total),
        "paid_on": remittance.paid_on.isoformat() if remittance.paid_on else None,
        "claim_count": len(remittance.claims),
        "claims_paid": _text(remittance.claims_paid()),
        "provider_adjustments": [
            {"reason": p.reason, "reference": p.reference, "amount": _text(p.amount)}
            for p in remittance.provider_adjustments
        ],
        "duplicate": False,
    }
    # A concurrent import of the same trace waits here for the first to commit, then
    # finds the trace taken: it posts nothing, as a later repeat would.
    inserted = conn.execute(
        "insert into remittances (book_id, id, trace_number, originator, payer_name,"
        " payment_total, method, paid_on, file_sha256, summary)"
        " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " on conflict (book_id, originator, trace_number) do nothing returning id",
        (
            book_id,
            remittance_id,
            remittance.trace_number,
            remittance.originator,
            remittance.payer_name,
            remittance.payment_total,
            remittance.method,
            remittance.paid_on,
            file_sha256,
            Jsonb({**result, "matched": len(claims_out), "unmatched": len(unmatched)}),
        ),
    ).fetchone()
    if inserted is None:
        taken = {**result, "duplicate": True, "claims": [], "unmatched": []}
        return _duplicate(conn, book_id, remittance) or taken, []
    for claim_id, (status, decided, submitted) in statuses.items():
        # A claim the 835 shows was submitted (a draft sent another way) is dated now.
        conn.execute(
            "update claims set status = %s, adjudication = %s, submitted_at = case when %s"
            " then coalesce(submitted_at, now()) else submitted_at end"
            " where book_id = %s and id = %s",
            (status, Jsonb(decided) if decided else None, submitted, book_id, claim_id),
        )
    return {**result, "claims": claims_out, "unmatched": unmatched}, entries
