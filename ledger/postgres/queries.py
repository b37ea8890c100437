"""Balances and the trial balance, read from the materialized daily balances."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

import psycopg

from ledger.balances import TrialBalanceLine, trial_balance


def account_balance(
    conn: psycopg.Connection, book_id: uuid.UUID, account_id: uuid.UUID, as_of: date
) -> dict[str, Decimal]:
    """Signed balance per currency at the end of `as_of` (inclusive)."""
    rows = conn.execute(
        "select currency, sum(amount) from account_balances"
        " where book_id = %s and account_id = %s and balance_date <= %s"
        " group by currency order by currency",
        (book_id, account_id, as_of),
    ).fetchall()
    return {currency: amount for currency, amount in rows}


def trial_balance_as_of(
    conn: psycopg.Connection, book_id: uuid.UUID, as_of: date
) -> list[TrialBalanceLine]:
    rows = conn.execute(
        "select a.name, b.currency, b.total from ("
        "  select account_id, currency, sum(amount) as total from account_balances"
        "   where book_id = %s and balance_date <= %s group by account_id, currency"
        " ) b join accounts a on a.book_id = %s and a.id = b.account_id",
        (book_id, as_of, book_id),
    ).fetchall()
    return trial_balance({(name, currency): total for name, currency, total in rows})


def compact_balances(conn: psycopg.Connection, book_id: uuid.UUID, before: date) -> int:
    """Fold the per-writer slots of days before `before` into one row per day."""
    row = conn.execute("select ab_compact_balances(%s, %s)", (book_id, before)).fetchone()
    return int(row[0]) if row else 0
