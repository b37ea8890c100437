"""Financial statements: trial balance, balance sheet and income statement.

Figures are per currency (no translation: the ledger holds no FX rates).
As of a date they come from the daily balance projection; "as recorded at"
a past time they are read from the postings themselves, keeping only entries
whose `recorded_at` is at or before that time, so a back-dated entry recorded
later does not change what the book showed then.

Signs: the ledger is debit-positive. Statements present assets and expenses
debit-positive, liabilities, equity and income credit-positive; contra
accounts (allowance, contra-revenue) therefore show as negative amounts.
"""

from __future__ import annotations

import calendar
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg

from adapters.exports.errors import InvalidRange
from ledger.balances import TrialBalanceLine, trial_balance

_BALANCE_SHEET = ("asset", "liability", "equity")
_INCOME_STATEMENT = ("income", "expense")


@dataclass(frozen=True, slots=True)
class AccountTotal:
    account: str
    type: str
    code: str | None
    currency: str
    balance: Decimal  # signed, debit positive


def account_totals(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    *,
    date_to: date,
    date_from: date | None = None,
    recorded_at: datetime | None = None,
) -> list[AccountTotal]:
    """Net movement per account and currency over [date_from, date_to] (inclusive;
    from the beginning when date_from is None), non-zero only, sorted by account."""
    lo = date_from or date.min
    if recorded_at is None:
        rows = conn.execute(
            "select a.name, a.type, a.code, b.currency, b.total from ("
            "  select account_id, currency, sum(amount) as total from account_balances"
            "   where book_id = %s and balance_date between %s and %s"
            "   group by account_id, currency"
            " ) b join accounts a on a.book_id = %s and a.id = b.account_id",
            (book_id, lo, date_to, book_id),
        ).fetchall()
    else:
        rows = conn.execute(
            "select a.name, a.type, a.code, b.currency, b.total from ("
            "  select p.account_id, p.currency, sum(p.amount) as total"
            "    from postings p join journal_entries e"
            "      on e.book_id = p.book_id and e.id = p.entry_id"
            "   where p.book_id = %s and p.effective_date between %s and %s"
            "     and e.recorded_at <= %s"
            "   group by p.account_id, p.currency"
            " ) b join accounts a on a.book_id = %s and a.id = b.account_id",
            (book_id, lo, date_to, recorded_at, book_id),
        ).fetchall()
    totals = [AccountTotal(*row) for row in rows if row[4] != 0]
    return sorted(totals, key=lambda t: (t.account, t.currency))


def trial_balance_lines(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    as_of: date,
    recorded_at: datetime | None = None,
) -> list[TrialBalanceLine]:
    totals = account_totals(conn, book_id, date_to=as_of, recorded_at=recorded_at)
    return trial_balance({(t.account, t.currency): t.balance for t in totals})


def _line(total: AccountTotal, sign: int) -> dict[str, Any]:
    return {
        "account": total.account,
        "code": total.code,
        "amount": str(total.balance * sign),
    }


def _zero(currency_amounts: list[Decimal]) -> Decimal:
    return sum(currency_amounts, Decimal(0))


def balance_sheet(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    as_of: date,
    recorded_at: datetime | None = None,
) -> dict[str, Any]:
    totals = account_totals(conn, book_id, date_to=as_of, recorded_at=recorded_at)
    by_currency: dict[str, list[AccountTotal]] = defaultdict(list)
    for t in totals:
        by_currency[t.currency].append(t)
    out: dict[str, Any] = {}
    for currency, items in sorted(by_currency.items()):
        assets = [t for t in items if t.type == "asset"]
        liabilities = [t for t in items if t.type == "liability"]
        equity = [t for t in items if t.type == "equity"]
        earnings_items = [t for t in items if t.type in _INCOME_STATEMENT]
        total_assets = _zero([t.balance for t in assets])
        total_liabilities = -_zero([t.balance for t in liabilities])
        total_equity = -_zero([t.balance for t in equity])
        earnings = -_zero([t.balance for t in earnings_items])
        right = total_liabilities + total_equity + earnings
        out[currency] = {
            "assets": [_line(t, 1) for t in assets],
            "total_assets": str(total_assets),
            "liabilities": [_line(t, -1) for t in liabilities],
            "total_liabilities": str(total_liabilities),
            "equity": [_line(t, -1) for t in equity],
            "current_earnings": str(earnings),
            "total_equity": str(total_equity + earnings),
            "total_liabilities_and_equity": str(right),
            "balanced": total_assets == right,
        }
    return {
        "as_of": as_of.isoformat(),
        "as_recorded_at": recorded_at.isoformat() if recorded_at else None,
        "currencies": out,
    }


def _income_block(totals: list[AccountTotal]) -> dict[str, Any]:
    by_currency: dict[str, list[AccountTotal]] = defaultdict(list)
    for t in totals:
        if t.type in _INCOME_STATEMENT:
            by_currency[t.currency].append(t)
    out: dict[str, Any] = {}
    for currency, items in sorted(by_currency.items()):
        income = [t for t in items if t.type == "income"]
        expenses = [t for t in items if t.type == "expense"]
        total_income = -_zero([t.balance for t in income])
        total_expenses = _zero([t.balance for t in expenses])
        out[currency] = {
            "income": [_line(t, -1) for t in income],
            "total_income": str(total_income),
            "expenses": [_line(t, 1) for t in expenses],
            "total_expenses": str(total_expenses),
            "net_income": str(total_income - total_expenses),
        }
    return out


def month_periods(date_from: date, date_to: date) -> list[tuple[date, date]]:
    """Calendar months cut to [date_from, date_to]."""
    periods: list[tuple[date, date]] = []
    start = date_from
    while start <= date_to:
        last = start.replace(day=calendar.monthrange(start.year, start.month)[1])
        end = min(last, date_to)
        periods.append((start, end))
        start = last + timedelta(days=1)
    return periods


def income_statement(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    date_from: date,
    date_to: date,
    *,
    by: str | None = None,
    recorded_at: datetime | None = None,
) -> dict[str, Any]:
    if date_to < date_from:
        raise InvalidRange(
            f"the range ends ({date_to}) before it starts ({date_from})",
            date_from=date_from.isoformat(),
            date_to=date_to.isoformat(),
        )
    if by not in (None, "month"):
        raise InvalidRange(f"by must be 'month' (got {by!r})")
    totals = account_totals(
        conn, book_id, date_from=date_from, date_to=date_to, recorded_at=recorded_at
    )
    document: dict[str, Any] = {
        "from": date_from.isoformat(),
        "to": date_to.isoformat(),
        "as_recorded_at": recorded_at.isoformat() if recorded_at else None,
        "currencies": _income_block(totals),
    }
    if by == "month":
        document["periods"] = [
            {
                "from": lo.isoformat(),
                "to": hi.isoformat(),
                "currencies": _income_block(
                    account_totals(conn, book_id, date_from=lo, date_to=hi, recorded_at=recorded_at)
                ),
            }
            for lo, hi in month_periods(date_from, date_to)
        ]
    return document


def trial_balance_document(
    lines: list[TrialBalanceLine], as_of: date, recorded_at: datetime | None
) -> dict[str, Any]:
    totals: dict[str, tuple[Decimal, Decimal]] = {}
    for line in lines:
        debit, credit = totals.get(line.currency, (Decimal(0), Decimal(0)))
        totals[line.currency] = (debit + line.debit, credit + line.credit)
    return {
        "as_of": as_of.isoformat(),
        "as_recorded_at": recorded_at.isoformat() if recorded_at else None,
        "lines": [
            {
                "account": line.account,
                "currency": line.currency,
                "debit": str(line.debit),
                "credit": str(line.credit),
                "balance": str(line.balance),
            }
            for line in lines
        ],
        "totals": {c: {"debit": str(d), "credit": str(k)} for c, (d, k) in sorted(totals.items())},
    }
