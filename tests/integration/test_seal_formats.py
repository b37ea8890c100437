"""Seal formats: each seal is checked by the format it records, forever.

A book sealed before format 2 keeps its format-1 seals and goes on in format 2
(the chain crosses between them); verify must accept that book and catch, on
either side of the crossing, what it catches in one format: changed content, a
changed prev_hash, seals removed, reordered or inserted, and a seal's recorded
format flipped to the other one (a downgrade: the hash must fail under it) or
to one verify does not know. Entries with a float in their metadata are
re-hashed in Python (SQL does not vouch for them), the others in SQL.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest

from adapters.runtime import Runtime
from ledger.entries import Posting, build_entry
from ledger.money import Money
from ledger.postgres import sealer
from ledger.postgres.posting import PostedEntry, post_entries
from ledger.postgres.sealer import load_canonical_entries, seal_pending
from ledger.postgres.unit_of_work import unit_of_work
from ledger.postgres.verify import Discrepancy
from ledger.sealing import CURRENT_FORMAT, link_hash
from tests.conftest import BookFixture
from tests.integration.test_verify import DAY, tamper, verify

V1_FLOAT, V1_PLAIN, V1_LAST, V2_FLOAT, V2_PLAIN, V2_LAST = range(6)  # seqs 1..6


def post(runtime: Runtime, book_id: uuid.UUID, tag: str) -> list[PostedEntry]:
    entries = [
        build_entry(
            DAY,
            f"{tag} {n}",
            [
                Posting("Assets:Bank:Operating", Money.exact(f"{n}0.00", "USD")),
                Posting("Income:Services", Money.exact(f"-{n}0.00", "USD")),
            ],
            metadata=metadata,
            idempotency_key=f"{tag}:{n}",
        )
        for n, metadata in ((1, {"rate": 0.1}), (2, {"k": "v"}), (3, {}))
    ]
    with unit_of_work(runtime.connection) as uow:
        posted = post_entries(uow.conn, book_id, entries)
        uow.commit()
    return posted


@pytest.fixture
def crossing(
    runtime: Runtime, book: BookFixture, monkeypatch: pytest.MonkeyPatch
) -> list[PostedEntry]:
    """Three entries sealed as the sealer before format 2 did, then three by
    today's sealer: seqs 1-3 in format 1, 4-6 in format 2."""
    with monkeypatch.context() as patched:
        patched.setattr(sealer, "CURRENT_FORMAT", 1)
        first = post(runtime, book.id, "old")
        assert seal_pending(runtime.connection, book.id) == 3
    second = post(runtime, book.id, "new")
    assert seal_pending(runtime.connection, book.id) == 3
    return first + second


def formats(runtime: Runtime, book_id: uuid.UUID) -> list[tuple[int, int]]:
    with runtime.connection() as conn:
        rows = conn.execute(
            "select seq, format from seals where book_id = %s order by seq", (book_id,)
        ).fetchall()
    return [(int(seq), int(fmt)) for seq, fmt in rows]


def seal_chain(found: list[Discrepancy]) -> list[tuple[str, str]]:
    return [(d.subject, d.detail) for d in found if d.check == "seal_chain"]


def test_the_sealer_writes_format_2_and_a_chain_crossing_formats_verifies(
    runtime: Runtime, book: BookFixture, crossing: list[PostedEntry]
) -> None:
    assert CURRENT_FORMAT == 2
    assert formats(runtime, book.id) == [(1, 1), (2, 1), (3, 1), (4, 2), (5, 2), (6, 2)]
    assert verify(runtime, book.id) == []


def test_seals_written_without_a_format_are_format_1(
    runtime: Runtime, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    """What the migration gives the seals written before it (the column's default)."""
    (entry, *_) = post(runtime, book.id, "x")
    owner_conn.execute(
        "insert into seals (book_id, seq, entry_id, prev_hash, hash) values (%s, 1, %s, %s, %s)",
        (book.id, entry.id, "0" * 64, "f" * 64),
    )
    assert formats(runtime, book.id) == [(1, 1)]


CONTENT_CHANGES = {
    "amount": "update postings set amount = amount + sign(amount) * 5"
    " where book_id = %s and entry_id = %s",
    "added posting": "insert into postings (book_id, entry_id, line_no, account_id, amount,"
    " currency, effective_date) select book_id, entry_id, 3, account_id, 0, currency,"
    " effective_date from postings where book_id = %s and entry_id = %s and line_no = 1",
    "dropped posting": "delete from postings where book_id = %s and entry_id = %s and line_no = 2",
    "memo": "update journal_entries set memo = memo || '.' where book_id = %s and id = %s",
    "metadata": "update journal_entries set metadata = metadata || '{\"z\": 1}'"
    " where book_id = %s and id = %s",
    "format flipped": "update seals set format = 3 - format where book_id = %s and entry_id = %s",
}


@pytest.mark.parametrize("victim", [V1_FLOAT, V1_PLAIN, V2_FLOAT, V2_PLAIN])
@pytest.mark.parametrize("change", sorted(CONTENT_CHANGES))
def test_a_changed_entry_or_format_breaks_its_seal_in_either_format(
    runtime: Runtime,
    book: BookFixture,
    crossing: list[PostedEntry],
    owner_conn: psycopg.Connection,
    change: str,
    victim: int,
) -> None:
    entry_id = crossing[victim].id
    assert tamper(owner_conn, CONTENT_CHANGES[change], book.id, entry_id) >= 1
    found = verify(runtime, book.id)
    seq = victim + 1
    assert seal_chain(found) == [
        (str(entry_id), f"entry {entry_id} (seq {seq}) differs from what was sealed")
    ]


@pytest.mark.parametrize("victim", [V1_FLOAT, V2_PLAIN])
def test_an_unknown_format_is_a_discrepancy(
    runtime: Runtime,
    book: BookFixture,
    crossing: list[PostedEntry],
    owner_conn: psycopg.Connection,
    victim: int,
) -> None:
    entry_id = crossing[victim].id
    tamper(
        owner_conn,
        "update seals set format = 7 where book_id = %s and entry_id = %s",
        book.id,
        entry_id,
    )
    assert seal_chain(verify(runtime, book.id)) == [
        (str(entry_id), f"seq {victim + 1} has seal format 7, which verify does not know")
    ]


def test_a_downgraded_seal_rehashed_in_format_1_breaks_the_link_after_it(
    runtime: Runtime, book: BookFixture, crossing: list[PostedEntry], owner_conn: psycopg.Connection
) -> None:
    """A format-2 seal rewritten as a valid format-1 seal of the same entry has a
    new hash, which the next seal does not name."""
    entry_id = crossing[V2_PLAIN].id
    with owner_conn.transaction():
        canonical = load_canonical_entries(owner_conn, book.id, [entry_id])[entry_id]
    row = owner_conn.execute(
        "select prev_hash from seals where book_id = %s and entry_id = %s", (book.id, entry_id)
    ).fetchone()
    assert row is not None
    tamper(
        owner_conn,
        "update seals set format = 1, hash = %s where book_id = %s and entry_id = %s",
        link_hash(row[0], canonical, 1),
        book.id,
        entry_id,
    )
    assert seal_chain(verify(runtime, book.id)) == [
        (str(crossing[V2_LAST].id), "seq 6 does not name its predecessor")
    ]


@pytest.mark.parametrize("seq", [2, 4, 5])
def test_a_changed_prev_hash_is_caught_in_either_format(
    runtime: Runtime,
    book: BookFixture,
    crossing: list[PostedEntry],
    owner_conn: psycopg.Connection,
    seq: int,
) -> None:
    tamper(
        owner_conn,
        "update seals set prev_hash = repeat('a', 64) where book_id = %s and seq = %s",
        book.id,
        seq,
    )
    entry_id = crossing[seq - 1].id
    assert seal_chain(verify(runtime, book.id)) == [
        (str(entry_id), f"seq {seq} does not name its predecessor"),
        (str(entry_id), f"entry {entry_id} (seq {seq}) differs from what was sealed"),
    ]


def test_seals_removed_at_the_crossing_leave_a_gap(
    runtime: Runtime, book: BookFixture, crossing: list[PostedEntry], owner_conn: psycopg.Connection
) -> None:
    tamper(owner_conn, "delete from seals where book_id = %s and seq = 4", book.id)
    found = verify(runtime, book.id)
    assert Discrepancy("seal_chain", "seq 4", "gap: next is 5") in found
    assert ("sealed", str(crossing[V2_FLOAT].id)) in [(d.check, d.subject) for d in found]


def test_seals_reordered_across_the_crossing_are_caught(
    runtime: Runtime, book: BookFixture, crossing: list[PostedEntry], owner_conn: psycopg.Connection
) -> None:
    """Seqs 3 (format 1) and 5 (format 2) swap places with their hashes."""
    with owner_conn.transaction():
        owner_conn.execute("set local session_replication_role = replica")
        for old, new in ((3, 13), (5, 3), (13, 5)):  # the primary key is checked per row
            owner_conn.execute(
                "update seals set seq = %s where book_id = %s and seq = %s", (new, book.id, old)
            )
    found = seal_chain(verify(runtime, book.id))
    named = {subject for subject, _ in found}
    assert {str(crossing[V1_LAST].id), str(crossing[V2_PLAIN].id)} <= named
    assert any("does not name its predecessor" in detail for _, detail in found)


def test_a_seal_inserted_at_the_crossing_is_caught(
    runtime: Runtime, book: BookFixture, crossing: list[PostedEntry], owner_conn: psycopg.Connection
) -> None:
    """A correctly hashed format-2 seal of a new entry put in at seq 4 (the rest
    moved up) does not make seq 5, the old seq 4, name it."""
    (late, *_) = post(runtime, book.id, "late")
    with owner_conn.transaction():
        canonical = load_canonical_entries(owner_conn, book.id, [late.id])[late.id]
        owner_conn.execute("delete from seal_queue where book_id = %s", (book.id,))
    row = owner_conn.execute(
        "select hash from seals where book_id = %s and seq = 3", (book.id,)
    ).fetchone()
    assert row is not None
    with owner_conn.transaction():
        owner_conn.execute("set local session_replication_role = replica")
        owner_conn.execute(
            "update seals set seq = seq + 10 where book_id = %s and seq >= 4", (book.id,)
        )
        owner_conn.execute(
            "update seals set seq = seq - 9 where book_id = %s and seq >= 14", (book.id,)
        )
        owner_conn.execute(
            "insert into seals (book_id, seq, entry_id, prev_hash, hash, format)"
            " values (%s, 4, %s, %s, %s, 2)",
            (book.id, late.id, row[0], link_hash(row[0], canonical, 2)),
        )
    found = verify(runtime, book.id)
    chain = seal_chain(found)
    assert chain == [(str(crossing[V2_FLOAT].id), "seq 5 does not name its predecessor")]
    # The other two late entries are neither sealed nor queued any more.
    assert {d.check for d in found} == {"seal_chain", "sealed"}
