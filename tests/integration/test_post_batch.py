"""post_entries' batch path: what a batch writes, row by row, and how a batch
with a bad entry, a replayed batch and a batch naming one key twice behave.

The entries and postings travel as one array literal per column; these tests
check that every value arrives as given (quotes, backslashes, braces, commas,
"NULL", empty and non-ASCII text; each currency's places; JSON documents) and
that the database still refuses what it must.
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

from adapters.runtime import Runtime
from ledger.entries import JournalEntry, Posting, build_entry
from ledger.errors import IdempotencyConflict, UnbalancedEntry
from ledger.money import Money
from ledger.postgres import posting as entry_store
from ledger.postgres.posting import PostedEntry, get_entry, post_entries, reverse_entry
from ledger.postgres.unit_of_work import unit_of_work
from tests.conftest import BookFixture, make_book

DAY = date(2026, 3, 10)
AWKWARD = ['say "hi"', "back\\slash", "{braces}, commas", "NULL", "", "naïve – ünïcode ✓", "a\nb"]


def sale(amount: str, *, key: str | None, memo: str = "sale", day: date = DAY) -> JournalEntry:
    return build_entry(
        day,
        memo,
        [
            Posting("Assets:Bank:Operating", Money.exact(amount, "USD")),
            Posting("Income:Services", Money.exact(f"-{amount}", "USD")),
        ],
        idempotency_key=key,
    )


def commit(runtime: Runtime, book_id: uuid.UUID, entries: Sequence[JournalEntry]) -> list[Any]:
    with unit_of_work(runtime.connection) as uow:
        posted = post_entries(uow.conn, book_id, entries)
        uow.commit()
    return posted


def book_rows(owner_conn: psycopg.Connection, book_id: uuid.UUID) -> dict[str, list[Any]]:
    """Everything a batch writes: entries, postings, sealer queue, daily balances."""
    queries = {
        "entries": "select id, effective_date, memo, metadata, idempotency_key,"
        " reverses_entry_id from journal_entries where book_id = %s order by recorded_at, id",
        "postings": "select entry_id, line_no, a.name, p.amount::text, p.currency,"
        " p.effective_date, p.customer_id, p.document, p.dimensions from postings p"
        " join accounts a on a.book_id = p.book_id and a.id = p.account_id"
        " where p.book_id = %s order by entry_id, line_no",
        "unsealed": "select entry_id from unsealed_entries where book_id = %s order by entry_id",
        "daily": "select a.name, b.currency, b.balance_date, sum(b.amount)::text,"
        " sum(b.postings_count) from account_balances b join accounts a"
        " on a.book_id = b.book_id and a.id = b.account_id where b.book_id = %s"
        " group by 1, 2, 3 order by 1, 2, 3",
    }
    return {name: owner_conn.execute(q, (book_id,)).fetchall() for name, q in queries.items()}


def test_a_batch_writes_exactly_what_it_was_given(
    runtime: Runtime, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    usd = build_entry(
        DAY,
        AWKWARD[0],
        [
            Posting(
                "Assets:Bank:Operating",
                Money(Decimal("12.5"), "USD"),  # one place short: stored as 12.50
                customer=AWKWARD[1],
                dimensions={"region": AWKWARD[2], "null": "NULL"},
            ),
            Posting("Income:Services", Money(Decimal("-10.00"), "USD"), document=AWKWARD[3]),
            Posting("Liabilities:Tax-Payable", Money(Decimal("-2.50"), "USD"), customer=""),
        ],
        metadata={"note": AWKWARD[5], "nested": {"a": [1, "2"]}, "quote": AWKWARD[0]},
        idempotency_key=AWKWARD[6] + AWKWARD[1],
    )
    multi = build_entry(
        date(2026, 3, 11),
        AWKWARD[4],
        [
            Posting("Assets:Bank:Operating", Money(Decimal("120"), "JPY")),
            Posting("Income:Services", Money(Decimal("-120"), "JPY")),
            Posting("Assets:Bank:Operating", Money(Decimal("1.234"), "KWD")),
            Posting("Income:Services", Money(Decimal("-1.234"), "KWD")),
        ],
    )  # no idempotency key: one is made up from the id
    posted = commit(runtime, book.id, [usd, multi])

    assert [p.created for p in posted] == [True, True]
    assert all(p.id.version == 7 for p in posted)
    assert posted[0].idempotency_key == AWKWARD[6] + AWKWARD[1]
    assert posted[1].idempotency_key == f"auto:{posted[1].id}"
    rows = book_rows(owner_conn, book.id)
    assert rows["entries"] == [
        (
            posted[0].id,
            DAY,
            AWKWARD[0],
            {"note": AWKWARD[5], "nested": {"a": [1, "2"]}, "quote": AWKWARD[0]},
            AWKWARD[6] + AWKWARD[1],
            None,
        ),
        (posted[1].id, date(2026, 3, 11), "", {}, f"auto:{posted[1].id}", None),
    ]
    first, second = posted[0].id, posted[1].id
    assert sorted(rows["postings"]) == sorted(
        [
            (first, 1, "Assets:Bank:Operating", "12.50", "USD", DAY, AWKWARD[1], None,
             {"region": AWKWARD[2], "null": "NULL"}),
            (first, 2, "Income:Services", "-10.00", "USD", DAY, None, AWKWARD[3], {}),
            (first, 3, "Liabilities:Tax-Payable", "-2.50", "USD", DAY, "", None, {}),
            (second, 1, "Assets:Bank:Operating", "120", "JPY", date(2026, 3, 11), None, None, {}),
            (second, 2, "Income:Services", "-120", "JPY", date(2026, 3, 11), None, None, {}),
            (second, 3, "Assets:Bank:Operating", "1.234", "KWD", date(2026, 3, 11), None, None,
             {}),
            (second, 4, "Income:Services", "-1.234", "KWD", date(2026, 3, 11), None, None, {}),
        ]
    )  # fmt: skip
    assert rows["unsealed"] == sorted([(first,), (second,)])
    assert rows["daily"] == [
        ("Assets:Bank:Operating", "JPY", date(2026, 3, 11), "120", 1),
        ("Assets:Bank:Operating", "KWD", date(2026, 3, 11), "1.234", 1),
        ("Assets:Bank:Operating", "USD", DAY, "12.50", 1),
        ("Income:Services", "JPY", date(2026, 3, 11), "-120", 1),
        ("Income:Services", "KWD", date(2026, 3, 11), "-1.234", 1),
        ("Income:Services", "USD", DAY, "-10.00", 1),
        ("Liabilities:Tax-Payable", "USD", DAY, "-2.50", 1),
    ]
    # Read back, each entry is what was posted.
    with runtime.connection() as conn:
        again = [get_entry(conn, book.id, str(p.id)) for p in posted]
    assert [e.postings for e in again] == [
        tuple(
            Posting(p.account, p.money.quantized(), p.customer, p.document, p.dimensions)
            for p in entry.postings
        )
        for entry in (usd, multi)
    ]
    assert [e.memo for e in again] == [AWKWARD[0], ""]


def test_a_batch_with_one_unbalanced_entry_writes_nothing_and_names_it(
    runtime: Runtime,
    book: BookFixture,
    owner_conn: psycopg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # build_entry refuses an unbalanced entry; one made without it reaches the
    # database, which must refuse the whole batch and say which entry is off.
    unbalanced = JournalEntry(
        DAY,
        "off by a cent",
        (
            Posting("Assets:Bank:Operating", Money(Decimal("5.00"), "USD")),
            Posting("Income:Services", Money(Decimal("-4.99"), "USD")),
        ),
        idempotency_key="b:2",
    )
    batch = [sale("1.00", key="b:1"), unbalanced, sale("3.00", key="b:3")]
    made: list[uuid.UUID] = []
    new_ids = entry_store.new_entry_ids

    def recording(count: int) -> list[uuid.UUID]:
        made.extend(new_ids(count))
        return made[-count:]

    monkeypatch.setattr(entry_store, "new_entry_ids", recording)
    before = book_rows(owner_conn, book.id)
    with pytest.raises(UnbalancedEntry) as caught:
        commit(runtime, book.id, batch)
    assert caught.value.fields["constraint"] == "journal_entries_balanced"
    message = str(caught.value)
    assert str(made[1]) in message and "USD 0.01" in message, message
    assert str(made[0]) not in message and str(made[2]) not in message
    assert book_rows(owner_conn, book.id) == before

    # The same batch without the bad entry goes in whole.
    posted = commit(runtime, book.id, [batch[0], batch[2]])
    assert [p.idempotency_key for p in posted] == ["b:1", "b:3"]
    assert len(book_rows(owner_conn, book.id)["postings"]) == 4


def test_a_replayed_batch_returns_the_same_entries(
    runtime: Runtime, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    batch = [sale(f"{n}.00", key=f"r:{n}", memo=f"m{n}") for n in range(1, 6)]
    first = commit(runtime, book.id, batch)
    after_first = book_rows(owner_conn, book.id)
    again = commit(runtime, book.id, batch)
    assert [p.id for p in again] == [p.id for p in first]
    assert [p.created for p in again] == [False] * 5
    assert [p.recorded_at for p in again] == [p.recorded_at for p in first]
    assert [p.postings for p in again] == [p.postings for p in first]
    assert book_rows(owner_conn, book.id) == after_first

    # Partly new: the replays in place, the new one written.
    mixed = commit(runtime, book.id, [batch[0], sale("9.00", key="r:9"), batch[4]])
    assert [p.created for p in mixed] == [False, True, False]
    assert (mixed[0].id, mixed[2].id) == (first[0].id, first[4].id)
    assert len(book_rows(owner_conn, book.id)["entries"]) == 6

    # A key of the batch with other content: refused, nothing written.
    before = book_rows(owner_conn, book.id)
    with pytest.raises(IdempotencyConflict) as caught:
        commit(runtime, book.id, [sale("7.00", key="r:7"), sale("2.01", key="r:2")])
    assert caught.value.fields["entry_id"] == str(first[1].id)
    assert book_rows(owner_conn, book.id) == before


def test_a_batch_naming_one_key_twice(
    runtime: Runtime, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    twice = sale("5.00", key="dup")
    posted: list[PostedEntry] = commit(runtime, book.id, [twice, sale("6.00", key="other"), twice])
    # The first is written; the second is its replay.
    assert [p.created for p in posted] == [True, True, False]
    assert posted[2].id == posted[0].id
    rows = book_rows(owner_conn, book.id)
    assert [(r[0], r[4]) for r in rows["entries"]] == [
        (posted[0].id, "dup"),
        (posted[1].id, "other"),
    ]
    assert sorted((r[0], r[2], r[3]) for r in rows["postings"]) == sorted(
        [
            (posted[0].id, "Assets:Bank:Operating", "5.00"),
            (posted[0].id, "Income:Services", "-5.00"),
            (posted[1].id, "Assets:Bank:Operating", "6.00"),
            (posted[1].id, "Income:Services", "-6.00"),
        ]
    )

    # Replayed whole, each place gets its entry (the key twice included).
    again = commit(runtime, book.id, [twice, sale("6.00", key="other"), twice])
    assert [p.id for p in again] == [posted[0].id, posted[1].id, posted[0].id]
    assert [p.created for p in again] == [False, False, False]

    # One key with two contents in a batch: refused, nothing written.
    before = book_rows(owner_conn, book.id)
    with pytest.raises(IdempotencyConflict):
        commit(runtime, book.id, [sale("1.00", key="dup2"), sale("1.01", key="dup2")])
    assert book_rows(owner_conn, book.id) == before


def test_a_reversal_of_an_entry_the_book_does_not_have_is_refused(
    runtime: Runtime, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    # What the foreign key to the reversed entry refused, the entries' statement
    # trigger refuses now (revision 0029_batch): same SQLSTATE, same name.
    other_book_entry = commit(runtime, make_book(runtime).id, [sale("1.00", key="o")])[0]
    for missing in (uuid.uuid4(), other_book_entry.id):
        reversal = build_entry(
            DAY,
            "reverses nothing here",
            [
                Posting("Assets:Bank:Operating", Money(Decimal("-1.00"), "USD")),
                Posting("Income:Services", Money(Decimal("1.00"), "USD")),
            ],
            idempotency_key=f"rev:{missing}",
            reverses=str(missing),
        )
        before = book_rows(owner_conn, book.id)
        with pytest.raises(pg.ForeignKeyViolation) as caught:
            commit(runtime, book.id, [sale("2.00", key=f"ok:{missing}"), reversal])
        assert caught.value.sqlstate == "23503"
        assert caught.value.diag.constraint_name == (
            "fk_journal_entries_book_id_reverses_entry_id_journal_entries"
        )
        assert str(missing) in str(caught.value)
        assert book_rows(owner_conn, book.id) == before

    # An entry of the book can be reversed, once.
    original = commit(runtime, book.id, [sale("3.00", key="orig")])[0]
    with unit_of_work(runtime.connection) as uow:
        reversal = reverse_entry(uow.conn, book.id, str(original.id))
        uow.commit()
    assert reversal.reverses == original.id
    rows = book_rows(owner_conn, book.id)
    assert (reversal.id, original.id) in [(r[0], r[5]) for r in rows["entries"]]


def test_a_replay_inside_a_transaction_undoes_only_its_own_try(
    runtime: Runtime, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    """A call of NEW_FIRST_FROM entries or more first inserts without ON CONFLICT
    in a savepoint; a used key rolls back to it and goes again with ON CONFLICT.
    What the transaction wrote before stays, and it commits whole."""
    size = entry_store.NEW_FIRST_FROM  # the smallest call that takes the savepoint
    (stored,) = commit(runtime, book.id, [sale("3.00", key="t:stored")])
    fresh = [sale(f"{n}.00", key=f"t:new{n}") for n in range(1, size)]
    with unit_of_work(runtime.connection) as uow:
        (before,) = post_entries(uow.conn, book.id, [sale("4.00", key="t:before")])
        replay, *new = post_entries(uow.conn, book.id, [sale("3.00", key="t:stored"), *fresh])
        again = post_entries(uow.conn, book.id, [sale("3.00", key="t:stored"), *fresh])
        (after,) = post_entries(uow.conn, book.id, [sale("6.00", key="t:after")])
        uow.commit()
    assert (replay.id, replay.created) == (stored.id, False)
    # All replays, in the savepoint too.
    assert [p.id for p in again] == [stored.id, *(p.id for p in new)]
    assert not any(p.created for p in again)
    keys = [r[4] for r in book_rows(owner_conn, book.id)["entries"]]
    assert keys == ["t:stored", "t:before", *(f"t:new{n}" for n in range(1, size)), "t:after"]
    assert [before.created, after.created, *(p.created for p in new)] == [True] * (size + 1)


def test_a_large_call_goes_in_two_statements_and_answers_as_one(
    runtime: Runtime, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    """A call of IN_TWO_FROM entries or more goes in two statements in one
    pipeline, both in the caller's transaction: the answers in the order given,
    exactly the debits and credits asked for; replays in either half (a stored
    key; a key the first half wrote) are answered with their originals."""
    size = entry_store.IN_TWO_FROM
    half = size // 2
    fresh = [sale(f"{n}.00", key=f"h:{n}") for n in range(1, size + 1)]
    with unit_of_work(runtime.connection) as uow:
        posted = post_entries(uow.conn, book.id, fresh)
        uow.commit()
    assert [p.idempotency_key for p in posted] == [e.idempotency_key for e in fresh]
    assert all(p.created for p in posted)
    ids = [p.id for p in posted]
    assert ids == sorted(ids)  # one call's ids ascend across its halves
    xmins = owner_conn.execute(
        "select count(distinct xmin::text) from journal_entries where id = any(%s)", (ids,)
    ).fetchone()
    assert xmins == (1,)
    # Two statements: each queued its entries for the sealer in one row.
    queued = owner_conn.execute(
        "select entry_ids from seal_queue where book_id = %s and entry_ids && %s"
        " order by entry_ids[1]",
        (book.id, ids),
    ).fetchall()
    assert queued == [(ids[:half],), (ids[half:],)]
    rows = book_rows(owner_conn, book.id)
    assert len(rows["entries"]) == size
    assert [(r[0], r[2], r[3]) for r in rows["postings"]] == sorted(
        (p.id, account, amount)
        for n, p in enumerate(posted, start=1)
        for account, amount in (
            ("Assets:Bank:Operating", f"{n}.00"),
            ("Income:Services", f"-{n}.00"),
        )
    )

    # Replays in the second half: a key stored before, a key of this call's first half.
    (stored,) = commit(runtime, book.id, [sale("3.00", key="h:stored")])
    call = [sale(f"{n}.00", key=f"r:{n}") for n in range(1, size - 1)]
    call += [sale("3.00", key="h:stored"), sale("1.00", key="r:1")]
    with unit_of_work(runtime.connection) as uow:
        again = post_entries(uow.conn, book.id, call)
        uow.commit()
    assert [p.idempotency_key for p in again] == [e.idempotency_key for e in call]
    assert (again[-2].id, again[-2].created) == (stored.id, False)
    assert (again[-1].id, again[-1].created) == (again[0].id, False)
    assert all(p.created for p in again[:-2])
    assert len(book_rows(owner_conn, book.id)["entries"]) == size + 1 + size - 2


def test_a_large_call_whose_second_half_reuses_a_key_for_another_entry_writes_nothing(
    runtime: Runtime, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    """A key of the first half given again in the second with another amount: the
    call raises IdempotencyConflict and its transaction, rolled back, wrote nothing."""
    size = entry_store.IN_TWO_FROM
    call = [sale(f"{n}.00", key=f"c:{n}") for n in range(1, size)]
    call.append(sale("99.00", key="c:1"))
    before = book_rows(owner_conn, book.id)
    with pytest.raises(IdempotencyConflict), unit_of_work(runtime.connection) as uow:
        post_entries(uow.conn, book.id, call)
        uow.commit()
    assert book_rows(owner_conn, book.id) == before


def test_a_batch_ids_ascend_in_the_order_given() -> None:
    """Time-ordered ids that also ascend within a call: each row's key goes past
    the last one in the (book_id, id) and (book_id, entry_id, line_no) indexes."""
    ids = entry_store.new_entry_ids(1000)
    assert ids == sorted(ids) and len(set(ids)) == 1000
    assert {i.version for i in ids} == {7}


def test_uuid_arrays_in_binary_arrive_as_sent(owner_conn: psycopg.Connection) -> None:
    """post_entries sends its uuid columns in PostgreSQL's binary array format;
    the server reads back the same ids in the same order (and an empty array)."""
    ids = [uuid.UUID(int=0), uuid.UUID(int=(1 << 128) - 1), *entry_store.new_entry_ids(5)]
    array = entry_store.UuidArray.of([i.bytes for i in ids])
    empty = entry_store.UuidArray.of([])
    with pytest.raises(pg.CannotCoerce):  # unregistered it would go as bytea: refused
        owner_conn.execute("select %s::uuid[]", (array,))
    owner_conn.rollback()
    entry_store.binary_uuid_arrays(owner_conn)
    entry_store.binary_uuid_arrays(owner_conn)  # once is enough, twice is harmless
    row = owner_conn.execute(
        "select %s::uuid[], %s::uuid[], array_lower(%s::uuid[], 1)", (array, empty, array)
    ).fetchone()
    assert row == (ids, [], 1)
