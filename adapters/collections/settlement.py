"""A collection's money reaching the bank, seen on the statement.

Auto-matching a bank account (adapters.reconciliation.store.run_auto_match)
first offers its open lines here. A credit line settles:

- a whole run, when it names the run's message id (as bank reference,
  end-to-end id or in its remittance text) and its amount is what the run
  still has unsettled (its pending transactions: net of anything returned
  before the bank credited it);
- one transaction, when it names that transaction's end-to-end id or trace
  number and has its amount.

Settling posts Bank | Clearing (billing.direct_debit.settlement_entry) on the
line's booking date and marks the transactions settled; the caller matches
the line to the entry's bank posting (its line 1). A credit may also be the
run's gross total, debits returned before it included: the bank then takes
those back by debit lines naming each one (end-to-end id or trace, same
amount), which post Clearing | Bank (return_debit_entry) the same way. Lines
naming nothing, or with another amount, are left to the ordinary matching
rules (or to a manual match).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import psycopg

from adapters.reconciliation.matching import BankLine
from billing.direct_debit import CLEARING, return_debit_entry, settlement_entry
from billing.postgres.posting import post_entries
from ledger.money import Money
from ledger.postgres.books import ensure_account

__all__ = ["settle_from_lines"]

BANK_ACCOUNTS = "Assets:Bank:"  # the statements a collection's credit appears on
_TOKEN = re.compile(r"[A-Za-z0-9]{10,35}")


def _references(line: BankLine) -> set[str]:
    found = {x.strip().upper() for x in (line.bank_reference, line.end_to_end_id) if x}
    found |= {t.upper() for t in _TOKEN.findall(line.remittance_info or "")}
    return found


def settle_from_lines(
    conn: psycopg.Connection, book_id: uuid.UUID, account_name: str, lines: Sequence[BankLine]
) -> list[tuple[BankLine, uuid.UUID]]:
    """Settle what the lines name; (line, entry id) for each line used."""
    if not account_name.startswith(BANK_ACCOUNTS):
        return []
    found = {x.id: _references(x) for x in lines if x.amount != 0}  # once per line
    named = [x for x in lines if found.get(x.id)]
    if not named:
        return []
    refs = sorted(set().union(*(found[x.id] for x in named)))
    locked = conn.execute(
        "select id from collection_runs where book_id = %s and message_id = any(%s)"
        " and status = 'submitted' order by id for update",
        (book_id, refs),
    ).fetchall()
    runs = {
        r[1]: r
        for r in conn.execute(
            "select r.id, r.message_id, r.scheme, r.currency,"
            " coalesce(sum(t.amount) filter (where t.status = 'pending'), 0),"
            " coalesce(sum(t.amount) filter (where t.status = 'returned'"
            "   and t.settled_on is null), 0)"
            " from collection_runs r join collection_transactions t"
            "   on t.book_id = r.book_id and t.run_id = r.id"
            " where r.book_id = %s and r.id = any(%s) group by r.book_id, r.id",
            (book_id, [r[0] for r in locked]),
        ).fetchall()
    }
    transactions = {
        r[1]: r
        for r in conn.execute(
            "select t.id, t.reference, r.scheme, t.currency, t.amount, t.status, t.settled_on"
            " from collection_transactions t join collection_runs r"
            "   on r.book_id = t.book_id and r.id = t.run_id"
            " where t.book_id = %s and t.reference = any(%s) and t.status <> 'settled'"
            " order by t.id for update of t",
            (book_id, refs),
        ).fetchall()
    }
    if not runs and not transactions:
        return []  # the lines name nothing open: the usual case of an auto-match
    out = []
    for line in named:
        names = sorted(found[line.id])
        run = next((runs[m] for m in names if m in runs), None) if line.amount > 0 else None
        if run is not None and run[3] == line.currency:
            pending, returned = Decimal(run[4]), Decimal(run[5])
            # Net of what was returned before the bank credited the run, or gross.
            if line.amount in (pending, pending + returned):
                runs.pop(run[1])
                out.append((line, _settle_run(conn, book_id, account_name, run, line)))
                continue
        tx = next((transactions[m] for m in names if m in transactions), None)
        if tx is None or tx[3] != line.currency or Decimal(tx[4]) != abs(line.amount):
            continue
        transactions.pop(tx[1])
        if line.amount > 0 and tx[5] == "pending":
            entry = _settle(conn, book_id, account_name, str(tx[0]), tx[2], line, tx[1])
            conn.execute(
                "update collection_transactions set status = 'settled', settled_on = %s"
                " where book_id = %s and id = %s",
                (line.booking_date, book_id, tx[0]),
            )
            out.append((line, entry))
        elif line.amount < 0 and tx[5] == "returned" and tx[6] is not None:
            # The bank debits a return of money it had credited: clearing back to 0.
            debit = return_debit_entry(
                str(tx[0]),
                line.booking_date,
                CLEARING[tx[2]],
                Money(-line.amount, line.currency),
                tx[1],
                account_name,
            )
            posted = post_entries(conn, book_id, [debit])[0]
            if posted.created:
                out.append((line, posted.id))
    return out


def _settle_run(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    bank: str,
    run: tuple[Any, ...],
    line: BankLine,
) -> uuid.UUID:
    entry = _settle(conn, book_id, bank, str(run[0]), run[2], line, run[1])
    # Gross: the credit includes debits returned before it, which the bank will
    # take back by a debit line of its own (see settle_from_lines).
    gross = line.amount != Decimal(run[4])
    conn.execute(
        "update collection_transactions set settled_on = %s,"
        " status = case when status = 'pending' then 'settled' else status end"
        " where book_id = %s and run_id = %s and settled_on is null"
        " and (status = 'pending' or (%s and status = 'returned'))",
        (line.booking_date, book_id, run[0], gross),
    )
    conn.execute(
        "update collection_runs set status = 'settled', settlement_entry_id = %s"
        " where book_id = %s and id = %s",
        (entry, book_id, run[0]),
    )
    return entry


def _settle(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    bank: str,
    key: str,
    scheme: str,
    line: BankLine,
    reference: str,
) -> uuid.UUID:
    clearing = CLEARING[scheme]
    ensure_account(conn, book_id, clearing)
    money = Money(line.amount, line.currency)
    entry = settlement_entry(key, line.booking_date, clearing, money, reference, bank)
    return post_entries(conn, book_id, [entry])[0].id
