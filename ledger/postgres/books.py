"""Books, accounts, periods and the book clock in PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from ledger.accounts import AccountType, check_type
from ledger.dates import DateWindow, accepted_dates, accepted_window
from ledger.errors import Conflict, InvalidEntry, NotFound
from ledger.money import check_currency
from ledger.periods import PeriodStatus, parse_period


@dataclass(frozen=True, slots=True)
class Book:
    id: uuid.UUID
    name: str
    base_currency: str
    clock_mode: str
    clock_date: date | None
    created_at: datetime

    def today(self, wall_clock_today: date) -> date:
        """The book's current date: its simulated date, or the real one passed in."""
        return self.clock_date if self.clock_date is not None else wall_clock_today


@dataclass(frozen=True, slots=True)
class AccountSpec:
    name: str
    type: AccountType | None = None
    currencies: Sequence[str] = ()
    code: str | None = None
    min_balance: Decimal | None = None
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Account:
    id: uuid.UUID
    book_id: uuid.UUID
    name: str
    type: AccountType
    currencies: tuple[str, ...]
    code: str | None
    min_balance: Decimal | None
    metadata: dict[str, Any]
    opened_at: datetime
    closed_at: datetime | None


_BOOK_COLUMNS = "id, name, base_currency, clock_mode, clock_date, created_at"
_ACCOUNT_COLUMNS = (
    "id, book_id, name, type, currencies, code, min_balance, metadata, opened_at, closed_at"
)


def _book(row: dict[str, Any]) -> Book:
    return Book(**row)


def _account(row: dict[str, Any]) -> Account:
    return Account(
        **{**row, "type": AccountType(row["type"]), "currencies": tuple(row["currencies"])}
    )


def create_book(
    conn: psycopg.Connection,
    name: str,
    base_currency: str,
    *,
    simulated_date: date | None = None,
    accounts: Sequence[AccountSpec] = (),
) -> Book:
    check_currency(base_currency)
    if not name.strip():
        raise InvalidEntry("a book needs a name")
    book_id = uuid.uuid4()
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"insert into books (id, name, base_currency, clock_mode, clock_date)"
            f" values (%s, %s, %s, %s, %s) returning {_BOOK_COLUMNS}",
            (
                book_id,
                name,
                base_currency,
                "simulated" if simulated_date else "real",
                simulated_date,
            ),
        )
        row = cur.fetchone()
    assert row is not None
    for spec in accounts:
        create_account(conn, book_id, spec)
    return _book(row)


def get_book(conn: psycopg.Connection, book_id: uuid.UUID) -> Book:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(f"select {_BOOK_COLUMNS} from books where id = %s", (book_id,)).fetchone()
    if row is None:
        raise NotFound(f"book {book_id} does not exist")
    return _book(row)


def book_window(conn: psycopg.Connection, book_id: uuid.UUID) -> DateWindow:
    """The dates the book accepts: its accepted_dates setting (read with its
    defaults) around its today — the simulated date, else today in UTC, as the
    entries trigger of migration 0006 reckons it."""
    row = conn.execute(
        "select clock_date, settings, (now() at time zone 'UTC')::date from books where id = %s",
        (book_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"book {book_id} does not exist")
    clock_date, settings, utc_today = row
    return accepted_window(clock_date or utc_today, accepted_dates(settings))


def list_books(conn: psycopg.Connection) -> list[Book]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(f"select {_BOOK_COLUMNS} from books order by created_at").fetchall()
    return [_book(r) for r in rows]


def set_clock(conn: psycopg.Connection, book_id: uuid.UUID, now: date) -> Book:
    """Move a simulated book's clock forward (never back); real-clock books refuse."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "select clock_mode, clock_date from books where id = %s for update", (book_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"book {book_id} does not exist")
        if row["clock_mode"] != "simulated":
            raise Conflict("this book runs on the real clock; only simulated clocks can be moved")
        if now < row["clock_date"]:
            raise Conflict(
                f"the clock only moves forward: it is {row['clock_date']}, cannot go back to {now}"
            )
        book_window(conn, book_id).check("now", now)
        cur.execute("update books set clock_date = %s where id = %s", (now, book_id))
    return get_book(conn, book_id)


def account_id(book_id: uuid.UUID, name: str) -> uuid.UUID:
    """An account's id follows from its book and name. Accounts opened on first use
    (a gateway's clearing account, FX translation, a wallet) may be created in a
    transaction that rolls back; a process that had looked the id up keeps it
    (posting.AccountDirectory), and the account created again later has the same id."""
    return uuid.uuid5(book_id, name)


def ensure_account(
    conn: psycopg.Connection, book_id: uuid.UUID, account: str | AccountSpec
) -> None:
    """Open the account the first time something posts to it: books made before an area
    existed (a gateway's clearing, healthcare's, late fees, FX) lack its accounts.
    Two transactions opening it at once both succeed: the loser's insert is undone in a
    savepoint and the winner's account is visible once it commits (read committed)."""
    spec = AccountSpec(account) if isinstance(account, str) else account
    found = conn.execute(
        "select 1 from accounts where book_id = %s and name = %s", (book_id, spec.name)
    ).fetchone()
    if found is None:
        try:
            with conn.transaction():
                create_account(conn, book_id, spec)
        except psycopg.errors.UniqueViolation:
            pass


def create_account(conn: psycopg.Connection, book_id: uuid.UUID, spec: AccountSpec) -> Account:
    account_type = check_type(spec.name, spec.type)
    currencies = sorted({check_currency(c) for c in spec.currencies})
    if spec.min_balance is not None and not spec.min_balance.is_finite():
        raise InvalidEntry("min_balance must be a finite decimal")
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "insert into accounts"
            " (book_id, id, name, type, currencies, code, min_balance, metadata)"
            f" values (%s, %s, %s, %s, %s, %s, %s, %s) returning {_ACCOUNT_COLUMNS}",
            (
                book_id,
                account_id(book_id, spec.name),
                spec.name,
                account_type.value,
                currencies,
                spec.code,
                spec.min_balance,
                Jsonb(spec.metadata or {}),
            ),
        ).fetchone()
    assert row is not None
    return _account(row)


def list_accounts(conn: psycopg.Connection, book_id: uuid.UUID) -> list[Account]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"select {_ACCOUNT_COLUMNS} from accounts where book_id = %s order by name", (book_id,)
        ).fetchall()
    return [_account(r) for r in rows]


def get_account(conn: psycopg.Connection, book_id: uuid.UUID, ref: str) -> Account:
    """An account by id or by name."""
    try:
        account_id: uuid.UUID | None = uuid.UUID(ref)
    except ValueError:
        account_id = None
    with conn.cursor(row_factory=dict_row) as cur:
        if account_id is not None:
            row = cur.execute(
                f"select {_ACCOUNT_COLUMNS} from accounts where book_id = %s and id = %s",
                (book_id, account_id),
            ).fetchone()
        else:
            row = cur.execute(
                f"select {_ACCOUNT_COLUMNS} from accounts where book_id = %s and name = %s",
                (book_id, ref),
            ).fetchone()
    if row is None:
        raise NotFound(f"account {ref!r} does not exist in this book", account=ref)
    return _account(row)


def _lock_book_writers(conn: psycopg.Connection, book_id: uuid.UUID) -> None:
    """Wait for entries being written in this book to commit, and hold new ones
    back until this transaction ends (writers take the same lock shared)."""
    conn.execute(
        "select pg_advisory_xact_lock(hashtextextended('ab_periods:' || %s::text, 0))",
        (book_id,),
    )


def close_account(conn: psycopg.Connection, book_id: uuid.UUID, ref: str) -> Account:
    account = get_account(conn, book_id, ref)
    _lock_book_writers(conn, book_id)
    conn.execute(
        "update accounts set closed_at = coalesce(closed_at, now()) where book_id = %s and id = %s",
        (book_id, account.id),
    )
    return get_account(conn, book_id, str(account.id))


def set_period_status(
    conn: psycopg.Connection, book_id: uuid.UUID, period: str, status: PeriodStatus
) -> None:
    """Close or reopen a period.

    Closing waits for entries being written in this book to commit (they hold
    the per-book lock shared), so none can land in the period after it closes.
    """
    year, month = (int(part) for part in parse_period(period).split("-"))
    book_window(conn, book_id).check_period("period", year, month)
    _lock_book_writers(conn, book_id)
    conn.execute(
        "insert into periods (book_id, period, status) values (%s, %s, %s)"
        " on conflict (book_id, period) do update"
        " set status = excluded.status, changed_at = now()",
        (book_id, period, status.value),
    )


def period_statuses(conn: psycopg.Connection, book_id: uuid.UUID) -> dict[str, PeriodStatus]:
    rows = conn.execute(
        "select period, status from periods where book_id = %s order by period", (book_id,)
    ).fetchall()
    return {r[0]: PeriodStatus(r[1]) for r in rows}


def closed_periods(conn: psycopg.Connection, book_id: uuid.UUID) -> frozenset[str]:
    """The names ("2026-01") of the book's closed periods."""
    return frozenset(
        name
        for name, status in period_statuses(conn, book_id).items()
        if status is PeriodStatus.CLOSED
    )
