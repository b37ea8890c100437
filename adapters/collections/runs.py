"""Direct-debit collection runs, end to end (rules in billing.direct_debit):
a run collects the due invoices of mandate customers, posts each as a payment
to the scheme's clearing account and writes the pain.008 or NACHA file; a
returns file reverses what the bank sent back (adapters.collections.returns);
a statement line settles the run (adapters.collections.settlement).

A run is one unit of work: all its payments, transactions and file, or
nothing, so an interrupted run is simply run again. It takes a per-book
advisory lock, so two runs never pick the same invoice; the partial unique
index `uq_collection_transactions_unsettled` is the database's own guarantee
(a violation is a 409, nothing written). Customers, then invoices, are locked
before the amounts due are read, as every payment does. The file is written
once, stored with the run and served as those bytes ever after.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import errors as pg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from adapters.collections.nacha import (
    AchDebit,
    AchOriginator,
    aba_valid,
    write_nacha,
)
from adapters.collections.sepa import (
    CollectionFileError,
    SepaDebit,
    creditor_from_settings,
    write_pain008,
)
from billing.direct_debit import (
    CLEARING,
    CURRENCY,
    METHOD,
    PM_TYPE,
    SCHEMES,
    collection_date,
    end_to_end_id,
    sec_code,
)
from billing.errors import DocumentState, InvalidBillingRequest
from billing.postgres.credit_notes import lock_customer
from billing.postgres.events import record_events
from billing.postgres.fx import functional_currency, has_rates, realized_for_payment
from billing.postgres.ids import parse_id
from billing.postgres.invoices import (
    receivable_amounts,
    record_paid,
)
from billing.postgres.payments import _PAYMENT_COLUMNS, _payments
from billing.postgres.posting import post_entries
from billing.postgres.settings import read_settings
from billing.postings import Allocation, payment_entry
from ledger.entries import JournalEntry
from ledger.errors import NotFound
from ledger.money import Money
from ledger.postgres.books import book_window, ensure_account

__all__ = [
    "NothingToCollect",
    "collection_file",
    "create_collection_run",
    "get_collection_run",
    "list_collection_runs",
]

FILE_IDS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


class NothingToCollect(InvalidBillingRequest):
    """No invoice is due for collection by this scheme (422)."""

    code = "nothing_to_collect"


@dataclass(frozen=True, slots=True)
class _Candidate:
    invoice_id: uuid.UUID
    number: str
    customer_id: uuid.UUID
    customer_name: str
    amount: Decimal
    pm_id: uuid.UUID
    details: dict[str, Any]


def ach_originator(settings: dict[str, Any]) -> AchOriginator:
    raw = settings.get("ach_originator")
    if not isinstance(raw, dict):
        raise CollectionFileError(
            "set the book setting ach_originator (odfi_routing, odfi_name, company_name,"
            " company_id)"
        )
    missing = [
        k for k in ("odfi_routing", "odfi_name", "company_name", "company_id") if not raw.get(k)
    ]
    if missing:
        raise CollectionFileError(f"ach_originator lacks {', '.join(missing)}")
    if not aba_valid(raw["odfi_routing"]):
        raise CollectionFileError("ach_originator.odfi_routing fails the ABA checksum")
    return AchOriginator(
        raw["odfi_routing"],
        raw["odfi_name"],
        raw["company_name"],
        raw["company_id"],
        raw.get("immediate_origin"),
    )


def _chosen_methods(
    conn: psycopg.Connection, book_id: uuid.UUID, customers: Sequence[uuid.UUID]
) -> dict[uuid.UUID, dict[str, Any]]:
    """Per customer: the default payment method, or the only attached one."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "select pm.id, pm.customer_id, pm.type, pm.details, c.default_payment_method"
            " from payment_methods pm join customers c"
            "   on c.book_id = pm.book_id and c.id = pm.customer_id"
            " where pm.book_id = %s and pm.customer_id = any(%s) and pm.detached_at is null"
            " order by pm.created_at, pm.id",
            (book_id, list(customers)),
        ).fetchall()
    by_customer: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for r in rows:
        by_customer.setdefault(r["customer_id"], []).append(r)
    out = {}
    for customer, methods in by_customer.items():
        default = [m for m in methods if m["id"] == m["default_payment_method"]]
        if default:
            out[customer] = default[0]
        elif len(methods) == 1:
            out[customer] = methods[0]
    return out


def _candidates(
    conn: psycopg.Connection, book_id: uuid.UUID, scheme: str, as_of: date
) -> tuple[list[_Candidate], list[dict[str, Any]]]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "select i.id, i.number, i.customer_id, c.name from invoices i"
            " join customers c on c.book_id = i.book_id and c.id = i.customer_id"
            " where i.book_id = %s and i.status = 'open' and i.due_date <= %s"
            " and i.currency = %s and not exists (select 1 from collection_transactions t"
            "  where t.book_id = i.book_id and t.invoice_id = i.id and t.status = 'pending')"
            " order by i.due_date, i.number, i.id",
            (book_id, as_of, CURRENCY[scheme]),
        ).fetchall()
    methods = _chosen_methods(conn, book_id, list({r["customer_id"] for r in rows}))
    rows = [
        r
        for r in rows
        if r["customer_id"] in methods and methods[r["customer_id"]]["type"] == PM_TYPE[scheme]
    ]
    # Customers, then invoices, locked (by id, as payments do) before the amounts
    # are read: a payment racing the run is either seen or waits for it, so a
    # debit is never more than what is still due.
    for customer in sorted({r["customer_id"] for r in rows}):
        lock_customer(conn, book_id, customer)
    still_open = {
        r[0]
        for r in conn.execute(
            "select id, status from invoices where book_id = %s and id = any(%s)"
            " order by id for update",
            (book_id, [r["id"] for r in rows]),
        ).fetchall()
        if r[1] == "open"
    }
    rows = [r for r in rows if r["id"] in still_open]
    due = receivable_amounts(conn, book_id, [r["id"] for r in rows])
    found, skipped = [], []
    for r in rows:
        pm = methods.get(r["customer_id"])
        if pm is None or pm["type"] != PM_TYPE[scheme]:
            continue  # not collected by this scheme
        amount = Decimal(due.get(r["id"], (Decimal(0),))[0])
        if amount <= 0:
            continue
        state = pm["details"].get("mandate_status", "active")
        if state != "active":
            skipped.append(
                {
                    "invoice": str(r["id"]),
                    "number": r["number"],
                    "reason": f"payment method {pm['id']} is {state}",
                }
            )
            continue
        found.append(
            _Candidate(
                r["id"],
                r["number"] or "",
                r["customer_id"],
                r["name"],
                amount,
                pm["id"],
                pm["details"],
            )
        )
    return found, skipped


def _account_numbers(
    conn: psycopg.Connection, book_id: uuid.UUID, pm_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, str]:
    return dict(
        conn.execute(
            "select payment_method_id, account_number from ach_account_numbers"
            " where book_id = %s and payment_method_id = any(%s)",
            (book_id, list(pm_ids)),
        ).fetchall()
    )


def _post_payments(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    scheme: str,
    today: date,
    run_id: uuid.UUID,
    transactions: Sequence[dict[str, Any]],
) -> None:
    """One payment per transaction, allocated to its invoice: what
    billing.postgres.payments.create_payment posts for a named open invoice (the
    payment row, Clearing | AR with the bank reference, realized FX, the
    payment.succeeded and invoice.paid events), in a few statements for the
    whole run. The caller holds the customers' and invoices' locks and has read
    each amount due under them."""
    currency, clearing, method = CURRENCY[scheme], CLEARING[scheme], METHOD[scheme]
    entries: list[JournalEntry] = []
    for t in transactions:
        c: _Candidate = t["candidate"]
        money = Money(c.amount, currency)
        entries.append(
            payment_entry(
                t["payment_id"],
                str(c.customer_id),
                today,
                money,
                clearing,
                [Allocation(str(c.invoice_id), money)],
                t["reference"],
                invoice_numbers=[c.number] if c.number else [],
                customer_name=c.customer_name,
            )
        )
    with conn.cursor() as cur:
        cur.executemany(
            "insert into payments (book_id, id, customer_id, amount, currency, method,"
            " received_on, reference, metadata) values (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    book_id,
                    t["payment_id"],
                    t["candidate"].customer_id,
                    t["candidate"].amount,
                    currency,
                    method,
                    today,
                    t["reference"],
                    Jsonb({"collection_run": str(run_id), "collection_transaction": str(t["id"])}),
                )
                for t in transactions
            ],
        )
    posted = post_entries(conn, book_id, entries)
    conn.execute(
        "update payments p set entry_id = u.entry_id from unnest(%s::uuid[], %s::uuid[])"
        " as u(id, entry_id) where p.book_id = %s and p.id = u.id",
        ([t["payment_id"] for t in transactions], [e.id for e in posted], book_id),
    )
    if currency != functional_currency(conn, book_id) and has_rates(conn, book_id):
        issued: dict[uuid.UUID, date] = dict(
            conn.execute(
                "select id, issue_date from invoices where book_id = %s and id = any(%s)",
                (book_id, [t["candidate"].invoice_id for t in transactions]),
            ).fetchall()
        )
        fx = [
            realized_for_payment(
                conn,
                book_id,
                t["payment_id"],
                str(t["candidate"].customer_id),
                today,
                currency,
                [
                    (
                        Allocation(
                            str(t["candidate"].invoice_id), Money(t["candidate"].amount, currency)
                        ),
                        issued[t["candidate"].invoice_id],
                    )
                ],
            )
            for t in transactions
        ]
        found = [e for e in fx if e is not None]
        if found:
            post_entries(conn, book_id, found)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"select {_PAYMENT_COLUMNS} from payments where book_id = %s and id = any(%s)"
            " order by id",
            (book_id, [t["payment_id"] for t in transactions]),
        ).fetchall()
    record_events(conn, book_id, "payment.succeeded", _payments(conn, book_id, rows))
    record_paid(conn, book_id, [t["candidate"].invoice_id for t in transactions])


def create_collection_run(
    conn: psycopg.Connection, book_id: uuid.UUID, scheme: str, as_of: date, today: date
) -> dict[str, Any]:
    """Collect what is due by `as_of` by SEPA or ACH; the run with its transactions."""
    if scheme not in SCHEMES:
        raise InvalidBillingRequest(f"scheme must be one of {', '.join(SCHEMES)}", field="scheme")
    book_window(conn, book_id).check("as_of", as_of)
    settings = read_settings(conn, book_id)
    # The file's configuration is checked before anything is read or written.
    creditor = creditor_from_settings(settings) if scheme == "sepa" else None
    originator = ach_originator(settings) if scheme == "ach" else None
    conn.execute(
        "select pg_advisory_xact_lock(hashtextextended('ab_collection_run:' || %s::text, 0))",
        (str(book_id),),
    )
    candidates, skipped = _candidates(conn, book_id, scheme, as_of)
    if not candidates:
        raise NothingToCollect(
            f"no open invoice due by {as_of} to collect by {scheme}", skipped=skipped
        )
    numbers: dict[uuid.UUID, str] = {}
    if scheme == "ach":
        numbers = _account_numbers(conn, book_id, [c.pm_id for c in candidates])
        lacking = sorted({str(c.pm_id) for c in candidates if c.pm_id not in numbers})
        if lacking:
            raise InvalidBillingRequest(
                f"payment method(s) {', '.join(lacking)} have no account number on file:"
                " attach the bank account again",
                payment_methods=lacking,
            )
        # The writer puts PPD before CCD; traces follow the order given here.
        candidates.sort(key=lambda c: sec_code(c.details.get("account_holder_type", "")) == "CCD")
    clearing = CLEARING[scheme]
    currency = CURRENCY[scheme]
    ensure_account(conn, book_id, clearing)
    run_id = uuid.uuid4()
    message_id = "CR" + run_id.hex.upper()
    when = collection_date(today, as_of)
    created_at = datetime.now(UTC).replace(microsecond=0)
    prior = conn.execute(
        "select count(*) filter (where r.scheme = 'ach'),"
        " count(*) filter (where r.scheme = 'ach' and r.created_on = %s)"
        " from collection_runs r where r.book_id = %s",
        (today, book_id),
    ).fetchone()
    assert prior is not None
    first_trace = 1 + int(
        conn.execute(
            "select count(*) from collection_transactions t join collection_runs r"
            " on r.book_id = t.book_id and r.id = t.run_id"
            " where t.book_id = %s and r.scheme = 'ach'",
            (book_id,),
        ).fetchone()[0]  # type: ignore[index]
    )
    transactions: list[dict[str, Any]] = []
    for index, c in enumerate(candidates):
        tx_id = uuid.uuid4()
        if scheme == "sepa":
            reference = end_to_end_id(tx_id)
        else:
            assert originator is not None
            reference = originator.odfi_routing[:8] + str(first_trace + index).rjust(7, "0")
        transactions.append(
            {
                "id": tx_id,
                "candidate": c,
                "reference": reference,
                "payment_id": uuid.uuid4(),
                "sequence": c.details.get("sequence", "FRST") if scheme == "sepa" else None,
                "sec": sec_code(c.details.get("account_holder_type", ""))
                if scheme == "ach"
                else None,
            }
        )
    _post_payments(conn, book_id, scheme, today, run_id, transactions)
    total = sum((t["candidate"].amount for t in transactions), Decimal(0))
    if scheme == "sepa":
        assert creditor is not None
        version = str(
            (settings.get("sepa_creditor") or {}).get("pain008_version", "pain.008.001.02")
        )
        file_format = version
        data = write_pain008(
            creditor,
            [
                SepaDebit(
                    end_to_end_id=t["reference"],
                    amount=t["candidate"].amount,
                    mandate_id=t["candidate"].details["mandate_id"],
                    mandate_date=date.fromisoformat(t["candidate"].details["mandate_date"]),
                    sequence=t["sequence"],
                    debtor_name=t["candidate"].customer_name,
                    debtor_iban=t["candidate"].details["iban"],
                    debtor_bic=t["candidate"].details["bic"],
                    remittance=f"Invoice {t['candidate'].number}".strip(),
                    collection_date=when,
                )
                for t in transactions
            ],
            message_id=message_id,
            created_at=created_at,
            scheme=version,
        )
    else:
        assert originator is not None
        file_format = "nacha"
        data = write_nacha(
            originator,
            [
                AchDebit(
                    sec=t["sec"],
                    routing=t["candidate"].details["routing_number"],
                    account_number=numbers[t["candidate"].pm_id],
                    account_type=t["candidate"].details.get("account_type", "checking"),
                    amount=t["candidate"].amount,
                    name=t["candidate"].customer_name,
                    id_number=(t["candidate"].number or str(t["candidate"].invoice_id))[:15],
                )
                for t in transactions
            ],
            effective_date=when,
            created_at=created_at,
            file_id_modifier=FILE_IDS[int(prior[1]) % len(FILE_IDS)],
            first_trace=first_trace,
        ).encode("ascii")
    conn.execute(
        "insert into collection_runs (book_id, id, scheme, file_format, as_of, created_on,"
        " collection_date, currency, message_id, total, transaction_count, file)"
        " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            book_id,
            run_id,
            scheme,
            file_format,
            as_of,
            today,
            when,
            currency,
            message_id,
            total,
            len(transactions),
            data,
        ),
    )
    try:
        with conn.cursor() as cur:
            cur.executemany(
                "insert into collection_transactions (book_id, id, run_id, invoice_id,"
                " customer_id, payment_method_id, payment_id, amount, currency, reference,"
                " sequence, sec_code) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [
                    (
                        book_id,
                        t["id"],
                        run_id,
                        t["candidate"].invoice_id,
                        t["candidate"].customer_id,
                        t["candidate"].pm_id,
                        t["payment_id"],
                        t["candidate"].amount,
                        currency,
                        t["reference"],
                        t["sequence"],
                        t["sec"],
                    )
                    for t in transactions
                ],
            )
    except pg.UniqueViolation as exc:  # the index backs the advisory lock up
        raise DocumentState(
            "an invoice of this run is already in an unsettled collection; nothing was written",
            constraint=exc.diag.constraint_name,
        ) from None
    first_use = [t["candidate"].pm_id for t in transactions if t["sequence"] == "FRST"]
    if first_use:  # the mandate's next collection is a recurring one
        conn.execute(
            'update payment_methods set details = details || \'{"sequence": "RCUR"}\''
            " where book_id = %s and id = any(%s)",
            (book_id, list(set(first_use))),
        )
    run = get_collection_run(conn, book_id, str(run_id))
    run["skipped"] = skipped
    return run


def _run_row(conn: psycopg.Connection, book_id: uuid.UUID, ref: str) -> dict[str, Any]:
    run_id = parse_id(ref, "collection run")
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "select * from collection_runs where book_id = %s and id = %s", (book_id, run_id)
        ).fetchone()
    if row is None:
        raise NotFound(f"collection run {ref!r} does not exist in this book")
    return row


def get_collection_run(conn: psycopg.Connection, book_id: uuid.UUID, ref: str) -> dict[str, Any]:
    """The run, its transactions and totals (as plain data; amounts as Decimal)."""
    run = _run_row(conn, book_id, ref)
    with conn.cursor(row_factory=dict_row) as cur:
        transactions = cur.execute(
            "select t.*, i.number as invoice_number from collection_transactions t"
            " join invoices i on i.book_id = t.book_id and i.id = t.invoice_id"
            " where t.book_id = %s and t.run_id = %s order by t.reference",
            (book_id, run["id"]),
        ).fetchall()
    by_status: dict[str, Decimal] = {
        "pending": Decimal(0),
        "settled": Decimal(0),
        "returned": Decimal(0),
    }
    for t in transactions:
        by_status[t["status"]] += t["amount"]
    run.pop("file")
    return {**run, "transactions": transactions, "totals": by_status}


def list_collection_runs(conn: psycopg.Connection, book_id: uuid.UUID) -> list[dict[str, Any]]:
    """The book's runs, newest first, without their transactions or file."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "select r.id, r.scheme, r.file_format, r.message_id, r.as_of, r.created_on,"
            " r.collection_date, r.currency, r.status, r.total, r.transaction_count,"
            " r.settlement_entry_id, coalesce((select sum(t.amount) from collection_transactions t"
            "  where t.book_id = r.book_id and t.run_id = r.id and t.status = 'returned'), 0)"
            "  as returned"
            " from collection_runs r where r.book_id = %s order by r.created_at desc, r.id",
            (book_id,),
        ).fetchall()
    return rows


def collection_file(conn: psycopg.Connection, book_id: uuid.UUID, ref: str) -> tuple[bytes, str]:
    """The stored file and its media type."""
    run = _run_row(conn, book_id, ref)
    media = "application/xml" if run["scheme"] == "sepa" else "text/plain"
    return bytes(run["file"]), media
