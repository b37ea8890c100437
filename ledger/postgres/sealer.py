"""The sealer: gives committed entries their place in the book's hash chain.

Writers only queue their entries (a trigger does it). One sealer per book at
a time (an advisory lock) takes queued entries in queue order, numbers
them after the last seal and chains their hashes. An entry that commits late
is simply sealed later, so a reader that follows the sequence sees it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from decimal import Decimal
from typing import Any

import psycopg

from ledger.sealing import GENESIS_HASH, SealedEntry, SealedPosting, chain_hash

BATCH = 2000


def _lock_key(book_id: uuid.UUID) -> str:
    return f"ab_seal:{book_id}"


_LOAD = """
select e.id, e.effective_date, e.memo, e.metadata, e.idempotency_key, e.reverses_entry_id,
       coalesce((select json_agg(json_build_array(p.line_no, p.account_id, p.amount::text,
                                                  p.currency, p.customer_id, p.document,
                                                  p.dimensions) order by p.line_no)
                   from postings p where p.book_id = e.book_id and p.entry_id = e.id), '[]')
  from journal_entries e
 where e.book_id = %s and e.id = any(%s)
"""


def load_sealed_entries(
    conn: psycopg.Connection, book_id: uuid.UUID, entry_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, SealedEntry]:
    rows = conn.execute(_LOAD, (book_id, list(entry_ids))).fetchall()
    return {row[0]: _sealed(row) for row in rows}


def _sealed(row: tuple[Any, ...]) -> SealedEntry:
    entry_id, effective_date, memo, metadata, key, reverses, postings = row
    return SealedEntry(
        entry_id=str(entry_id),
        effective_date=effective_date,
        memo=memo,
        metadata=metadata,
        idempotency_key=key,
        reverses=str(reverses) if reverses else None,
        postings=[
            SealedPosting(line, str(account), Decimal(amount), currency, customer, document, dims)
            for line, account, amount, currency, customer, document, dims in postings
        ],
    )


def seal_batch(conn: psycopg.Connection, book_id: uuid.UUID, *, wait: bool) -> int:
    """Seal up to BATCH queued entries in one transaction; returns how many."""
    with conn.transaction():
        lock = "pg_advisory_xact_lock" if wait else "pg_try_advisory_xact_lock"
        got = conn.execute(
            f"select {lock}(hashtextextended(%s, 0))::text", (_lock_key(book_id),)
        ).fetchone()
        if not wait and got is not None and got[0] != "true":
            return 0
        queued = conn.execute(
            "select entry_id from unsealed_entries where book_id = %s"
            " order by queued_at, entry_id limit %s",
            (book_id, BATCH),
        ).fetchall()
        if not queued:
            return 0
        ids = [row[0] for row in queued]
        # An entry sealed behind the sealer's back (a forged seal) leaves the
        # queue without a second seal; `verify` reports the forged one.
        already = {
            row[0]
            for row in conn.execute(
                "select entry_id from seals where book_id = %s and entry_id = any(%s)",
                (book_id, ids),
            )
        }
        if already:
            conn.execute(
                "delete from unsealed_entries where book_id = %s and entry_id = any(%s)",
                (book_id, list(already)),
            )
            ids = [i for i in ids if i not in already]
            if not ids:
                return len(already)
        last = conn.execute(
            "select seq, hash from seals where book_id = %s order by seq desc limit 1", (book_id,)
        ).fetchone()
        seq, previous = (last[0], last[1]) if last else (0, GENESIS_HASH)
        entries = load_sealed_entries(conn, book_id, ids)
        seqs: list[int] = []
        prevs: list[str] = []
        hashes: list[str] = []
        for entry_id in ids:
            seq += 1
            digest = chain_hash(previous, entries[entry_id])
            seqs.append(seq)
            prevs.append(previous)
            hashes.append(digest)
            previous = digest
        conn.execute(
            "insert into seals (book_id, seq, entry_id, prev_hash, hash)"
            " select %s, * from unnest(%s::bigint[], %s::uuid[], %s::text[], %s::text[])",
            (book_id, seqs, ids, prevs, hashes),
        )
        conn.execute(
            "delete from unsealed_entries where book_id = %s and entry_id = any(%s)",
            (book_id, ids),
        )
    return len(ids) + len(already)


def seal_pending(
    connect: Callable[[], AbstractContextManager[psycopg.Connection]],
    book_id: uuid.UUID,
    *,
    wait: bool = True,
) -> int:
    """Seal everything queued for the book. With wait=False, give way to a
    sealer already at work (it, or the next run, will take our entries)."""
    total = 0
    with connect() as conn:
        while True:
            n = seal_batch(conn, book_id, wait=wait)
            total += n
            if n < BATCH:
                return total


def books_with_pending_seals(conn: psycopg.Connection) -> list[uuid.UUID]:
    return [r[0] for r in conn.execute("select distinct book_id from unsealed_entries")]
