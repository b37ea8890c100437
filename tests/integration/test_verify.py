"""`verify` finds what a superuser changed behind the triggers' backs.

Tampering needs the owner's session with triggers off (the application's role
cannot do it, see test_invariants.py); verify must then name what changed,
both as `verify_book` and as `activebilling verify` (exit code 1).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import date
from pathlib import Path

import psycopg
import pytest

from adapters.runtime import Runtime
from ledger.entries import Posting, build_entry
from ledger.money import Money
from ledger.postgres.planner import planner_settings
from ledger.postgres.posting import PostedEntry, post_entries
from ledger.postgres.sealer import load_canonical_entries, seal_pending
from ledger.postgres.unit_of_work import unit_of_work
from ledger.postgres.verify import (
    _CHECKS,
    _PLAN,
    Discrepancy,
    _checks,
    verify_book,
)
from ledger.sealing import GENESIS_HASH, link_hash
from tests.conftest import APP_ROLE, BookFixture, make_book

DAY = date(2026, 3, 10)
CLI = Path(sys.executable).with_name("activebilling")


def post_three(runtime: Runtime, book_id: uuid.UUID) -> list[PostedEntry]:
    entries = [
        build_entry(
            DAY,
            f"sale {n}",
            [
                Posting("Assets:Bank:Operating", Money.exact(f"{n}0.00", "USD")),
                Posting("Income:Services", Money.exact(f"-{n}0.00", "USD")),
            ],
            idempotency_key=f"v{n}",
        )
        for n in (1, 2, 3)
    ]
    with unit_of_work(runtime.connection) as uow:
        posted = post_entries(uow.conn, book_id, entries)
        uow.commit()
    return posted


@pytest.fixture
def sealed(runtime: Runtime, book: BookFixture) -> list[PostedEntry]:
    posted = post_three(runtime, book.id)
    assert seal_pending(runtime.connection, book.id) == 3
    with runtime.connection() as conn:
        assert verify_book(conn, book.id) == []
    return posted


def verify(runtime: Runtime, book_id: uuid.UUID) -> list[Discrepancy]:
    with runtime.connection() as conn:
        return verify_book(conn, book_id)


def run_cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "ACTIVEBILLING_APP_ROLE": APP_ROLE}
    return subprocess.run(
        [str(CLI), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def tamper(owner_conn: psycopg.Connection, statement: str, *params: object) -> int:
    """Run a change as superuser with user triggers off for this transaction only."""
    with owner_conn.transaction():
        owner_conn.execute("set local session_replication_role = replica")
        changed = owner_conn.execute(statement, params).rowcount
    assert owner_conn.execute("show session_replication_role").fetchone() == ("origin",)
    return changed


def unpoison(conn: psycopg.Connection, book_id: uuid.UUID, entry_id: uuid.UUID) -> None:
    """Take a forged-sealed entry (and the rest of its statement) off the sealing
    queue, so that sealing every book (Runtime.seal_all, used by other tests)
    does not trip over it."""
    conn.execute(
        "delete from seal_queue where book_id = %s and %s = any(entry_ids)", (book_id, entry_id)
    )


def checks_for(found: list[Discrepancy], subject: object) -> set[str]:
    return {d.check for d in found if d.subject == str(subject)}


def test_an_untampered_book_verifies(
    runtime: Runtime, book: BookFixture, sealed: list[PostedEntry]
) -> None:
    assert verify(runtime, book.id) == []


def test_a_balanced_change_to_posting_amounts_breaks_the_seal(
    runtime: Runtime, book: BookFixture, sealed: list[PostedEntry], owner_conn: psycopg.Connection
) -> None:
    """Both postings moved by the same amount: the entry still balances, so only
    the seal chain (and the balance projection) can tell."""
    victim = sealed[1]
    changed = tamper(
        owner_conn,
        "update postings set amount = amount + sign(amount) * 5"
        " where book_id = %s and entry_id = %s",
        book.id,
        victim.id,
    )
    assert changed == 2
    found = verify(runtime, book.id)
    assert "seal_chain" in checks_for(found, victim.id)
    assert "balanced" not in {d.check for d in found}
    assert any(d.check == "daily_balances" for d in found)
    chain_subjects = {d.subject for d in found if d.check == "seal_chain"}
    assert chain_subjects == {str(victim.id)}  # the other entries are not blamed
    detail = next(d.detail for d in found if d.check == "seal_chain")
    assert str(victim.id) in detail and "seq 2" in detail


def test_tampering_with_triggers_disabled_by_alter_table(
    runtime: Runtime, book: BookFixture, sealed: list[PostedEntry], owner_conn: psycopg.Connection
) -> None:
    victim = sealed[0]
    with owner_conn.transaction():
        owner_conn.execute("alter table postings disable trigger user")
        owner_conn.execute(
            "update postings set amount = amount + 0.01 where book_id = %s and entry_id = %s"
            " and line_no = 1",
            (book.id, victim.id),
        )
        owner_conn.execute("alter table postings enable trigger user")
    found = verify(runtime, book.id)
    assert checks_for(found, victim.id) >= {"seal_chain", "balanced"}


def test_a_changed_memo_breaks_the_seal(
    runtime: Runtime, book: BookFixture, sealed: list[PostedEntry], owner_conn: psycopg.Connection
) -> None:
    victim = sealed[2]
    tamper(
        owner_conn,
        "update journal_entries set memo = 'nothing to see' where book_id = %s and id = %s",
        book.id,
        victim.id,
    )
    found = verify(runtime, book.id)
    assert [(d.check, d.subject) for d in found] == [("seal_chain", str(victim.id))]


def test_a_deleted_seal_is_a_gap(
    runtime: Runtime, book: BookFixture, sealed: list[PostedEntry], owner_conn: psycopg.Connection
) -> None:
    tamper(owner_conn, "delete from seals where book_id = %s and seq = 2", book.id)
    found = verify(runtime, book.id)
    assert Discrepancy("seal_chain", "seq 2", "gap: next is 3") in found
    assert "sealed" in checks_for(found, sealed[1].id)  # its entry is no longer sealed


def test_a_forged_seal_by_the_app_role_is_caught(
    runtime: Runtime, book: BookFixture, sealed: list[PostedEntry], app_conn: psycopg.Connection
) -> None:
    """The role may append seals (the sealer runs as it): a seal that extends the
    chain but does not hash the entry passes the trigger and fails verify."""
    with unit_of_work(runtime.connection) as uow:
        (late,) = post_entries(
            uow.conn,
            book.id,
            [
                build_entry(
                    DAY,
                    "late",
                    [
                        Posting("Assets:Bank:Operating", Money.exact("1.00", "USD")),
                        Posting("Income:Services", Money.exact("-1.00", "USD")),
                    ],
                )
            ],
        )
        uow.commit()
    last = app_conn.execute(
        "select hash from seals where book_id = %s and seq = 3", (book.id,)
    ).fetchone()
    assert last is not None
    app_conn.execute(
        "insert into seals (book_id, seq, entry_id, prev_hash, hash) values (%s, 4, %s, %s, %s)",
        (book.id, late.id, last[0], "f" * 64),
    )
    try:
        found = verify(runtime, book.id)
        assert "seal_chain" in checks_for(found, late.id)
    finally:
        unpoison(app_conn, book.id, late.id)


def test_an_entry_dropped_from_the_sealing_queue_is_reported(
    runtime: Runtime, book: BookFixture, app_conn: psycopg.Connection
) -> None:
    """The role may delete from seal_queue (the sealer does); entries removed
    behind the sealer's back are neither sealed nor queued. The queue holds a
    row per posting statement, so the statement's three entries go together."""
    posted = post_three(runtime, book.id)
    removed = app_conn.execute(
        "delete from seal_queue where book_id = %s and %s = any(entry_ids)",
        (book.id, posted[0].id),
    ).rowcount
    assert removed == 1
    assert seal_pending(runtime.connection, book.id) == 0
    found = verify(runtime, book.id)
    assert sorted((d.check, d.subject) for d in found) == sorted(
        ("sealed", str(p.id)) for p in posted
    )


def test_a_tampered_daily_balance_is_reported(
    runtime: Runtime, book: BookFixture, sealed: list[PostedEntry], owner_conn: psycopg.Connection
) -> None:
    with runtime.connection() as conn:
        row = conn.execute(
            "select id from accounts where book_id = %s and name = 'Income:Services'", (book.id,)
        ).fetchone()
    assert row is not None
    revenue = row[0]
    changed = tamper(
        owner_conn,
        "update account_balances set amount = amount - 0.01 where book_id = %s"
        " and account_id = %s and slot = (select min(slot) from account_balances"
        " where book_id = %s and account_id = %s)",
        book.id,
        revenue,
        book.id,
        revenue,
    )
    assert changed == 1
    found = verify(runtime, book.id)
    assert [(d.check, d.subject) for d in found] == [("daily_balances", str(revenue))]
    assert "-60.00" in found[0].detail and "-60.01" in found[0].detail


def test_a_tampered_guarded_balance_is_reported(
    runtime: Runtime, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    entry = build_entry(
        DAY,
        "top-up",
        [
            Posting("Assets:Bank:Operating", Money.exact("50.00", "USD")),
            Posting("Liabilities:Prepaid-Wallet", Money.exact("-50.00", "USD")),
        ],
    )
    with unit_of_work(runtime.connection) as uow:
        post_entries(uow.conn, book.id, [entry])
        uow.commit()
    seal_pending(runtime.connection, book.id)
    tamper(
        owner_conn,
        "update guarded_balances set balance = balance - 1000 where book_id = %s",
        book.id,
    )
    found = verify(runtime, book.id)
    assert [d.check for d in found] == ["guarded_balances"]


# -- the CLI -------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_verify_exits_0_on_an_untampered_book(
    database_url: str, book: BookFixture, sealed: list[PostedEntry]
) -> None:
    result = run_cli(database_url, "verify", "--book", str(book.id))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 3 entries, 6 postings")
    as_json = run_cli(database_url, "verify", "--book", str(book.id), "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    assert document["ok"] is True
    assert document["discrepancies"] == []
    assert (document["entries"], document["postings"]) == (3, 6)


@pytest.mark.slow
def test_cli_verify_names_the_tampered_entry_and_exits_1(
    database_url: str,
    book: BookFixture,
    sealed: list[PostedEntry],
    owner_conn: psycopg.Connection,
) -> None:
    victim = sealed[1]
    tamper(
        owner_conn,
        "update postings set amount = amount * 2 where book_id = %s and entry_id = %s",
        book.id,
        victim.id,
    )
    result = run_cli(database_url, "verify", "--book", str(book.id))
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert f"FAIL seal_chain {victim.id}" in result.stdout
    for other in (sealed[0], sealed[2]):
        assert f"seal_chain {other.id}" not in result.stdout

    as_json = run_cli(database_url, "verify", "--book", str(book.id), "--format", "json")
    assert as_json.returncode == 1
    document = json.loads(as_json.stdout)
    assert document["ok"] is False
    assert {"check", "subject", "detail"} <= set(document["discrepancies"][0])
    assert {"check": "seal_chain", "subject": str(victim.id)} in [
        {"check": d["check"], "subject": d["subject"]} for d in document["discrepancies"]
    ]


@pytest.mark.slow
def test_cli_verify_reports_an_entry_dropped_from_the_queue(
    database_url: str, runtime: Runtime, book: BookFixture, app_conn: psycopg.Connection
) -> None:
    posted = post_three(runtime, book.id)
    app_conn.execute(
        "delete from seal_queue where book_id = %s and %s = any(entry_ids)",
        (book.id, posted[2].id),
    )
    result = run_cli(database_url, "verify", "--book", str(book.id), "--format", "json")
    assert result.returncode == 1, result.stderr
    document = json.loads(result.stdout)
    assert document["newly_sealed"] == 0  # the CLI seals the book's queue before checking
    assert sorted((d["check"], d["subject"]) for d in document["discrepancies"]) == sorted(
        ("sealed", str(p.id)) for p in posted
    )


def _forge_seal(runtime: Runtime, book_id: uuid.UUID, app_conn: psycopg.Connection) -> uuid.UUID:
    """Append a seal for a queued entry with a hash that is not the entry's."""
    entry = build_entry(
        DAY,
        "late",
        [
            Posting("Assets:Bank:Operating", Money.exact("1.00", "USD")),
            Posting("Income:Services", Money.exact("-1.00", "USD")),
        ],
    )
    with unit_of_work(runtime.connection) as uow:
        (late,) = post_entries(uow.conn, book_id, [entry])
        uow.commit()
    last = app_conn.execute(
        "select seq, hash from seals where book_id = %s order by seq desc limit 1", (book_id,)
    ).fetchone()
    assert last is not None
    app_conn.execute(
        "insert into seals (book_id, seq, entry_id, prev_hash, hash) values (%s, %s, %s, %s, %s)",
        (book_id, last[0] + 1, late.id, last[1], "f" * 64),
    )
    return late.id


@pytest.mark.slow
def test_cli_verify_of_one_book_is_not_stopped_by_another(
    database_url: str,
    runtime: Runtime,
    book: BookFixture,
    sealed: list[PostedEntry],
    app_conn: psycopg.Connection,
) -> None:
    """A book whose sealing queue is poisoned must not break verify of another."""
    other = make_book(runtime)
    post_three(runtime, other.id)
    seal_pending(runtime.connection, other.id)
    forged = _forge_seal(runtime, other.id, app_conn)
    try:
        result = run_cli(database_url, "verify", "--book", str(book.id))
    finally:
        unpoison(app_conn, other.id, forged)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_cli_verify_reports_a_forged_seal_instead_of_crashing(
    database_url: str,
    runtime: Runtime,
    book: BookFixture,
    sealed: list[PostedEntry],
    app_conn: psycopg.Connection,
) -> None:
    forged = _forge_seal(runtime, book.id, app_conn)
    try:
        result = run_cli(database_url, "verify", "--book", str(book.id))
    finally:
        unpoison(app_conn, book.id, forged)
    assert result.returncode == 1, result.stderr
    assert f"FAIL seal_chain {forged}" in result.stdout


@pytest.mark.slow
def test_cli_verify_refuses_an_unknown_book(database_url: str, book: BookFixture) -> None:
    result = run_cli(database_url, "verify", "--book", str(uuid.uuid4()))
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "does not exist" in result.stderr


def test_sql_and_python_hash_the_same_canonical_json(
    runtime: Runtime, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    """verify re-hashes in SQL (ab_canonical_json) and falls back to Python for
    JSON it cannot write exactly (floats): both must agree with the sealer on
    escapes, non-ASCII, key order, nesting, integers, booleans and nulls, and
    both must still see a change."""
    awkward = {
        "zeta": 'quote " back \\ nl \n tab \t bell \x07 é ☃ \u2028',
        "Alpha": [1, -20, True, False, None, {"b": "x", "a": []}],
        "é": {"nested": {"k": "v"}},
        "big": 12345678901234567890,
    }
    with_float = {**awkward, "rate": 0.1, "whole": 100.0}
    entries = [
        build_entry(
            DAY,
            memo,
            [
                Posting(
                    "Assets:Bank:Operating",
                    Money.exact("12.30", "USD"),
                    document="receipt:ü",
                    dimensions={"via": "payment:é", "Z": "1", "a": "\\"},
                ),
                Posting("Income:Services", Money.exact("-12.30", "USD")),
            ],
            metadata=metadata,
            idempotency_key=f"awkward:{n}",
        )
        for n, (memo, metadata) in enumerate(
            [('memo "é" \\ ✓', awkward), ("float memo", with_float), ("plain", {})]
        )
    ]
    with unit_of_work(runtime.connection) as uow:
        posted = post_entries(uow.conn, book.id, entries)
        uow.commit()
    assert seal_pending(runtime.connection, book.id) == 3
    with runtime.connection() as conn:
        sql_side = conn.execute(
            "select count(*) from journal_entries"
            " where book_id = %s and ab_canonical_json(metadata) is not null",
            (book.id,),
        ).fetchone()
        assert sql_side == (2,)  # the float entry goes through Python
    assert verify(runtime, book.id) == []
    for victim, path in ((posted[0], "{é,nested,k}"), (posted[1], "{zeta}")):
        tamper(
            owner_conn,
            f"update journal_entries set metadata = jsonb_set(metadata, '{path}', '\"w\"')"
            " where book_id = %s and id = %s",
            book.id,
            victim.id,
        )
    found = verify(runtime, book.id)
    assert {(d.check, d.subject) for d in found} == {
        ("seal_chain", str(posted[0].id)),
        ("seal_chain", str(posted[1].id)),
    }


def test_a_posting_moved_to_another_currency_unbalances_its_entry(
    runtime: Runtime, book: BookFixture, sealed: list[PostedEntry], owner_conn: psycopg.Connection
) -> None:
    """The entry still sums to zero and has two postings, but not per currency:
    the per-entry pass must hand it to the per-currency re-check."""
    victim, emptied = sealed[0], sealed[2]
    tamper(
        owner_conn,
        "update postings set currency = 'EUR' where book_id = %s and entry_id = %s and line_no = 2",
        book.id,
        victim.id,
    )
    tamper(
        owner_conn,
        "delete from postings where book_id = %s and entry_id = %s",
        book.id,
        emptied.id,
    )
    unbalanced = {d.subject: d.detail for d in verify(runtime, book.id) if d.check == "balanced"}
    assert set(unbalanced) == {str(victim.id), str(emptied.id)}
    head, sums = unbalanced[str(victim.id)].split("; sums per currency: ")
    assert head == "postings: 2"
    assert sorted(sums.split(", ")) == ["EUR -10.00", "USD 10.00"]
    assert unbalanced[str(emptied.id)] == "postings: 0; sums per currency: "


def test_sql_vouches_for_amounts_it_quotes_by_hand(
    runtime: Runtime, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    """Amounts are quoted in SQL without to_json: on a clean book the seal check
    must agree byte for byte (no row left for Python), trailing zeros, signs
    and large values included; an amount too long for SQL goes to Python."""
    amounts = ["0.10", "12.30", "1000000.00", "123456789012.34", "7.00", "0.01"]
    entries = [
        build_entry(
            DAY,
            f"amount {a}",
            [
                Posting("Assets:Bank:Operating", Money.exact(a, "USD")),
                Posting("Income:Services", Money.exact(f"-{a}", "USD")),
            ],
            idempotency_key=f"amount:{a}",
        )
        for a in amounts
    ]
    with unit_of_work(runtime.connection) as uow:
        posted = post_entries(uow.conn, book.id, entries)
        uow.commit()
    assert seal_pending(runtime.connection, book.id) == len(amounts)
    with runtime.connection() as conn:
        assert _checks(conn, book.id) == []
    assert verify(runtime, book.id) == []
    victim = posted[1]
    tamper(
        owner_conn,
        "update postings set amount = amount * 1000000000000000000000000000000"
        " where book_id = %s and entry_id = %s",
        book.id,
        victim.id,
    )
    with runtime.connection() as conn:
        rows = [r for r in _checks(conn, book.id) if r[0] == "entry"]
    assert [(r[1], r[7]) for r in rows] == [(victim.id, False)]
    assert {(d.check, d.subject) for d in verify(runtime, book.id)} >= {
        ("seal_chain", str(victim.id))
    }


def test_a_customer_text_cannot_forge_the_lines_it_replaces(
    runtime: Runtime, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    """Two postings that cancel out are deleted and the first posting's customer
    is rewritten to the text those lines took in the canonical JSON, quotes and
    brackets included. The entry still balances; a customer quoted without
    escaping would render the very document that was sealed."""
    entry = build_entry(
        DAY,
        "four lines",
        [
            Posting("Assets:Bank:Operating", Money.exact("10.00", "USD"), customer="c1"),
            Posting("Income:Services", Money.exact("-10.00", "USD"), customer="c2"),
            Posting("Assets:Bank:Operating", Money.exact("10.00", "USD"), customer="c3"),
            Posting("Income:Services", Money.exact("-10.00", "USD"), customer="c4"),
        ],
        idempotency_key="forge",
    )
    with unit_of_work(runtime.connection) as uow:
        (victim,) = post_entries(uow.conn, book.id, [entry])
        uow.commit()
    assert seal_pending(runtime.connection, book.id) == 1
    with runtime.connection() as conn:
        sealed_text = load_canonical_entries(conn, book.id, [victim.id])[victim.id].decode()
    forged = sealed_text[sealed_text.index('"c1"') + 1 : sealed_text.index('"c3"') + 3]
    assert forged.startswith('c1",') and forged.endswith(',"c3')
    assert (
        tamper(
            owner_conn,
            "delete from postings where book_id = %s and entry_id = %s and line_no in (2, 3)",
            book.id,
            victim.id,
        )
        == 2
    )
    tamper(
        owner_conn,
        "update postings set customer_id = %s where book_id = %s and entry_id = %s and line_no = 1",
        forged,
        book.id,
        victim.id,
    )
    found = verify(runtime, book.id)
    assert "seal_chain" in checks_for(found, victim.id)
    assert "balanced" not in checks_for(found, victim.id)


def test_both_halves_of_the_book_are_checked_in_a_parallel_plan_too(
    runtime: Runtime, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    """verify splits the entries at their middle id: a change at either end and
    an entry deleted from the middle are all found, whether PostgreSQL runs
    the halves one after the other or in parallel workers."""
    entries = [
        build_entry(
            DAY,
            f"entry {n}",
            [
                Posting("Assets:Bank:Operating", Money.exact("5.00", "USD")),
                Posting("Income:Services", Money.exact("-5.00", "USD")),
            ],
            idempotency_key=f"half:{n}",
        )
        for n in range(6)
    ]
    with unit_of_work(runtime.connection) as uow:
        posted = post_entries(uow.conn, book.id, entries)
        uow.commit()
    assert seal_pending(runtime.connection, book.id) == 6
    ids = sorted(p.id for p in posted)
    first, deleted, last = ids[0], ids[3], ids[-1]
    for victim in (first, last):
        tamper(
            owner_conn,
            "update journal_entries set memo = 'changed' where book_id = %s and id = %s",
            book.id,
            victim,
        )
    tamper(
        owner_conn,
        "delete from postings where book_id = %s and entry_id = %s",
        book.id,
        deleted,
    )
    tamper(
        owner_conn,
        "delete from journal_entries where book_id = %s and id = %s",
        book.id,
        deleted,
    )
    expected = {
        ("seal_chain", str(first), "differs from what was sealed"),
        ("seal_chain", str(last), "differs from what was sealed"),
        ("seal_chain", str(deleted), "sealed entry missing"),
    }
    with runtime.connection() as conn:
        serial = verify_book(conn, book.id)
        conn.execute("set parallel_setup_cost = 0")
        conn.execute("set parallel_tuple_cost = 0")
        with planner_settings(conn, _PLAN):
            plan = "\n".join(
                r[0]
                for r in conn.execute(
                    "explain " + _CHECKS, {"b": book.id, "mid": ids[3], "genesis": GENESIS_HASH}
                )
            )
        parallel = verify_book(conn, book.id)
        seqs = dict(conn.execute("select entry_id, seq from seals where book_id = %s", (book.id,)))
    assert "Parallel Append" in plan
    assert serial == parallel
    chain = [d for d in serial if d.check == "seal_chain"]
    assert {(d.check, d.subject, d.detail.split(") ")[-1]) for d in chain} == expected
    assert {d.check for d in serial} == {"seal_chain", "daily_balances"}
    assert [seqs[uuid.UUID(d.subject)] for d in chain] == sorted(
        seqs[v] for v in (first, deleted, last)
    )


def test_every_field_of_the_canonical_document_is_checked_in_sql(
    runtime: Runtime, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    """SQL writes the common case (no customer, document, dimensions, memo or
    metadata) as one constant and dates as `date::text`: on a clean book it
    must vouch for every entry whatever the DateStyle, and a change
    to any field -- including one that leaves the common case -- must make it
    disagree and verify name the entry."""
    entries = [
        build_entry(
            DAY,
            "",
            [
                Posting("Assets:Bank:Operating", Money.exact("5.00", "USD")),
                Posting("Income:Services", Money.exact("-5.00", "USD")),
            ],
            idempotency_key=f"field:{n}",
        )
        for n in range(12)
    ]
    with unit_of_work(runtime.connection) as uow:
        posted = post_entries(uow.conn, book.id, entries)
        uow.commit()
    assert seal_pending(runtime.connection, book.id) == len(entries)
    with runtime.connection() as conn:
        conn.execute("set local datestyle = 'SQL, DMY'")
        assert _checks(conn, book.id) == []
        assert conn.execute("show datestyle").fetchone() == ("SQL, DMY",)
    p = "update postings set {} where book_id = %s and entry_id = %s and line_no = 1"
    e = "update journal_entries set {} where book_id = %s and id = %s"
    changes = [
        p.format(
            "account_id = (select account_id from postings x where x.book_id = postings.book_id"
            " and x.entry_id = postings.entry_id and x.line_no = 2)"
        ),
        p.format("line_no = 3"),
        p.format("customer_id = 'c'"),
        p.format("document = 'd'"),
        p.format('dimensions = \'{"k": "v"}\''),
        p.format("amount = 5.001"),
        e.format("effective_date = effective_date + 1"),
        e.format("memo = 'm'"),
        e.format("metadata = '{\"k\": 1}'"),
        e.format("idempotency_key = idempotency_key || 'x'"),
        e.format(f"reverses_entry_id = '{posted[0].id}'"),
    ]
    for change, victim in zip(changes, posted, strict=False):
        assert tamper(owner_conn, change, book.id, victim.id) == 1
    inserted = posted[len(changes)]
    tamper(
        owner_conn,
        "insert into postings (book_id, entry_id, line_no, account_id, amount, currency,"
        " effective_date) select book_id, entry_id, line_no + 2, account_id, 0, currency,"
        " effective_date from postings where book_id = %s and entry_id = %s",
        book.id,
        inserted.id,
    )
    victims = {v.id for v in posted}
    with runtime.connection() as conn:
        conn.execute("set local datestyle = 'German'")
        rows = [r for r in _checks(conn, book.id) if r[0] == "entry"]
        found = verify_book(conn, book.id)
    assert {r[1] for r in rows if r[7] is False} == victims
    assert {uuid.UUID(d.subject) for d in found if d.check == "seal_chain"} == victims


def test_the_parallel_link_check_still_finds_each_kind_of_tampering(
    runtime: Runtime, book: BookFixture, sealed: list[PostedEntry], owner_conn: psycopg.Connection
) -> None:
    """The seal links are a branch of the parallel statement (no window function):
    a posting changed behind the triggers, a relinked seal whose own hash is
    right, and an unbalanced entry are each still named, serial and parallel."""
    changed, relinked, unbalanced = (p.id for p in sealed)  # seqs 1, 2, 3
    tamper(
        owner_conn,
        "update postings set amount = amount + sign(amount) * 5"
        " where book_id = %s and entry_id = %s",
        book.id,
        changed,
    )
    with runtime.connection() as conn:
        canonical = load_canonical_entries(conn, book.id, [relinked])[relinked]
    forged = "a" * 64
    tamper(
        owner_conn,
        "update seals set prev_hash = %s, hash = %s where book_id = %s and seq = 2",
        forged,
        link_hash(forged, canonical),
        book.id,
    )
    tamper(
        owner_conn,
        "update postings set amount = amount + 0.01"
        " where book_id = %s and entry_id = %s and line_no = 1",
        book.id,
        unbalanced,
    )
    with runtime.connection() as conn:
        rows = _checks(conn, book.id)
        serial = verify_book(conn, book.id)
        conn.execute("set parallel_setup_cost = 0")
        conn.execute("set parallel_tuple_cost = 0")
        parallel = verify_book(conn, book.id)
    assert sorted(r[2] for r in rows if r[0] == "link") == [2, 3]
    assert serial == parallel
    assert [(d.check, d.subject, d.detail) for d in serial if d.check != "daily_balances"] == [
        ("balanced", str(unbalanced), "postings: 2; sums per currency: USD 0.01"),
        ("seal_chain", str(changed), f"entry {changed} (seq 1) differs from what was sealed"),
        ("seal_chain", str(relinked), "seq 2 does not name its predecessor"),
        ("seal_chain", str(sealed[2].id), "seq 3 does not name its predecessor"),
        ("seal_chain", str(unbalanced), f"entry {unbalanced} (seq 3) differs from what was sealed"),
    ]
    assert {d.subject for d in serial if d.check == "daily_balances"}


def test_currencies_quoted_by_hand_are_vouched_for_only_when_they_need_no_escaping(
    runtime: Runtime, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    """SQL writes each posting's currency between quotes without to_json, and
    vouches for an entry's lines only when all its postings share one currency
    that to_json would write the same way. An entry in two currencies is left
    to Python (and verifies); a currency rewritten to a text that needs
    escaping (on every posting, so the entry still balances in one currency)
    is not vouched for in SQL, and verify names the entry."""
    legs = [("USD", "10.00"), ("EUR", "7.00")]
    entries = [
        build_entry(
            DAY,
            "one currency",
            [
                Posting("Assets:Bank:Operating", Money.exact("3.00", "USD")),
                Posting("Income:Services", Money.exact("-3.00", "USD")),
            ],
            idempotency_key="currency:one",
        ),
        build_entry(
            DAY,
            "two currencies",
            [
                posting
                for currency, amount in legs
                for posting in (
                    Posting("Assets:Bank:Operating", Money.exact(amount, currency)),
                    Posting("Income:Services", Money.exact(f"-{amount}", currency)),
                )
            ],
            idempotency_key="currency:two",
        ),
    ]
    with unit_of_work(runtime.connection) as uow:
        one, two = post_entries(uow.conn, book.id, entries)
        uow.commit()
    assert seal_pending(runtime.connection, book.id) == 2
    with runtime.connection() as conn:
        rows = [r for r in _checks(conn, book.id) if r[0] == "entry"]
    # the two-currency entry comes back (a balance suspect, its seal left to Python)
    assert [(r[1], r[6], r[7]) for r in rows] == [(two.id, True, False)]
    assert verify(runtime, book.id) == []
    for forged in ('US"D', "US\\D", "US\nD"):
        tamper(
            owner_conn,
            "update postings set currency = %s where book_id = %s and entry_id = %s",
            forged,
            book.id,
            one.id,
        )
        with runtime.connection() as conn:
            rows = [r for r in _checks(conn, book.id) if r[0] == "entry"]
        assert {r[1]: r[7] for r in rows} == {one.id: False, two.id: False}, forged
        found = verify(runtime, book.id)
        assert checks_for(found, one.id) >= {"seal_chain"}, forged
        assert "balanced" not in checks_for(found, one.id), forged
    tamper(
        owner_conn,
        "update postings set amount = amount * 2 where book_id = %s and entry_id = %s"
        " and currency = 'EUR'",
        book.id,
        two.id,
    )
    found = verify(runtime, book.id)
    assert checks_for(found, two.id) == {"seal_chain"}
