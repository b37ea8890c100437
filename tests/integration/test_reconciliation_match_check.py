"""The commit-time check of statement matches (revision 0030: one ticket per
transaction, all its matches checked set-based) and auto-match's pairs on a
tricky sample.

Auto-match writes all its matches in three statements; PostgreSQL checks all
of them at commit in one statement. These tests pin down that the check still
refuses exactly what revision 0004's per-match trigger refused, also among
many good matches and after `SET CONSTRAINTS ALL IMMEDIATE`, and that the
pairs auto-match writes are the pure matcher's.
"""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from adapters.bank_statements import CsvMapping
from adapters.reconciliation.matching import auto_match
from adapters.reconciliation.statements import import_statement
from adapters.reconciliation.store import (
    create_match,
    open_lines,
    open_postings,
    run_auto_match,
    undo_match,
)
from adapters.runtime import Runtime
from ledger.entries import Posting, build_entry
from ledger.money import Money
from ledger.postgres.posting import post_entries
from ledger.postgres.unit_of_work import unit_of_work
from tests.conftest import BookFixture, make_book

BANK = "Assets:Bank:Operating"
AR = "Assets:Receivable:Trade"
MAPPING = CsvMapping(
    date_column="date",
    amount_column="amount",
    reference_column="reference",
    description_column="text",
    counterparty_column="name",
    fixed_currency="USD",
)


def _payment(day: str, amount: str, key: str, memo: str, metadata: dict[str, Any]) -> Any:
    money = Money(Decimal(amount), "USD")
    return build_entry(
        date.fromisoformat(day),
        memo,
        [Posting(BANK, money), Posting(AR, -money)],
        metadata=metadata,
        idempotency_key=key,
    )


# name → (date, amount, memo, metadata)
POSTINGS: dict[str, tuple[str, str, str, dict[str, Any]]] = {
    # the same amount and payer on three days, far enough apart for two lines
    "initech_5": ("2026-03-05", "50.00", "Payment from Initech", {}),
    "initech_12": ("2026-03-12", "50.00", "Payment from Initech", {}),
    "initech_20": ("2026-03-20", "50.00", "Payment from Initech", {}),
    # two postings of one amount and payer on one day: two lines cannot be told apart
    "hooli_a": ("2026-03-14", "75.00", "Payment from Hooli", {}),
    "hooli_b": ("2026-03-14", "75.00", "Payment from Hooli", {}),
    # two of one amount on one day, each with its own bank reference
    "ref_a": ("2026-03-15", "30.00", "Payment", {"bank_reference": "REF-AAAA"}),
    "ref_b": ("2026-03-15", "30.00", "Payment", {"bank_reference": "REF-BBBB"}),
}  # fmt: skip
CSV = b"""date,amount,reference,text,name
2026-03-06,50.00,L-INI-1,payment,Initech
2026-03-21,50.00,L-INI-2,payment,Initech
2026-03-14,75.00,L-HOO-1,payment,Hooli
2026-03-14,75.00,L-HOO-2,payment,Hooli
2026-03-15,30.00,REF-BBBB,payment,Someone
2026-03-15,30.00,REF-AAAA,payment,Someone
"""
# rule, line's bank reference → the posting it clears
EXPECTED = {
    ("amount_date_counterparty", "L-INI-1", "initech_5"),
    ("amount_date_counterparty", "L-INI-2", "initech_20"),
    ("bank_reference", "REF-AAAA", "ref_a"),
    ("bank_reference", "REF-BBBB", "ref_b"),
}


def _setup(runtime: Runtime) -> tuple[BookFixture, dict[str, str], uuid.UUID]:
    book = make_book(runtime)
    with unit_of_work(runtime.connection) as uow:
        entries = [_payment(d, a, name, m, meta) for name, (d, a, m, meta) in POSTINGS.items()]
        posted = post_entries(uow.conn, book.id, entries)
        import_statement(
            uow.conn, book.id, account_ref=BANK, data=CSV, format="csv", csv_mapping=MAPPING
        )
        row = uow.conn.execute(
            "select id from accounts where book_id = %s and name = %s", (book.id, BANK)
        ).fetchone()
        assert row is not None
        uow.commit()
    return book, {str(p.id): name for name, p in zip(POSTINGS, posted, strict=True)}, row[0]


def test_auto_match_writes_the_matchers_pairs_on_a_tricky_sample(runtime: Runtime) -> None:
    book, names, account_id = _setup(runtime)
    with unit_of_work(runtime.connection) as uow:
        pure = auto_match(
            open_lines(uow.conn, book.id, account_id),
            open_postings(uow.conn, book.id, account_id, date.min, date.max),
        )
        outcome = run_auto_match(uow.conn, book.id, account_ref=BANK)
        uow.commit()
    assert [m for _, m in outcome.matches] == pure.matches
    with runtime.connection() as conn:
        rows = conn.execute(
            "select m.rule, l.bank_reference, x.entry_id::text, x.line_no, m.amount"
            " from statement_matches m"
            " join statement_match_lines ml on ml.book_id = m.book_id and ml.match_id = m.id"
            " join bank_statement_lines l on l.book_id = ml.book_id and l.id = ml.line_id"
            " join statement_match_postings x on x.book_id = m.book_id and x.match_id = m.id"
            " where m.book_id = %s and m.undone_at is null",
            (book.id,),
        ).fetchall()
    assert {(r[0], r[1], names[r[2]]) for r in rows} == EXPECTED
    assert {(r[3], r[4]) for r in rows} == {(1, Decimal("50.00")), (1, Decimal("30.00"))}
    assert outcome.json()["unmatched_lines"] == 2  # the two Hooli lines


def _match(conn: psycopg.Connection, book_id: uuid.UUID, account_id: uuid.UUID,
           amount: str, lines: list[uuid.UUID], postings: list[str]) -> uuid.UUID:  # fmt: skip
    match_id = uuid.uuid4()
    conn.execute(
        "insert into statement_matches (book_id, id, account_id, currency, rule, amount)"
        " values (%s, %s, %s, 'USD', 'manual', %s)",
        (book_id, match_id, account_id, Decimal(amount)),
    )
    for line in lines:
        conn.execute(
            "insert into statement_match_lines (book_id, match_id, line_id) values (%s, %s, %s)",
            (book_id, match_id, line),
        )
    for entry in postings:
        conn.execute(
            "insert into statement_match_postings (book_id, match_id, entry_id, line_no)"
            " values (%s, %s, %s, 1)",
            (book_id, match_id, entry),
        )
    return match_id


def _ids(conn: psycopg.Connection, book_id: uuid.UUID, names: dict[str, str]) -> dict[str, Any]:
    rows = conn.execute(
        "select bank_reference, id from bank_statement_lines where book_id = %s", (book_id,)
    ).fetchall()
    return {**{r[0]: r[1] for r in rows}, **{name: e for e, name in names.items()}}


def _live_matches(conn: psycopg.Connection, book_id: uuid.UUID) -> int:
    row = conn.execute(
        "select count(*) from statement_matches where book_id = %s and undone_at is null",
        (book_id,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_one_bad_match_among_good_ones_fails_the_transaction(
    runtime: Runtime, app_conn: psycopg.Connection
) -> None:
    book, names, account = _setup(runtime)
    x = _ids(app_conn, book.id, names)
    with pytest.raises(psycopg.errors.CheckViolation, match="must agree") as caught:  # noqa: SIM117
        with app_conn.transaction():
            _match(app_conn, book.id, account, "50.00", [x["L-INI-1"]], [x["initech_5"]])
            _match(app_conn, book.id, account, "30.00", [x["REF-AAAA"]], [x["ref_a"]])
            # 75.00 against 50.00
            _match(app_conn, book.id, account, "75.00", [x["L-HOO-1"]], [x["initech_12"]])
            _match(app_conn, book.id, account, "30.00", [x["REF-BBBB"]], [x["ref_b"]])
    assert caught.value.diag.constraint_name == "statement_matches_balanced"
    assert _live_matches(app_conn, book.id) == 0
    # The same matches without the bad one commit.
    with app_conn.transaction():
        _match(app_conn, book.id, account, "50.00", [x["L-INI-1"]], [x["initech_5"]])
        _match(app_conn, book.id, account, "30.00", [x["REF-AAAA"]], [x["ref_a"]])
    assert _live_matches(app_conn, book.id) == 2


def test_the_other_rules_of_the_check(runtime: Runtime, app_conn: psycopg.Connection) -> None:
    book, names, account = _setup(runtime)
    x = _ids(app_conn, book.id, names)
    with pytest.raises(psycopg.errors.CheckViolation, match=r"links 1 item\(s\)"):  # noqa: SIM117
        with app_conn.transaction():
            _match(app_conn, book.id, account, "50.00", [x["L-INI-1"]], [])
    # A match's amount must be what its sides sum to.
    with pytest.raises(psycopg.errors.CheckViolation, match="must agree"):  # noqa: SIM117
        with app_conn.transaction():
            _match(app_conn, book.id, account, "49.00", [x["L-INI-1"]], [x["initech_5"]])
    # A posting on another account than the match's.
    row = app_conn.execute(
        "select id from accounts where book_id = %s and name = %s", (book.id, AR)
    ).fetchone()
    assert row is not None
    with pytest.raises(psycopg.errors.CheckViolation, match="another account") as caught:  # noqa: SIM117
        with app_conn.transaction():
            _match(app_conn, book.id, row[0], "50.00", [], [x["initech_5"]])
    assert caught.value.diag.constraint_name == "statement_matches_consistent"
    assert _live_matches(app_conn, book.id) == 0


def test_set_constraints_immediate_then_a_link_more_is_checked_again(
    runtime: Runtime, app_conn: psycopg.Connection
) -> None:
    book, names, account = _setup(runtime)
    x = _ids(app_conn, book.id, names)
    checked_once = False
    with pytest.raises(psycopg.errors.CheckViolation, match="must agree"):  # noqa: SIM117
        with app_conn.transaction():
            app_conn.execute("set constraints all immediate")
            # a balanced match in one statement: checked at its end, and passes
            row = app_conn.execute(
                "with m as (insert into statement_matches"
                "  (book_id, id, account_id, currency, rule, amount)"
                "  values (%(book)s, gen_random_uuid(), %(account)s, 'USD', 'manual', 50.00)"
                "  returning book_id, id),"
                " l as (insert into statement_match_lines (book_id, match_id, line_id)"
                "  select book_id, id, %(line)s from m),"
                " p as (insert into statement_match_postings (book_id, match_id, entry_id, line_no)"
                "  select book_id, id, %(entry)s, 1 from m)"
                " select id from m",
                {"book": book.id, "account": account, "line": x["L-INI-1"],
                 "entry": x["initech_5"]},
            ).fetchone()  # fmt: skip
            assert row is not None
            checked_once = True
            # one more line in a later statement unbalances it: checked again
            app_conn.execute(
                "insert into statement_match_lines (book_id, match_id, line_id)"
                " values (%s, %s, %s)",
                (book.id, row[0], x["L-INI-2"]),
            )
    assert checked_once
    assert _live_matches(app_conn, book.id) == 0


def test_no_ticket_is_left_after_commit_and_the_app_cannot_touch_them(
    runtime: Runtime, app_conn: psycopg.Connection, owner_conn: psycopg.Connection
) -> None:
    book, names, _ = _setup(runtime)
    with unit_of_work(runtime.connection) as uow:
        outcome = run_auto_match(uow.conn, book.id, account_ref=BANK)
        uow.commit()
    assert len(outcome.matches) == 4
    assert owner_conn.execute("select count(*) from statement_match_tickets").fetchone() == (0,)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app_conn.execute("select count(*) from statement_match_tickets")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app_conn.execute("delete from statement_match_tickets")
    # the check finds a transaction's matches by txid: the application cannot choose it
    x = _ids(app_conn, book.id, names)
    with pytest.raises(psycopg.errors.CheckViolation, match="txid"):
        app_conn.execute(
            "insert into statement_matches (book_id, id, account_id, currency, rule, amount, txid)"
            " select %s, gen_random_uuid(), account_id, 'USD', 'manual', 1, 42"
            " from bank_statement_lines where book_id = %s and id = %s",
            (book.id, book.id, x["L-INI-1"]),
        )


def test_undo_then_match_again_in_one_transaction(runtime: Runtime) -> None:
    book, _, _ = _setup(runtime)
    with unit_of_work(runtime.connection) as uow:
        outcome = run_auto_match(uow.conn, book.id, account_ref=BANK)
        uow.commit()
    first = next(str(i) for i, m in outcome.matches if m.rule == "amount_date_counterparty")
    with unit_of_work(runtime.connection) as uow:
        undone = undo_match(uow.conn, book.id, first)
        again = create_match(
            uow.conn,
            book.id,
            line_ids=[line["id"] for line in undone["lines"]],
            postings=[(p["entry_id"], p["line_no"]) for p in undone["postings"]],
        )
        uow.commit()
    assert undone["status"] == "undone"
    assert again["id"] != first and again["status"] == "live"
    with runtime.connection() as conn:
        assert _live_matches(conn, book.id) == 4


def test_what_the_foreign_keys_checked_is_still_refused(
    runtime: Runtime, app_conn: psycopg.Connection
) -> None:
    book, names, account = _setup(runtime)
    x = _ids(app_conn, book.id, names)
    nowhere = uuid.uuid4()
    cases = [  # (lines, postings, account, the constraint that refuses it)
        ([nowhere], [x["initech_5"]], account,
         "fk_statement_match_lines_book_id_line_id_bank_statement_lines"),
        ([x["L-INI-1"]], [str(nowhere)], account,
         "fk_statement_match_postings_book_id_entry_id_line_no_postings"),
        ([x["L-INI-1"]], [x["initech_5"]], nowhere,
         "fk_statement_matches_book_id_account_id_accounts"),
    ]  # fmt: skip
    for lines, postings, account_id, constraint in cases:
        with pytest.raises(psycopg.errors.ForeignKeyViolation) as caught:  # noqa: SIM117
            with app_conn.transaction():
                _match(app_conn, book.id, account_id, "50.00", lines, postings)
        assert caught.value.diag.constraint_name == constraint
    with pytest.raises(psycopg.errors.ForeignKeyViolation) as caught:
        app_conn.execute(
            "insert into statement_match_lines (book_id, match_id, line_id) values (%s, %s, %s)",
            (book.id, nowhere, x["L-INI-1"]),
        )
    assert caught.value.diag.constraint_name == (
        "fk_statement_match_lines_book_id_match_id_statement_matches"
    )
    # a committed match gains no links
    with app_conn.transaction():
        match_id = _match(app_conn, book.id, account, "50.00", [x["L-INI-1"]], [x["initech_5"]])
    with pytest.raises(psycopg.errors.CheckViolation, match="cannot gain") as caught:
        app_conn.execute(
            "insert into statement_match_postings (book_id, match_id, entry_id, line_no)"
            " values (%s, %s, %s, 1)",
            (book.id, match_id, x["initech_12"]),
        )
    assert caught.value.diag.constraint_name == "statement_matches_closed"
    # another book's line is no line of this book
    other, other_names, _ = _setup(runtime)
    y = _ids(app_conn, other.id, other_names)
    with pytest.raises(psycopg.errors.ForeignKeyViolation):  # noqa: SIM117
        with app_conn.transaction():
            _match(app_conn, book.id, account, "50.00", [y["L-INI-1"]], [x["initech_12"]])
    assert _live_matches(app_conn, book.id) == 1
