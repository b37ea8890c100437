"""What one posting statement leaves for the sealer, and the checks that moved
in revision 0046: a statement's entries are queued as one `seal_queue` row (in
the order written), an entry without postings is still refused on every path,
and a seal's entry and chain are still checked once per sealing statement."""

from __future__ import annotations

import uuid
from datetime import date

import psycopg
import pytest
from psycopg import errors as pg

from adapters.runtime import Runtime
from ledger.entries import JournalEntry, Posting, build_entry
from ledger.money import Money
from ledger.postgres.posting import (
    _INSERT,
    DIRECTORY,
    STRICT_INSERT_CTES,
    PreparedEntries,
    post_entries,
)
from ledger.postgres.sealer import seal_pending
from ledger.postgres.unit_of_work import unit_of_work
from tests.conftest import BookFixture

DAY = date(2026, 3, 10)


def sale(n: int, key: str) -> JournalEntry:
    return build_entry(
        DAY,
        f"sale {n}",
        [
            Posting("Assets:Bank:Operating", Money.exact(f"{n}.00", "USD")),
            Posting("Income:Services", Money.exact(f"-{n}.00", "USD")),
        ],
        idempotency_key=key,
    )


def queue(conn: psycopg.Connection, book_id: uuid.UUID) -> list[list[uuid.UUID]]:
    rows = conn.execute(
        "select entry_ids from seal_queue where book_id = %s order by id", (book_id,)
    ).fetchall()
    return [row[0] for row in rows]


def counts(conn: psycopg.Connection, book_id: uuid.UUID) -> tuple[int, int, int]:
    row = conn.execute(
        "select (select count(*) from journal_entries where book_id = %(b)s),"
        " (select count(*) from postings where book_id = %(b)s),"
        " (select count(*) from seal_queue where book_id = %(b)s)",
        {"b": book_id},
    ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def test_a_statement_queues_its_entries_as_one_row_in_the_order_written(
    runtime: Runtime, book: BookFixture, app_conn: psycopg.Connection
) -> None:
    entries = [sale(n, f"q{n}") for n in (3, 1, 2)]
    with unit_of_work(runtime.connection) as uow:
        posted = post_entries(uow.conn, book.id, entries)
        uow.commit()
    with unit_of_work(runtime.connection) as uow:
        (single,) = post_entries(uow.conn, book.id, [sale(4, "q4")])
        uow.commit()
    written = [p.id for p in posted]
    assert queue(app_conn, book.id) == [written, [single.id]]
    listed = app_conn.execute(
        "select entry_id from unsealed_entries where book_id = %s", (book.id,)
    ).fetchall()
    assert sorted(row[0] for row in listed) == sorted([*written, single.id])
    # A replay writes no entry, so queues nothing.
    with unit_of_work(runtime.connection) as uow:
        again = post_entries(uow.conn, book.id, entries)
        uow.commit()
    assert [p.id for p in again] == written and not any(p.created for p in again)
    assert len(queue(app_conn, book.id)) == 2
    assert seal_pending(runtime.connection, book.id) == 4
    sealed = app_conn.execute(
        "select entry_id from seals where book_id = %s order by seq", (book.id,)
    ).fetchall()
    assert [row[0] for row in sealed] == [*written, single.id]
    assert queue(app_conn, book.id) == []


def test_a_batch_queue_row_is_stored_out_of_line_uncompressed(
    runtime: Runtime, book: BookFixture, app_conn: psycopg.Connection
) -> None:
    """Revision 0050: the queue row's uuid[] (16 bytes an entry) goes out of line
    without a try at pglz, which cannot shrink random ids (it would be stored
    uncompressed either way, so the column's storage is what tells), and reads
    back whole."""
    storage = app_conn.execute(
        "select attstorage from pg_attribute"
        " where attrelid = 'seal_queue'::regclass and attname = 'entry_ids'"
    ).fetchone()
    assert storage == ("e",)
    entries = [sale(n, f"big{n}") for n in range(1, 601)]
    with unit_of_work(runtime.connection) as uow:
        posted = post_entries(uow.conn, book.id, entries)
        uow.commit()
    rows = app_conn.execute(
        "select pg_column_compression(entry_ids), pg_column_size(entry_ids), entry_ids"
        " from seal_queue where book_id = %s order by entry_ids[1]",
        (book.id,),
    ).fetchall()
    assert len(rows) == 2  # a call this large goes in two statements (IN_TWO_FROM)
    for compression, size, _ in rows:
        assert compression is None and size > 16 * 300
    assert [i for *_, ids in rows for i in ids] == [p.id for p in posted]


def test_the_sealer_takes_whole_statements_about_a_batch_at_a_time(
    runtime: Runtime,
    book: BookFixture,
    app_conn: psycopg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ledger.postgres import sealer

    for first in (0, 3, 6):
        with unit_of_work(runtime.connection) as uow:
            post_entries(uow.conn, book.id, [sale(n + 1, f"b{n}") for n in range(first, first + 3)])
            uow.commit()
    monkeypatch.setattr(sealer, "BATCH", 4)  # one statement (3) per transaction, then the next
    assert seal_pending(runtime.connection, book.id) == 9
    seqs = app_conn.execute(
        "select count(*), min(seq), max(seq) from seals where book_id = %s", (book.id,)
    ).fetchone()
    assert seqs == (9, 1, 9)


def strict_statement_without_postings(
    conn: psycopg.Connection, book_id: uuid.UUID, keys: list[str]
) -> None:
    """The hot path's (and post_entries') insert with the postings of the last
    entry left out of the arrays: that entry is written with none."""
    entries = [sale(n + 1, key) for n, key in enumerate(keys)]
    account_ids = DIRECTORY.resolve(conn, book_id, ["Assets:Bank:Operating", "Income:Services"])
    prepared = PreparedEntries(book_id, entries, account_ids)
    params = dict(prepared.params)
    kept = 2 * (len(entries) - 1)  # two postings per entry
    for column in ("entry_ids", "line_nos", "accounts", "amounts"):
        params[column] = "{" + ",".join(params[column][1:-1].split(",")[:kept]) + "}"
    for column in ("currencies", "customers", "documents", "dimensions"):
        params[column] = "{" + ",".join(["USD" if column == "currencies" else "NULL"] * kept) + "}"
    conn.execute("with" + STRICT_INSERT_CTES + " select count(*) from inserted", params)


@pytest.mark.parametrize("size", [1, 3], ids=["hot-path-single", "batch"])
def test_an_entry_without_postings_is_refused_on_the_insert_paths(
    book: BookFixture, app_conn: psycopg.Connection, size: int
) -> None:
    before = counts(app_conn, book.id)
    with pytest.raises(pg.CheckViolation) as exc_info:
        strict_statement_without_postings(app_conn, book.id, [f"np{n}" for n in range(size)])
    diag = exc_info.value.diag
    assert diag.constraint_name == "journal_entries_balanced"
    assert "has 0 posting(s)" in (diag.message_primary or "")
    app_conn.rollback()
    assert counts(app_conn, book.id) == before
    assert "on conflict" in _INSERT  # post_entries: the same CTEs, replaying used keys


def test_a_seal_must_name_an_entry_of_its_book(
    book: BookFixture, app_conn: psycopg.Connection
) -> None:
    with pytest.raises(pg.ForeignKeyViolation) as exc_info:
        app_conn.execute(
            "insert into seals (book_id, seq, entry_id, prev_hash, hash)"
            " values (%s, 1, %s, %s, %s)",
            (book.id, uuid.uuid4(), "0" * 64, "b" * 64),
        )
    assert exc_info.value.diag.constraint_name == "fk_seals_book_id_entry_id_journal_entries"


def test_a_broken_link_within_one_sealing_statement_is_refused(
    runtime: Runtime, book: BookFixture, app_conn: psycopg.Connection
) -> None:
    with unit_of_work(runtime.connection) as uow:
        posted = post_entries(uow.conn, book.id, [sale(n, f"l{n}") for n in (1, 2, 3)])
        uow.commit()
    app_conn.execute("delete from seal_queue where book_id = %s", (book.id,))
    insert = (
        "insert into seals (book_id, seq, entry_id, prev_hash, hash)"
        " select %s, * from unnest(%s::bigint[], %s::uuid[], %s::text[], %s::text[])"
    )
    ids = [p.id for p in posted]
    # The second seal names a hash that is not the first's.
    with pytest.raises(pg.CheckViolation) as exc_info:
        app_conn.execute(
            insert,
            (
                book.id,
                [1, 2, 3],
                ids,
                ["0" * 64, "e" * 64, "b" * 64],
                ["a" * 64, "b" * 64, "c" * 64],
            ),
        )
    assert exc_info.value.diag.constraint_name == "seals_chain"
    app_conn.rollback()
    # A gap inside the statement is refused too; a sound chain is written.
    with pytest.raises(pg.CheckViolation):
        app_conn.execute(
            insert, (book.id, [1, 3], ids[:2], ["0" * 64, "a" * 64], ["a" * 64, "b" * 64])
        )
    app_conn.rollback()
    app_conn.execute(insert, (book.id, [1, 2], ids[:2], ["0" * 64, "a" * 64], ["a" * 64, "b" * 64]))
    app_conn.execute(insert, (book.id, [3], ids[2:], ["b" * 64], ["c" * 64]))
    app_conn.commit()
    assert app_conn.execute(
        "select count(*) from seals where book_id = %s", (book.id,)
    ).fetchone() == (3,)
