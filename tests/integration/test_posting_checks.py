"""The postings trigger's checks when one statement writes many entries.

`ab_postings_inserted` (revision 0032) checks per entry and per (account,
currency) of the statement rather than per posting, and reads the statement's
command id off one of its postings. These tests write several entries in one
raw statement, as the application role, with the bad posting among good ones
(first or last), and check the refusal (SQLSTATE, constraint, message) and
that nothing was written.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import errors as pg

from tests.conftest import BookFixture

DAY = date(2026, 3, 10)

# entry id, line no, account id, amount, currency, posting date
Line = tuple[uuid.UUID, int, uuid.UUID, str, str, date]


@pytest.fixture
def ids(app_conn: psycopg.Connection, book: BookFixture) -> dict[str, uuid.UUID]:
    rows = app_conn.execute("select name, id from accounts where book_id = %s", (book.id,))
    return {name: account_id for name, account_id in rows}


def write(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    entries: Sequence[tuple[uuid.UUID, date]],
    lines: Sequence[Line],
) -> None:
    """One statement: insert the entries, and the postings as given (not joined
    to the entries, so a posting may name any entry)."""
    conn.execute(
        "with e as (insert into journal_entries"
        " (book_id, id, effective_date, idempotency_key, request_hash)"
        " select %(book)s, v.id, v.day, 'raw:' || v.id::text, 'raw'"
        " from unnest(%(ids)s::uuid[], %(days)s::date[]) as v(id, day) returning id)"
        " insert into postings"
        " (book_id, entry_id, line_no, account_id, amount, currency, effective_date)"
        " select %(book)s, p.entry_id, p.line_no, p.account_id, p.amount, p.currency, p.day"
        " from unnest(%(p_entries)s::uuid[], %(p_lines)s::int2[], %(p_accounts)s::uuid[],"
        " %(p_amounts)s::numeric[], %(p_currencies)s::text[], %(p_days)s::date[])"
        " as p(entry_id, line_no, account_id, amount, currency, day)",
        {
            "book": book_id,
            "ids": [e[0] for e in entries],
            "days": [e[1] for e in entries],
            "p_entries": [line[0] for line in lines],
            "p_lines": [line[1] for line in lines],
            "p_accounts": [line[2] for line in lines],
            "p_amounts": [Decimal(line[3]) for line in lines],
            "p_currencies": [line[4] for line in lines],
            "p_days": [line[5] for line in lines],
        },
    )


def sales(
    ids: dict[str, uuid.UUID], count: int, amount: str = "10.00"
) -> tuple[list[tuple[uuid.UUID, date]], list[Line]]:
    """`count` balanced entries: bank debited, services credited."""
    entries = [(uuid.uuid4(), DAY) for _ in range(count)]
    lines: list[Line] = []
    for entry_id, day in entries:
        lines.append((entry_id, 1, ids["Assets:Bank:Operating"], amount, "USD", day))
        lines.append((entry_id, 2, ids["Income:Services"], f"-{amount}", "USD", day))
    return entries, lines


def footprint(conn: psycopg.Connection, book_id: uuid.UUID) -> dict[str, Any]:
    queries = {
        "entries": "select id from journal_entries where book_id = %s order by id",
        "postings": "select entry_id, line_no, amount from postings where book_id = %s"
        " order by entry_id, line_no",
        "daily": "select account_id, currency, balance_date, sum(amount) from account_balances"
        " where book_id = %s group by 1, 2, 3 order by 1, 2, 3",
        "guarded": "select account_id, currency, balance from guarded_balances"
        " where book_id = %s order by 1, 2",
    }
    return {name: conn.execute(q, (book_id,)).fetchall() for name, q in queries.items()}


def refused(exc: pytest.ExceptionInfo[psycopg.Error], sqlstate: str, constraint: str) -> str:
    diag = exc.value.diag
    assert (diag.sqlstate, diag.constraint_name) == (sqlstate, constraint), diag.message_primary
    return diag.message_primary or ""


def place(bad: Sequence[Line], good: list[Line], first: bool) -> list[Line]:
    return [*bad, *good] if first else [*good, *bad]


@pytest.mark.parametrize("first", [True, False], ids=["bad-first", "bad-last"])
def test_a_posting_naming_no_entry_is_refused(
    first: bool, app_conn: psycopg.Connection, book: BookFixture, ids: dict[str, uuid.UUID]
) -> None:
    before = footprint(app_conn, book.id)
    entries, lines = sales(ids, 3)
    ghost = uuid.uuid4()
    bank, services = ids["Assets:Bank:Operating"], ids["Income:Services"]
    bad = [(ghost, 1, bank, "1.00", "USD", DAY), (ghost, 2, services, "-1.00", "USD", DAY)]
    with pytest.raises(pg.ForeignKeyViolation) as exc, app_conn.transaction():
        write(app_conn, book.id, entries, place(bad, lines, first))
    message = refused(exc, "23503", "fk_postings_book_id_entry_id_journal_entries")
    assert message == f"posting names journal entry {ghost} which does not exist"
    assert footprint(app_conn, book.id) == before


def test_a_posting_naming_an_account_of_no_book_is_refused(
    app_conn: psycopg.Connection, book: BookFixture, ids: dict[str, uuid.UUID]
) -> None:
    before = footprint(app_conn, book.id)
    entries, lines = sales(ids, 3)
    entry_id = entries[1][0]
    lines[3] = (entry_id, 2, uuid.uuid4(), "-10.00", "USD", DAY)
    with pytest.raises(pg.ForeignKeyViolation) as exc, app_conn.transaction():
        write(app_conn, book.id, entries, lines)
    message = refused(exc, "23503", "fk_postings_book_id_account_id_accounts")
    assert message == "posting names an account that does not exist in this book"
    assert footprint(app_conn, book.id) == before


@pytest.mark.parametrize("first", [True, False], ids=["bad-first", "bad-last"])
def test_a_statement_cannot_add_to_an_entry_of_an_earlier_statement_beside_its_own(
    first: bool, app_conn: psycopg.Connection, book: BookFixture, ids: dict[str, uuid.UUID]
) -> None:
    """The earlier entry is the same transaction's, and the added pair balances:
    only the statement rule can refuse it, whichever posting is read first."""
    before = footprint(app_conn, book.id)
    bank, services = ids["Assets:Bank:Operating"], ids["Income:Services"]
    with pytest.raises(pg.CheckViolation) as exc, app_conn.transaction():
        earlier, earlier_lines = sales(ids, 1)
        write(app_conn, book.id, earlier, earlier_lines)
        entries, lines = sales(ids, 3)
        old = earlier[0][0]
        bad = [(old, 3, bank, "5.00", "USD", DAY), (old, 4, services, "-5.00", "USD", DAY)]
        write(app_conn, book.id, entries, place(bad, lines, first))
    message = refused(exc, "23514", "postings_open_entry")
    assert message == (
        f"postings of journal entry {old} must be inserted by the statement that inserts the entry"
    )
    assert footprint(app_conn, book.id) == before


@pytest.mark.parametrize(
    ("posting_day", "line"), [(date(2026, 3, 9), 1), (date(2026, 3, 11), 2)], ids=["early", "late"]
)
def test_a_posting_dated_off_its_entry_names_both_dates(
    posting_day: date,
    line: int,
    app_conn: psycopg.Connection,
    book: BookFixture,
    ids: dict[str, uuid.UUID],
) -> None:
    before = footprint(app_conn, book.id)
    entries, lines = sales(ids, 3)
    index = 2 + line - 1  # the second entry's posting `line`
    entry_id, line_no, account, amount, currency, _ = lines[index]
    lines[index] = (entry_id, line_no, account, amount, currency, posting_day)
    with pytest.raises(pg.CheckViolation) as exc, app_conn.transaction():
        write(app_conn, book.id, entries, lines)
    message = refused(exc, "23514", "postings_entry_date")
    assert message == f"posting date {posting_day} differs from its entry's date {DAY}"
    assert footprint(app_conn, book.id) == before


def test_too_many_decimals_names_the_amount_among_good_ones_of_its_account(
    app_conn: psycopg.Connection, book: BookFixture, ids: dict[str, uuid.UUID]
) -> None:
    """The bank account's USD postings are 10.00, 10.00, 2.005: the check on the
    group's places finds the group, the message still names the amount."""
    before = footprint(app_conn, book.id)
    entries, lines = sales(ids, 2)
    odd = uuid.uuid4()
    entries.append((odd, DAY))
    lines.append((odd, 1, ids["Assets:Bank:Operating"], "2.005", "USD", DAY))
    lines.append((odd, 2, ids["Income:Usage"], "-2.005", "USD", DAY))
    with pytest.raises(pg.CheckViolation) as exc, app_conn.transaction():
        write(app_conn, book.id, entries, lines)
    message = refused(exc, "23514", "postings_minor_unit")
    assert message in (
        "amount 2.005 has more decimals than USD allows (2)",
        "amount -2.005 has more decimals than USD allows (2)",
    )
    assert footprint(app_conn, book.id) == before


def test_an_unbalanced_entry_among_balanced_ones_names_each_currency_off(
    app_conn: psycopg.Connection, book: BookFixture, ids: dict[str, uuid.UUID]
) -> None:
    before = footprint(app_conn, book.id)
    entries, lines = sales(ids, 3)
    off = uuid.uuid4()
    entries.insert(1, (off, DAY))
    bank, services = ids["Assets:Bank:Operating"], ids["Income:Services"]
    lines += [
        (off, 1, bank, "10.00", "USD", DAY),
        (off, 2, services, "-9.50", "USD", DAY),
        (off, 3, bank, "5.00", "EUR", DAY),
        (off, 4, services, "-4.00", "EUR", DAY),
        (off, 5, bank, "3.00", "GBP", DAY),
        (off, 6, services, "-3.00", "GBP", DAY),
    ]
    with pytest.raises(pg.CheckViolation) as exc, app_conn.transaction():
        write(app_conn, book.id, entries, lines)
    message = refused(exc, "23514", "journal_entries_balanced")
    assert message == f"journal entry {off} does not balance: off by EUR 1.00, USD 0.50"
    assert footprint(app_conn, book.id) == before


def mixed(ids: dict[str, uuid.UUID], entry_id: uuid.UUID, eur: str) -> list[Line]:
    """An entry in two currencies: 10.00 USD balanced, EUR 5.00 against -`eur`."""
    bank, services = ids["Assets:Bank:Operating"], ids["Income:Services"]
    return [
        (entry_id, 1, bank, "10.00", "USD", DAY),
        (entry_id, 2, services, "-10.00", "USD", DAY),
        (entry_id, 3, bank, "5.00", "EUR", DAY),
        (entry_id, 4, services, f"-{eur}", "EUR", DAY),
    ]


def test_entries_in_several_currencies_balanced_each_are_written_beside_others(
    app_conn: psycopg.Connection, book: BookFixture, ids: dict[str, uuid.UUID]
) -> None:
    """Revision 0039 sums an entry once unless it has several currencies; those
    are summed per currency, and balanced ones go through."""
    entries, lines = sales(ids, 2)
    first, second = uuid.uuid4(), uuid.uuid4()
    entries += [(first, DAY), (second, DAY)]
    lines += mixed(ids, first, "5.00") + mixed(ids, second, "5.00")
    write(app_conn, book.id, entries, lines)
    written = app_conn.execute(
        "select currency, sum(amount), count(*) from postings"
        " where book_id = %s and entry_id = any(%s) group by currency order by currency",
        (book.id, [first, second]),
    ).fetchall()
    assert written == [("EUR", Decimal("0.00"), 4), ("USD", Decimal("0.00"), 4)]


def test_an_entry_off_in_two_currencies_that_cancel_is_refused_among_balanced_ones(
    app_conn: psycopg.Connection, book: BookFixture, ids: dict[str, uuid.UUID]
) -> None:
    """USD +0.50 and EUR -0.50 sum to zero as numbers: only the per-currency sums
    of a several-currency entry tell it is off."""
    before = footprint(app_conn, book.id)
    entries, lines = sales(ids, 2)
    good, off = uuid.uuid4(), uuid.uuid4()
    bank, services = ids["Assets:Bank:Operating"], ids["Income:Services"]
    entries += [(good, DAY), (off, DAY)]
    lines += [
        *mixed(ids, good, "5.00"),
        (off, 1, bank, "10.50", "USD", DAY),
        (off, 2, services, "-10.00", "USD", DAY),
        (off, 3, bank, "5.00", "EUR", DAY),
        (off, 4, services, "-5.50", "EUR", DAY),
    ]
    with pytest.raises(pg.CheckViolation) as exc, app_conn.transaction():
        write(app_conn, book.id, entries, lines)
    message = refused(exc, "23514", "journal_entries_balanced")
    assert message == f"journal entry {off} does not balance: off by EUR -0.50, USD 0.50"
    assert footprint(app_conn, book.id) == before


def test_a_one_posting_entry_among_balanced_ones_is_refused_even_at_zero(
    app_conn: psycopg.Connection, book: BookFixture, ids: dict[str, uuid.UUID]
) -> None:
    before = footprint(app_conn, book.id)
    entries, lines = sales(ids, 3)
    lone = uuid.uuid4()
    entries.append((lone, DAY))
    lines.append((lone, 1, ids["Assets:Bank:Operating"], "0.00", "USD", DAY))
    with pytest.raises(pg.CheckViolation) as exc, app_conn.transaction():
        write(app_conn, book.id, entries, lines)
    message = refused(exc, "23514", "journal_entries_balanced")
    assert message == f"journal entry {lone} has 1 posting(s); an entry needs at least two"
    assert footprint(app_conn, book.id) == before


def test_account_rules_are_reported_before_the_balance(
    app_conn: psycopg.Connection, book: BookFixture, ids: dict[str, uuid.UUID]
) -> None:
    """As before revision 0032: a statement with an unbalanced entry and a
    posting to a closed account is refused for the account."""
    app_conn.execute(
        "update accounts set closed_at = now() where book_id = %s and id = %s",
        (book.id, ids["Income:Usage"]),
    )
    before = footprint(app_conn, book.id)
    entries, lines = sales(ids, 2)
    lines[1] = (entries[0][0], 2, ids["Income:Services"], "-9.00", "USD", DAY)  # off by 1.00
    lines[3] = (entries[1][0], 2, ids["Income:Usage"], "-10.00", "USD", DAY)  # closed
    with pytest.raises(pg.CheckViolation) as exc, app_conn.transaction():
        write(app_conn, book.id, entries, lines)
    assert refused(exc, "23514", "postings_open_account") == "account Income:Usage is closed"
    assert footprint(app_conn, book.id) == before


def wallet_batch(
    ids: dict[str, uuid.UUID], spends: Sequence[str]
) -> tuple[list[tuple[uuid.UUID, date]], list[Line]]:
    """A 10.00 top-up of the prepaid wallet, then spends from it, in one statement."""
    wallet, bank = ids["Liabilities:Prepaid-Wallet"], ids["Assets:Bank:Operating"]
    services = ids["Income:Services"]
    top_up = uuid.uuid4()
    entries = [(top_up, DAY)]
    lines: list[Line] = [
        (top_up, 1, bank, "10.00", "USD", DAY),
        (top_up, 2, wallet, "-10.00", "USD", DAY),
    ]
    for amount in spends:
        spend = uuid.uuid4()
        entries.append((spend, DAY))
        lines.append((spend, 1, wallet, amount, "USD", DAY))
        lines.append((spend, 2, services, f"-{amount}", "USD", DAY))
    return entries, lines


def test_a_wallet_spent_to_zero_within_one_statement_is_fine(
    app_conn: psycopg.Connection, book: BookFixture, ids: dict[str, uuid.UUID]
) -> None:
    with app_conn.transaction():
        write(app_conn, book.id, *wallet_batch(ids, ["4.00", "6.00"]))
    guarded = footprint(app_conn, book.id)["guarded"]
    assert guarded == [(ids["Liabilities:Prepaid-Wallet"], "USD", Decimal("0.00"))]


def test_a_wallet_overspent_within_one_statement_is_refused(
    app_conn: psycopg.Connection, book: BookFixture, ids: dict[str, uuid.UUID]
) -> None:
    before = footprint(app_conn, book.id)
    with pytest.raises(pg.CheckViolation) as exc, app_conn.transaction():
        write(app_conn, book.id, *wallet_batch(ids, ["4.00", "7.00"]))
    message = refused(exc, "23514", "postings_min_balance")
    assert message == (
        "account Liabilities:Prepaid-Wallet would go below its minimum balance 0 USD"
        " (balance would be 1.00)"
    )
    assert footprint(app_conn, book.id) == before
