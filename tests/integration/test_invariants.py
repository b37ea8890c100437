"""The ledger's invariants hold against a raw session as the application's role.

Each test opens the session a `psql` user would have (`SET ROLE
activebilling_app`), tries to break one invariant with plain SQL, and checks
both the refusal (SQLSTATE and constraint name) and that nothing was written.
Some run the real `psql` binary; the rest use a raw psycopg session.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import errors as pg

from adapters.runtime import Runtime
from ledger.entries import Posting, build_entry
from ledger.errors import AlreadyReversed, InvalidEntry
from ledger.money import Money
from ledger.periods import PeriodStatus
from ledger.postgres.books import AccountSpec, create_account, set_period_status
from ledger.postgres.posting import PostedEntry, get_entry, post_entry, reverse_entry
from ledger.postgres.queries import trial_balance_as_of
from ledger.postgres.sealer import seal_pending
from ledger.postgres.unit_of_work import unit_of_work
from ledger.postgres.verify import verify_book
from tests.conftest import APP_ROLE, BookFixture

PSQL = shutil.which("psql") or "/usr/bin/psql"
DAY = date(2026, 3, 10)

SMALL_SALE = [("Assets:Bank:Operating", "5.00"), ("Income:Usage", "-5.00")]

RawPosting = tuple[uuid.UUID, str, str]  # account id, amount, currency


# -- helpers -------------------------------------------------------------------


def account_ids(conn: psycopg.Connection, book_id: uuid.UUID) -> dict[str, uuid.UUID]:
    rows = conn.execute("select name, id from accounts where book_id = %s", (book_id,))
    return {name: account_id for name, account_id in rows}


def footprint(conn: psycopg.Connection, book_id: uuid.UUID) -> dict[str, Any]:
    """Everything a write to the book could change."""
    queries = {
        "entries": "select id, effective_date, memo, txid from journal_entries"
        " where book_id = %s order by id",
        "postings": "select entry_id, line_no, account_id, amount, currency from postings"
        " where book_id = %s order by entry_id, line_no",
        "seals": "select seq, entry_id, hash from seals where book_id = %s order by seq",
        "unsealed": "select entry_id from unsealed_entries where book_id = %s order by entry_id",
        "daily": "select account_id, currency, balance_date, sum(amount), sum(postings_count)"
        " from account_balances where book_id = %s group by 1, 2, 3 order by 1, 2, 3",
        "guarded": "select account_id, currency, balance from guarded_balances"
        " where book_id = %s order by 1, 2",
        "periods": "select period, status from periods where book_id = %s order by period",
    }
    return {name: conn.execute(q, (book_id,)).fetchall() for name, q in queries.items()}


def insert_entry(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    day: date,
    postings: Sequence[RawPosting],
    *,
    entry_id: uuid.UUID | None = None,
    txid: int | None = None,
) -> uuid.UUID:
    """Plain SQL, as a psql user would write it (no application code): one
    statement inserts the entry and its postings, as the ledger requires."""
    entry_id = entry_id or uuid.uuid4()
    txid_column, txid_value = (", txid", ", %(txid)s") if txid is not None else ("", "")
    values = ", ".join(
        f"(%(l{i})s, %(a{i})s::uuid, %(m{i})s::numeric, %(c{i})s)" for i in range(len(postings))
    )
    params: dict[str, object] = {"book": book_id, "id": entry_id, "day": day, "txid": txid}
    for i, (account_id, amount, currency) in enumerate(postings):
        params.update(
            {f"l{i}": i + 1, f"a{i}": account_id, f"m{i}": Decimal(amount), f"c{i}": currency}
        )
    posting_sql = (
        " insert into postings"
        " (book_id, entry_id, line_no, account_id, amount, currency, effective_date)"
        f" select e.book_id, e.id, v.line_no, v.account_id, v.amount, v.currency, e.effective_date"
        f" from e, (values {values}) as v(line_no, account_id, amount, currency)"
        if postings
        else " select 1 from e"
    )
    conn.execute(
        "with e as (insert into journal_entries"
        f" (book_id, id, effective_date, idempotency_key, request_hash{txid_column})"
        f" values (%(book)s, %(id)s, %(day)s, 'raw:' || %(id)s::text, 'raw'{txid_value})"
        " returning book_id, id, effective_date)" + posting_sql,
        params,
    )
    return entry_id


def insert_postings(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    entry_id: uuid.UUID,
    day: date,
    postings: Sequence[RawPosting],
    first_line: int = 1,
) -> None:
    for line_no, (account_id, amount, currency) in enumerate(postings, start=first_line):
        conn.execute(
            "insert into postings"
            " (book_id, entry_id, line_no, account_id, amount, currency, effective_date)"
            " values (%s, %s, %s, %s, %s, %s, %s)",
            (book_id, entry_id, line_no, account_id, Decimal(amount), currency, day),
        )


def post(runtime: Runtime, book_id: uuid.UUID, lines: Sequence[tuple[str, str]]) -> PostedEntry:
    """A committed entry through the application's own path."""
    entry = build_entry(
        DAY,
        "committed earlier",
        [Posting(account, Money.exact(amount, "USD")) for account, amount in lines],
        idempotency_key=f"t:{uuid.uuid4()}",
    )
    with unit_of_work(runtime.connection) as uow:
        posted = post_entry(uow.conn, book_id, entry)
        uow.commit()
    return posted


def assert_refused(
    exc_info: pytest.ExceptionInfo[psycopg.Error], sqlstate: str, constraint: str | None
) -> None:
    diag = exc_info.value.diag
    assert diag.sqlstate == sqlstate, diag.message_primary
    if constraint is not None:
        assert diag.constraint_name == constraint, diag.message_primary


@pytest.fixture
def committed(runtime: Runtime, book: BookFixture) -> PostedEntry:
    """One sealed entry in the book: 100.00 from the bank to services revenue."""
    posted = post(
        runtime, book.id, [("Assets:Bank:Operating", "100.00"), ("Income:Services", "-100.00")]
    )
    seal_pending(runtime.connection, book.id)
    return posted


@pytest.fixture
def ids(app_conn: psycopg.Connection, book: BookFixture) -> dict[str, uuid.UUID]:
    return account_ids(app_conn, book.id)


def test_the_session_really_is_the_application_role(app_conn: psycopg.Connection) -> None:
    row = app_conn.execute(
        "select current_user, rolsuper from pg_roles where rolname = current_user"
    ).fetchone()
    assert row == (APP_ROLE, False)


# -- append-only ----------------------------------------------------------------

CHANGES = {
    "update journal_entries": "update journal_entries set memo = 'edited' where book_id = %s",
    "delete journal_entries": "delete from journal_entries where book_id = %s",
    "update postings": "update postings set amount = amount * 2 where book_id = %s",
    "delete postings": "delete from postings where book_id = %s",
    "update seals": "update seals set hash = repeat('f', 64) where book_id = %s",
    "delete seals": "delete from seals where book_id = %s",
}


@pytest.mark.parametrize("statement", sorted(CHANGES))
def test_app_role_cannot_update_or_delete_the_ledger(
    statement: str,
    app_conn: psycopg.Connection,
    book: BookFixture,
    committed: PostedEntry,
) -> None:
    before = footprint(app_conn, book.id)
    assert len(before["seals"]) == 1
    with pytest.raises(pg.InsufficientPrivilege) as exc_info:
        app_conn.execute(CHANGES[statement], (book.id,))
    assert_refused(exc_info, "42501", None)
    assert footprint(app_conn, book.id) == before


@pytest.mark.parametrize("table", ["journal_entries", "postings", "seals"])
def test_app_role_cannot_truncate_the_ledger(
    table: str, app_conn: psycopg.Connection, book: BookFixture, committed: PostedEntry
) -> None:
    before = footprint(app_conn, book.id)
    with pytest.raises(pg.InsufficientPrivilege) as exc_info:
        app_conn.execute(f"truncate {table} cascade")
    assert_refused(exc_info, "42501", None)
    assert footprint(app_conn, book.id) == before


@pytest.mark.parametrize("statement", sorted(CHANGES))
def test_even_the_owner_meets_the_append_only_triggers(
    statement: str,
    owner_conn: psycopg.Connection,
    book: BookFixture,
    committed: PostedEntry,
) -> None:
    """Privileges are the first wall; the triggers stop even the tables' owner."""
    before = footprint(owner_conn, book.id)
    table = statement.split()[-1]
    with pytest.raises(pg.CheckViolation) as exc_info:
        owner_conn.execute(CHANGES[statement], (book.id,))
    assert_refused(exc_info, "23514", f"{table}_append_only")
    assert footprint(owner_conn, book.id) == before


@pytest.mark.parametrize("table", ["journal_entries", "postings", "seals"])
def test_even_the_owner_cannot_truncate(
    table: str, owner_conn: psycopg.Connection, book: BookFixture, committed: PostedEntry
) -> None:
    before = footprint(owner_conn, book.id)
    with pytest.raises(pg.CheckViolation) as exc_info:
        owner_conn.execute(f"truncate {table} cascade")
    assert_refused(exc_info, "23514", f"{table}_append_only")
    assert footprint(owner_conn, book.id) == before


# -- balance --------------------------------------------------------------------


@pytest.mark.parametrize(
    "amounts",
    [
        pytest.param(["100.00", "-99.99"], id="unbalanced"),
        pytest.param(["100.00"], id="one-posting"),
        pytest.param(["0.00"], id="one-zero-posting"),
        pytest.param([], id="no-postings"),
        pytest.param(["100.00", "-100.00", "0.01"], id="three-postings-off-by-a-cent"),
    ],
)
def test_app_role_cannot_commit_an_unbalanced_entry(
    amounts: list[str],
    app_conn: psycopg.Connection,
    book: BookFixture,
    ids: dict[str, uuid.UUID],
) -> None:
    before = footprint(app_conn, book.id)
    accounts = [ids["Assets:Bank:Operating"], ids["Income:Services"], ids["Income:Usage"]]
    entry_id = uuid.uuid4()
    with pytest.raises(pg.CheckViolation) as exc_info, app_conn.transaction():
        insert_entry(
            app_conn,
            book.id,
            DAY,
            [(a, amount, "USD") for a, amount in zip(accounts, amounts, strict=False)],
            entry_id=entry_id,
        )
    assert_refused(exc_info, "23514", "journal_entries_balanced")
    assert str(entry_id) in (exc_info.value.diag.message_primary or "")
    assert footprint(app_conn, book.id) == before


def test_balance_is_checked_per_currency(
    app_conn: psycopg.Connection, book: BookFixture, ids: dict[str, uuid.UUID]
) -> None:
    """100 USD against 100 EUR sums to zero as numbers, but not per currency."""
    before = footprint(app_conn, book.id)
    with pytest.raises(pg.CheckViolation) as exc_info, app_conn.transaction():
        insert_entry(
            app_conn,
            book.id,
            DAY,
            [
                (ids["Assets:Bank:Operating"], "100.00", "USD"),
                (ids["Income:Services"], "-100.00", "EUR"),
            ],
        )
    assert_refused(exc_info, "23514", "journal_entries_balanced")
    assert footprint(app_conn, book.id) == before


def test_a_balanced_raw_entry_is_accepted(
    app_conn: psycopg.Connection, book: BookFixture, ids: dict[str, uuid.UUID]
) -> None:
    """The control case: the same raw SQL with balanced postings commits."""
    with app_conn.transaction():
        entry_id = insert_entry(
            app_conn,
            book.id,
            DAY,
            [
                (ids["Assets:Bank:Operating"], "100.00", "USD"),
                (ids["Income:Services"], "-100.00", "USD"),
            ],
        )
    after = footprint(app_conn, book.id)
    assert [row[0] for row in after["entries"]] == [entry_id]
    assert [row[3] for row in after["postings"]] == [Decimal("100.00"), Decimal("-100.00")]
    assert after["unsealed"] == [(entry_id,)]


def test_set_constraints_immediate_does_not_open_a_hole(
    app_conn: psycopg.Connection, book: BookFixture, ids: dict[str, uuid.UUID]
) -> None:
    before = footprint(app_conn, book.id)
    bank, revenue = ids["Assets:Bank:Operating"], ids["Income:Services"]
    with pytest.raises(pg.CheckViolation) as exc_info, app_conn.transaction():
        entry_id = insert_entry(
            app_conn, book.id, DAY, [(bank, "100.00", "USD"), (revenue, "-100.00", "USD")]
        )
        app_conn.execute("set constraints all immediate")
        insert_postings(app_conn, book.id, entry_id, DAY, [(bank, "5.00", "USD")], first_line=3)
    assert exc_info.value.diag.sqlstate == "23514"
    assert footprint(app_conn, book.id) == before


# Revision 0028_hotpath checks the balance at the end of the statement that
# inserts the entry (the statement-level triggers), no longer at commit: these
# show that no second statement of the same transaction can complete, repair or
# unbalance an entry, so the check made at the first statement's end is final.


def test_an_unbalanced_entry_is_refused_by_its_own_statement(
    app_conn: psycopg.Connection, book: BookFixture, ids: dict[str, uuid.UUID]
) -> None:
    """The balancing posting a second statement would add never gets the chance:
    the first statement, 100.00 on one side only, is refused when it ends."""
    before = footprint(app_conn, book.id)
    bank, revenue = ids["Assets:Bank:Operating"], ids["Income:Services"]
    entry_id = uuid.uuid4()
    with pytest.raises(pg.CheckViolation) as exc_info, app_conn.transaction():
        insert_entry(app_conn, book.id, DAY, [(bank, "100.00", "USD")], entry_id=entry_id)
        insert_postings(  # not reached: the statement above raised
            app_conn, book.id, entry_id, DAY, [(revenue, "-100.00", "USD")], first_line=2
        )
    assert_refused(exc_info, "23514", "journal_entries_balanced")
    assert "1 posting(s)" in (exc_info.value.diag.message_primary or "")
    assert footprint(app_conn, book.id) == before


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param(["100.00", "-100.00"], ["5.00"], id="unbalancing-posting"),
        pytest.param(["100.00", "-100.00"], ["5.00", "-5.00"], id="balanced-pair"),
    ],
)
def test_a_second_statement_cannot_add_postings_to_an_entry(
    first: list[str],
    second: list[str],
    app_conn: psycopg.Connection,
    book: BookFixture,
    ids: dict[str, uuid.UUID],
) -> None:
    """Two statements, one transaction: the entry of the first is complete when
    it ends; the second's postings are refused, whatever they add up to."""
    before = footprint(app_conn, book.id)
    accounts = [ids["Assets:Bank:Operating"], ids["Income:Services"]]
    with pytest.raises(pg.CheckViolation) as exc_info, app_conn.transaction():
        entry_id = insert_entry(
            app_conn, book.id, DAY, [(a, x, "USD") for a, x in zip(accounts, first, strict=True)]
        )
        insert_postings(
            app_conn,
            book.id,
            entry_id,
            DAY,
            [(a, x, "USD") for a, x in zip(accounts, second, strict=False)],
            first_line=3,
        )
    assert_refused(exc_info, "23514", "postings_open_entry")
    assert footprint(app_conn, book.id) == before


def test_an_entry_without_postings_is_refused_by_its_own_statement(
    app_conn: psycopg.Connection, book: BookFixture, ids: dict[str, uuid.UUID]
) -> None:
    before = footprint(app_conn, book.id)
    entry_id = uuid.uuid4()
    with pytest.raises(pg.CheckViolation) as exc_info, app_conn.transaction():
        insert_entry(app_conn, book.id, DAY, [], entry_id=entry_id)
        insert_postings(  # not reached
            app_conn,
            book.id,
            entry_id,
            DAY,
            [
                (ids["Assets:Bank:Operating"], "1.00", "USD"),
                (ids["Income:Services"], "-1.00", "USD"),
            ],
        )
    assert_refused(exc_info, "23514", "journal_entries_balanced")
    assert str(entry_id) in (exc_info.value.diag.message_primary or "")
    assert footprint(app_conn, book.id) == before


def _two_posting_ctes(amounts: tuple[str, str]) -> str:
    """One statement whose entry gets its postings from two separate inserts."""
    return (
        "with e as (insert into journal_entries"
        " (book_id, id, effective_date, idempotency_key, request_hash)"
        " values (%(book)s, %(id)s, %(day)s, 'raw:' || %(id)s::text, 'raw')"
        " returning book_id, id, effective_date),"
        " p1 as (insert into postings"
        " (book_id, entry_id, line_no, account_id, amount, currency, effective_date)"
        f" select book_id, id, 1, %(bank)s, {amounts[0]}, 'USD', effective_date from e),"
        " p2 as (insert into postings"
        " (book_id, entry_id, line_no, account_id, amount, currency, effective_date)"
        f" select book_id, id, 2, %(revenue)s, {amounts[1]}, 'USD', effective_date from e)"
        " select 1"
    )


def test_postings_from_two_inserts_of_one_statement_are_checked_together(
    app_conn: psycopg.Connection, book: BookFixture, ids: dict[str, uuid.UUID]
) -> None:
    """The balance is summed over everything the statement inserted into
    postings, however many inserts it has: balanced halves pass, an unbalanced
    pair is refused."""
    params = {
        "book": book.id,
        "day": DAY,
        "bank": ids["Assets:Bank:Operating"],
        "revenue": ids["Income:Services"],
    }
    before = footprint(app_conn, book.id)
    with pytest.raises(pg.CheckViolation) as exc_info, app_conn.transaction():
        app_conn.execute(_two_posting_ctes(("100.00", "-99.00")), {**params, "id": uuid.uuid4()})
    assert_refused(exc_info, "23514", "journal_entries_balanced")
    assert footprint(app_conn, book.id) == before

    entry_id = uuid.uuid4()
    with app_conn.transaction():
        app_conn.execute(_two_posting_ctes(("100.00", "-100.00")), {**params, "id": entry_id})
    after = footprint(app_conn, book.id)
    assert [row[0] for row in after["entries"]] == [entry_id]
    assert [row[3] for row in after["postings"]] == [Decimal("100.00"), Decimal("-100.00")]


# -- committed entries are closed --------------------------------------------------


def test_app_role_cannot_add_a_posting_to_a_committed_entry(
    app_conn: psycopg.Connection,
    book: BookFixture,
    committed: PostedEntry,
    ids: dict[str, uuid.UUID],
) -> None:
    before = footprint(app_conn, book.id)
    # Two more postings that balance each other, so only the rule itself can refuse them.
    with pytest.raises(pg.CheckViolation) as exc_info, app_conn.transaction():
        insert_postings(
            app_conn,
            book.id,
            committed.id,
            DAY,
            [
                (ids["Assets:Bank:Operating"], "7.00", "USD"),
                (ids["Income:Services"], "-7.00", "USD"),
            ],
            first_line=3,
        )
    assert_refused(exc_info, "23514", "postings_open_entry")
    assert str(committed.id) in (exc_info.value.diag.message_primary or "")
    assert footprint(app_conn, book.id) == before


def test_app_role_cannot_forge_txid(
    app_conn: psycopg.Connection, book: BookFixture, ids: dict[str, uuid.UUID]
) -> None:
    """A forged txid would let a later transaction claim the entry and add postings."""
    before = footprint(app_conn, book.id)
    with pytest.raises(pg.CheckViolation) as exc_info, app_conn.transaction():
        current = app_conn.execute("select pg_current_xact_id()::text::bigint").fetchone()
        assert current is not None
        insert_entry(
            app_conn,
            book.id,
            DAY,
            [
                (ids["Assets:Bank:Operating"], "1.00", "USD"),
                (ids["Income:Services"], "-1.00", "USD"),
            ],
            txid=current[0] + 1,
        )
    assert_refused(exc_info, "23514", "journal_entries_txid")
    assert footprint(app_conn, book.id) == before


def test_posting_date_must_match_its_entry(
    app_conn: psycopg.Connection, book: BookFixture, ids: dict[str, uuid.UUID]
) -> None:
    before = footprint(app_conn, book.id)
    entry_id = uuid.uuid4()
    with pytest.raises(pg.CheckViolation) as exc_info, app_conn.transaction():
        app_conn.execute(
            "with e as (insert into journal_entries (book_id, id, effective_date,"
            " idempotency_key, request_hash) values (%s, %s, %s, 'k', 'raw')"
            " returning book_id, id)"
            " insert into postings"
            " (book_id, entry_id, line_no, account_id, amount, currency, effective_date)"
            " select e.book_id, e.id, v.n, v.account, v.amount, 'USD', %s from e,"
            " (values (1, %s::uuid, 1.00), (2, %s::uuid, -1.00)) as v(n, account, amount)",
            (
                book.id,
                entry_id,
                DAY,
                date(2026, 4, 1),
                ids["Assets:Bank:Operating"],
                ids["Income:Services"],
            ),
        )
    assert_refused(exc_info, "23514", "postings_entry_date")
    assert footprint(app_conn, book.id) == before


# -- periods, accounts, currencies, minor units -------------------------------------


def test_app_role_cannot_post_into_a_closed_period(
    runtime: Runtime, app_conn: psycopg.Connection, book: BookFixture, ids: dict[str, uuid.UUID]
) -> None:
    with unit_of_work(runtime.connection) as uow:
        set_period_status(uow.conn, book.id, "2026-03", PeriodStatus.CLOSED)
        uow.commit()
    before = footprint(app_conn, book.id)
    assert before["periods"] == [("2026-03", "closed")]
    lines = [
        (ids["Assets:Bank:Operating"], "1.00", "USD"),
        (ids["Income:Services"], "-1.00", "USD"),
    ]
    for day in (date(2026, 3, 1), date(2026, 3, 31)):
        with pytest.raises(pg.CheckViolation) as exc_info, app_conn.transaction():
            insert_entry(app_conn, book.id, day, lines)
        assert_refused(exc_info, "23514", "journal_entries_open_period")
    assert footprint(app_conn, book.id) == before
    # The neighbouring periods stay open.
    with app_conn.transaction():
        insert_entry(app_conn, book.id, date(2026, 4, 1), lines)
        insert_entry(app_conn, book.id, date(2026, 2, 28), lines)
    assert len(footprint(app_conn, book.id)["entries"]) == 2


def test_app_role_cannot_post_to_a_closed_account(
    app_conn: psycopg.Connection, book: BookFixture, ids: dict[str, uuid.UUID]
) -> None:
    # Closing is an UPDATE the role may do (closed_at is among its granted columns).
    app_conn.execute(
        "update accounts set closed_at = now() where book_id = %s and id = %s",
        (book.id, ids["Income:Usage"]),
    )
    before = footprint(app_conn, book.id)
    with pytest.raises(pg.CheckViolation) as exc_info, app_conn.transaction():
        insert_entry(
            app_conn,
            book.id,
            DAY,
            [(ids["Assets:Bank:Operating"], "1.00", "USD"), (ids["Income:Usage"], "-1.00", "USD")],
        )
    assert_refused(exc_info, "23514", "postings_open_account")
    assert "Income:Usage" in (exc_info.value.diag.message_primary or "")
    assert footprint(app_conn, book.id) == before


def test_app_role_cannot_post_in_a_currency_the_account_does_not_allow(
    runtime: Runtime, app_conn: psycopg.Connection, book: BookFixture
) -> None:
    with unit_of_work(runtime.connection) as uow:
        usd_only = create_account(
            uow.conn, book.id, AccountSpec("Assets:Bank:Usd-Only", currencies=["USD"])
        )
        uow.commit()
    other = account_ids(app_conn, book.id)["Income:Services"]
    before = footprint(app_conn, book.id)
    with pytest.raises(pg.CheckViolation) as exc_info, app_conn.transaction():
        insert_entry(
            app_conn, book.id, DAY, [(usd_only.id, "1.00", "EUR"), (other, "-1.00", "EUR")]
        )
    assert_refused(exc_info, "23514", "postings_account_currency")
    assert footprint(app_conn, book.id) == before
    with app_conn.transaction():  # control: its own currency is fine
        insert_entry(
            app_conn, book.id, DAY, [(usd_only.id, "1.00", "USD"), (other, "-1.00", "USD")]
        )


@pytest.mark.parametrize(
    ("amount", "currency"),
    [("1.005", "USD"), ("1.5", "JPY"), ("0.0001", "KWD"), ("0.001", "EUR")],
)
def test_app_role_cannot_post_more_decimals_than_the_minor_unit(
    amount: str,
    currency: str,
    app_conn: psycopg.Connection,
    book: BookFixture,
    ids: dict[str, uuid.UUID],
) -> None:
    before = footprint(app_conn, book.id)
    with pytest.raises(pg.CheckViolation) as exc_info, app_conn.transaction():
        insert_entry(
            app_conn,
            book.id,
            DAY,
            [
                (ids["Assets:Bank:Operating"], amount, currency),
                (ids["Income:Services"], f"-{amount}", currency),
            ],
        )
    assert_refused(exc_info, "23514", "postings_minor_unit")
    assert footprint(app_conn, book.id) == before


def test_trailing_zeros_within_the_minor_unit_are_fine(
    app_conn: psycopg.Connection, book: BookFixture, ids: dict[str, uuid.UUID]
) -> None:
    with app_conn.transaction():
        insert_entry(
            app_conn,
            book.id,
            DAY,
            [
                (ids["Assets:Bank:Operating"], "1.500", "USD"),
                (ids["Income:Services"], "-1.500", "USD"),
            ],
        )
        insert_entry(
            app_conn,
            book.id,
            DAY,
            [
                (ids["Assets:Bank:Operating"], "15.0", "JPY"),
                (ids["Income:Services"], "-15.0", "JPY"),
            ],
        )
    assert len(footprint(app_conn, book.id)["entries"]) == 2


def test_unknown_currency_is_refused(
    app_conn: psycopg.Connection, book: BookFixture, ids: dict[str, uuid.UUID]
) -> None:
    before = footprint(app_conn, book.id)
    with pytest.raises(pg.ForeignKeyViolation) as exc_info, app_conn.transaction():
        insert_entry(
            app_conn,
            book.id,
            DAY,
            [(ids["Assets:Bank:Operating"], "1", "XXY"), (ids["Income:Services"], "-1", "XXY")],
        )
    assert_refused(exc_info, "23503", "fk_postings_currency_currencies")
    assert footprint(app_conn, book.id) == before


# -- the walls around the triggers -----------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "alter table postings disable trigger postings_append_only",
        "alter table postings disable trigger user",
        "alter table journal_entries disable trigger all",
        "alter table seals disable trigger seals_inserted",
        "drop trigger postings_inserted on postings",
        "create or replace function ab_forbid_change() returns trigger"
        " language plpgsql as $$ begin return old; end $$",
        "set session_replication_role = replica",
    ],
)
def test_app_role_cannot_switch_the_triggers_off(
    statement: str, app_conn: psycopg.Connection, book: BookFixture, committed: PostedEntry
) -> None:
    with pytest.raises(pg.InsufficientPrivilege) as exc_info:
        app_conn.execute(statement)
    assert_refused(exc_info, "42501", None)
    enabled = app_conn.execute(
        "select tgname, tgenabled from pg_trigger"
        " where tgrelid in ('postings'::regclass, 'journal_entries'::regclass) and not tgisinternal"
        " order by tgname"
    ).fetchall()
    assert enabled and all(state == "O" for _, state in enabled), enabled
    replication = app_conn.execute("show session_replication_role").fetchone()
    assert replication == ("origin",)
    before = footprint(app_conn, book.id)
    with pytest.raises(pg.InsufficientPrivilege):
        app_conn.execute("delete from postings where book_id = %s", (book.id,))
    assert footprint(app_conn, book.id) == before


@pytest.mark.parametrize(
    "statement",
    [
        "insert into account_balances (book_id, account_id, currency, balance_date, slot, amount,"
        " postings_count) values (%(book)s, %(account)s, 'USD', '2026-03-10', 0, 1000, 1)",
        "update account_balances set amount = amount + 1000 where book_id = %(book)s",
        "delete from account_balances where book_id = %(book)s",
        "insert into guarded_balances (book_id, account_id, currency, balance)"
        " values (%(book)s, %(account)s, 'EUR', -1000)",
        "update guarded_balances set balance = balance - 1000 where book_id = %(book)s",
        "delete from guarded_balances where book_id = %(book)s",
        "insert into seal_queue (book_id, entry_ids) values (%(book)s, array[%(entry)s::uuid])",
        "update accounts set min_balance = null where book_id = %(book)s",
        "truncate account_balances",
    ],
)
def test_app_role_cannot_write_the_balance_projections(
    statement: str,
    runtime: Runtime,
    app_conn: psycopg.Connection,
    book: BookFixture,
    committed: PostedEntry,
    ids: dict[str, uuid.UUID],
) -> None:
    # A guarded balance row exists once the wallet has been topped up.
    post(
        runtime,
        book.id,
        [("Assets:Bank:Operating", "10.00"), ("Liabilities:Prepaid-Wallet", "-10.00")],
    )
    before = footprint(app_conn, book.id)
    assert before["guarded"] and before["daily"]
    params = {"book": book.id, "account": ids["Income:Services"], "entry": committed.id}
    with pytest.raises(pg.InsufficientPrivilege) as exc_info:
        app_conn.execute(statement, params)
    assert_refused(exc_info, "42501", None)
    assert footprint(app_conn, book.id) == before


def test_app_role_cannot_change_an_accounts_type_or_limit(
    app_conn: psycopg.Connection,
    owner_conn: psycopg.Connection,
    book: BookFixture,
    ids: dict[str, uuid.UUID],
) -> None:
    with pytest.raises(pg.InsufficientPrivilege):
        app_conn.execute(
            "update accounts set min_balance = -1000000 where book_id = %s and id = %s",
            (book.id, ids["Liabilities:Prepaid-Wallet"]),
        )
    # Even the owner is held by the immutability trigger.
    with pytest.raises(pg.CheckViolation) as exc_info:
        owner_conn.execute(
            "update accounts set min_balance = -1000000 where book_id = %s and id = %s",
            (book.id, ids["Liabilities:Prepaid-Wallet"]),
        )
    assert_refused(exc_info, "23514", "accounts_immutable")
    row = app_conn.execute(
        "select min_balance from accounts where book_id = %s and id = %s",
        (book.id, ids["Liabilities:Prepaid-Wallet"]),
    ).fetchone()
    assert row == (Decimal(0),)


def test_a_seal_must_extend_the_chain(
    runtime: Runtime, app_conn: psycopg.Connection, book: BookFixture, committed: PostedEntry
) -> None:
    """The role may insert seals (the sealer runs as it), but only at the chain's end."""
    second = post(
        runtime, book.id, [("Assets:Bank:Operating", "1.00"), ("Income:Services", "-1.00")]
    )
    before = footprint(app_conn, book.id)
    for seq, prev in ((3, "0" * 64), (2, "a" * 64), (1, "0" * 64)):
        with pytest.raises((pg.CheckViolation, pg.UniqueViolation)) as exc_info:
            app_conn.execute(
                "insert into seals (book_id, seq, entry_id, prev_hash, hash)"
                " values (%s, %s, %s, %s, %s)",
                (book.id, seq, second.id, prev, "b" * 64),
            )
        expected = "seals_chain" if seq != 1 else "pk_seals"
        assert exc_info.value.diag.constraint_name == expected
    assert footprint(app_conn, book.id) == before


# -- the real psql binary ------------------------------------------------------------------


def run_psql(database_url: str, script: str) -> subprocess.CompletedProcess[str]:
    """`psql` as an operator would run it, switched to the application's role."""
    prologue = f"\\set VERBOSITY verbose\nset role {APP_ROLE};\n"
    return subprocess.run(
        [PSQL, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", database_url, "-f", "-"],
        input=prologue + script,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def psql_entry(book_id: uuid.UUID, day: str, postings: Sequence[RawPosting]) -> str:
    """One statement for the entry and its postings, as the ledger requires."""
    entry_id = uuid.uuid4()
    head = (
        "with e as (insert into journal_entries"
        " (book_id, id, effective_date, idempotency_key, request_hash)"
        f" values ('{book_id}', '{entry_id}', '{day}', 'psql:{entry_id}', 'psql')"
        " returning book_id, id, effective_date)"
    )
    if not postings:
        return head + " select 1 from e;\n"
    values = ", ".join(
        f"({n}, '{account}'::uuid, {amount}::numeric, '{currency}')"
        for n, (account, amount, currency) in enumerate(postings, start=1)
    )
    return (
        head + " insert into postings"
        " (book_id, entry_id, line_no, account_id, amount, currency, effective_date)"
        " select e.book_id, e.id, v.n, v.account, v.amount, v.currency, e.effective_date"
        f" from e, (values {values}) as v(n, account, amount, currency);\n"
    )


@pytest.mark.slow
def test_psql_session_runs_as_the_application_role(database_url: str) -> None:
    result = run_psql(database_url, "select 'who:' || current_user;\n")
    assert result.returncode == 0, result.stderr
    assert f"who:{APP_ROLE}" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    ("case", "sqlstate", "constraint"),
    [
        ("update postings", "42501", None),
        ("delete journal_entries", "42501", None),
        ("truncate postings", "42501", None),
        ("truncate journal_entries", "42501", None),
        ("update seals", "42501", None),
        ("disable trigger", "42501", None),
        ("write balances", "42501", None),
        ("unbalanced", "23514", "journal_entries_balanced"),
        ("one posting", "23514", "journal_entries_balanced"),
        ("no postings", "23514", "journal_entries_balanced"),
        ("add to committed", "23514", "postings_open_entry"),
        ("closed period", "23514", "journal_entries_open_period"),
        ("closed account", "23514", "postings_open_account"),
        ("currency not allowed", "23514", "postings_account_currency"),
        ("too many decimals", "23514", "postings_minor_unit"),
        ("forged txid", "23514", "journal_entries_txid"),
    ],
)
def test_psql_cannot_break_an_invariant(
    case: str,
    sqlstate: str,
    constraint: str | None,
    database_url: str,
    runtime: Runtime,
    app_conn: psycopg.Connection,
    book: BookFixture,
    committed: PostedEntry,
    ids: dict[str, uuid.UUID],
) -> None:
    b = book.id
    bank, revenue = ids["Assets:Bank:Operating"], ids["Income:Services"]
    with unit_of_work(runtime.connection) as uow:
        set_period_status(uow.conn, b, "2026-01", PeriodStatus.CLOSED)
        usd_only = create_account(
            uow.conn, b, AccountSpec("Assets:Bank:Usd-Only", currencies=["USD"])
        )
        closed = create_account(uow.conn, b, AccountSpec("Income:Closed-Line"))
        uow.conn.execute(
            "update accounts set closed_at = now() where book_id = %s and id = %s", (b, closed.id)
        )
        uow.commit()
    entry = committed.id
    scripts = {
        "update postings": f"update postings set amount = 0 where book_id = '{b}';",
        "delete journal_entries": f"delete from journal_entries where id = '{entry}';",
        "truncate postings": "truncate postings cascade;",
        "truncate journal_entries": "truncate journal_entries cascade;",
        "update seals": f"update seals set hash = 'x' where book_id = '{b}';",
        "disable trigger": "alter table postings disable trigger user;",
        "write balances": f"update account_balances set amount = 0 where book_id = '{b}';",
        "unbalanced": "begin;\n"
        + psql_entry(b, "2026-03-10", [(bank, "10.00", "USD"), (revenue, "-9.00", "USD")])
        + "commit;",
        "one posting": "begin;\n"
        + psql_entry(b, "2026-03-10", [(bank, "10.00", "USD")])
        + "commit;",
        "no postings": "begin;\n" + psql_entry(b, "2026-03-10", []) + "commit;",
        "add to committed": "begin;\n"
        f"insert into postings (book_id, entry_id, line_no, account_id, amount, currency,"
        f" effective_date) values ('{b}', '{entry}', 3, '{bank}', 5, 'USD', '{DAY}'),"
        f" ('{b}', '{entry}', 4, '{revenue}', -5, 'USD', '{DAY}');\ncommit;",
        "closed period": "begin;\n"
        + psql_entry(b, "2026-01-31", [(bank, "1.00", "USD"), (revenue, "-1.00", "USD")])
        + "commit;",
        "closed account": "begin;\n"
        + psql_entry(b, "2026-03-10", [(bank, "1.00", "USD"), (closed.id, "-1.00", "USD")])
        + "commit;",
        "currency not allowed": "begin;\n"
        + psql_entry(b, "2026-03-10", [(usd_only.id, "1.00", "EUR"), (revenue, "-1.00", "EUR")])
        + "commit;",
        "too many decimals": "begin;\n"
        + psql_entry(b, "2026-03-10", [(bank, "1.005", "USD"), (revenue, "-1.005", "USD")])
        + "commit;",
        "forged txid": "begin;\n"
        "insert into journal_entries (book_id, id, effective_date, idempotency_key, request_hash,"
        f" txid) values ('{b}', '{uuid.uuid4()}', '2026-03-10', 'forged', 'x', 42);\ncommit;",
    }
    before = footprint(app_conn, b)
    result = run_psql(database_url, scripts[case] + "\n")
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert f"ERROR:  {sqlstate}:" in result.stderr, result.stderr
    if constraint is not None:
        assert f"CONSTRAINT NAME:  {constraint}" in result.stderr, result.stderr
    assert footprint(app_conn, b) == before


# -- reversal: the only way to undo --------------------------------------------------------


def test_reversal_negates_the_original_and_names_it(runtime: Runtime, book: BookFixture) -> None:
    original = post(
        runtime,
        book.id,
        [
            ("Assets:Receivable:Trade", "108.00"),
            ("Income:Services", "-100.00"),
            ("Liabilities:Tax-Payable", "-8.00"),
        ],
    )
    with unit_of_work(runtime.connection) as uow:
        reversal = reverse_entry(uow.conn, book.id, str(original.id))
        uow.commit()
    assert reversal.created
    assert reversal.reverses == original.id
    assert reversal.effective_date == original.effective_date
    assert [(p.account, p.amount, p.currency) for p in reversal.postings] == [
        ("Assets:Receivable:Trade", Decimal("-108.00"), "USD"),
        ("Income:Services", Decimal("100.00"), "USD"),
        ("Liabilities:Tax-Payable", Decimal("8.00"), "USD"),
    ]
    with runtime.connection() as conn:
        stored = get_entry(conn, book.id, str(reversal.id))
        assert stored.reverses == original.id
        assert stored.postings == reversal.postings
        # The original is untouched: a reversal appends, it never edits.
        assert get_entry(conn, book.id, str(original.id)).postings == original.postings
        assert trial_balance_as_of(conn, book.id, DAY) == []
        totals = conn.execute(
            "select currency, sum(amount), count(*) from postings where book_id = %s"
            " group by currency",
            (book.id,),
        ).fetchall()
        assert totals == [("USD", Decimal("0.00"), 6)]
    seal_pending(runtime.connection, book.id)
    with runtime.connection() as conn:
        assert verify_book(conn, book.id) == []


def test_an_entry_can_be_reversed_only_once(runtime: Runtime, book: BookFixture) -> None:
    original = post(
        runtime, book.id, [("Assets:Bank:Operating", "5.00"), ("Income:Usage", "-5.00")]
    )
    with unit_of_work(runtime.connection) as uow:
        first = reverse_entry(uow.conn, book.id, str(original.id))
        uow.commit()
    # Asking again with the same (default) key is a replay: the same reversal comes back.
    with unit_of_work(runtime.connection) as uow:
        again = reverse_entry(uow.conn, book.id, str(original.id))
        uow.commit()
    assert (again.id, again.created) == (first.id, False)
    # A second, different reversal is refused by the database.
    with pytest.raises(AlreadyReversed), unit_of_work(runtime.connection) as uow:
        reverse_entry(uow.conn, book.id, str(original.id), idempotency_key="second-reversal")
        uow.commit()
    with runtime.connection() as conn:
        assert trial_balance_as_of(conn, book.id, DAY) == []
        rows = conn.execute(
            "select count(*) from journal_entries where book_id = %s and reverses_entry_id = %s",
            (book.id, original.id),
        ).fetchone()
        assert rows == (1,)


def test_app_role_cannot_reverse_twice_by_hand(
    runtime: Runtime, app_conn: psycopg.Connection, book: BookFixture, ids: dict[str, uuid.UUID]
) -> None:
    original = post(
        runtime, book.id, [("Assets:Bank:Operating", "5.00"), ("Income:Usage", "-5.00")]
    )
    with unit_of_work(runtime.connection) as uow:
        reverse_entry(uow.conn, book.id, str(original.id))
        uow.commit()
    before = footprint(app_conn, book.id)
    entry_id = uuid.uuid4()
    with pytest.raises(pg.UniqueViolation) as exc_info, app_conn.transaction():
        app_conn.execute(
            "insert into journal_entries (book_id, id, effective_date, idempotency_key,"
            " request_hash, reverses_entry_id) values (%s, %s, %s, %s, 'raw', %s)",
            (book.id, entry_id, DAY, f"raw:{entry_id}", original.id),
        )
    assert_refused(exc_info, "23505", "uq_journal_entries_book_id_reverses_entry_id")
    assert footprint(app_conn, book.id) == before


def test_a_reversal_cannot_predate_its_original(runtime: Runtime, book: BookFixture) -> None:
    original = post(
        runtime, book.id, [("Assets:Bank:Operating", "5.00"), ("Income:Usage", "-5.00")]
    )
    with pytest.raises(InvalidEntry), unit_of_work(runtime.connection) as uow:
        reverse_entry(uow.conn, book.id, str(original.id), effective_date=date(2026, 3, 9))
    with runtime.connection() as conn:
        assert trial_balance_as_of(conn, book.id, DAY) != []
