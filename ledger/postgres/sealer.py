"""The sealer: gives committed entries their place in the book's hash chain.

Writers only queue their entries (a trigger does it). One sealer per book at
a time (an advisory lock) takes queued entries in queue order, numbers
them after the last seal and chains their hashes. An entry that commits late
is simply sealed later, so a reader that follows the sequence sees it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import psycopg

from ledger.sealing import GENESIS_HASH, canonical_amount, canonical_row_bytes, link_hash

BATCH = 2000


def _lock_key(book_id: uuid.UUID) -> str:
    return f"ab_seal:{book_id}"


# One row per entry with everything its canonical document needs, as text the
# hash takes as is: the date in ISO form, ids as text, each amount without
# trailing zeros (`trim_scale`, what `ledger.sealing._amount` writes), the
# postings as one JSON array in line order. No Python objects per posting.
ENTRY_COLUMNS = """
e.id::text, to_char(e.effective_date, 'YYYY-MM-DD'), e.memo, e.metadata::text,
e.idempotency_key, e.reverses_entry_id::text,
coalesce((select json_agg(json_build_array(p.line_no, p.account_id, trim_scale(p.amount)::text,
                                           p.currency, p.customer_id, p.document, p.dimensions)
                          order by p.line_no)::text
            from postings p where p.book_id = e.book_id and p.entry_id = e.id), '[]')
"""

_LOAD = f"""
select e.id, {ENTRY_COLUMNS}
  from journal_entries e
 where e.book_id = %s and e.id = any(%s)
"""


def entry_canonical_bytes(row: Sequence[Any]) -> bytes:
    """Canonical bytes of an entry from the `ENTRY_COLUMNS` values."""
    entry_id, effective_date, memo, metadata, key, reverses, postings_json = row
    postings = json.loads(postings_json)
    for posting in postings:
        posting[2] = canonical_amount(posting[2])
    return canonical_row_bytes(
        entry_id, effective_date, memo, json.loads(metadata), key, reverses, postings
    )


def load_canonical_entries(
    conn: psycopg.Connection, book_id: uuid.UUID, entry_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, bytes]:
    rows = conn.execute(_LOAD, (book_id, list(entry_ids))).fetchall()
    return {row[0]: entry_canonical_bytes(row[1:]) for row in rows}


def seal_batch(conn: psycopg.Connection, book_id: uuid.UUID, *, wait: bool) -> tuple[int, bool]:
    """Seal the oldest queued statements' entries (about BATCH, at least one
    statement's) in one transaction; returns how many, and whether more wait."""
    with conn.transaction():
        lock = "pg_advisory_xact_lock" if wait else "pg_try_advisory_xact_lock"
        got = conn.execute(
            f"select {lock}(hashtextextended(%s, 0))::text", (_lock_key(book_id),)
        ).fetchone()
        if not wait and got is not None and got[0] != "true":
            return 0, False
        # One row per posting statement, its entries in the order it wrote them.
        queued = conn.execute(
            "select id, entry_ids from seal_queue where book_id = %s order by id limit %s",
            (book_id, BATCH),
        ).fetchall()
        if not queued:
            return 0, False
        rows: list[int] = []
        ids: list[uuid.UUID] = []
        for row_id, entry_ids in queued:
            if ids and len(ids) + len(entry_ids) > BATCH:
                break
            rows.append(row_id)
            ids.extend(entry_ids)
        more = len(rows) < len(queued) or len(queued) == BATCH
        conn.execute("delete from seal_queue where book_id = %s and id = any(%s)", (book_id, rows))
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
            ids = [i for i in ids if i not in already]
            if not ids:
                return len(already), more
        last = conn.execute(
            "select seq, hash from seals where book_id = %s order by seq desc limit 1", (book_id,)
        ).fetchone()
        seq, previous = (last[0], last[1]) if last else (0, GENESIS_HASH)
        entries = load_canonical_entries(conn, book_id, ids)
        seqs: list[int] = []
        prevs: list[str] = []
        hashes: list[str] = []
        for entry_id in ids:
            seq += 1
            digest = link_hash(previous, entries[entry_id])
            seqs.append(seq)
            prevs.append(previous)
            hashes.append(digest)
            previous = digest
        conn.execute(
            "insert into seals (book_id, seq, entry_id, prev_hash, hash)"
            " select %s, * from unnest(%s::bigint[], %s::uuid[], %s::text[], %s::text[])",
            (book_id, seqs, ids, prevs, hashes),
        )
    return len(ids) + len(already), more


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
            n, more = seal_batch(conn, book_id, wait=wait)
            total += n
            if not more:
                return total


def books_with_pending_seals(conn: psycopg.Connection) -> list[uuid.UUID]:
    return [r[0] for r in conn.execute("select distinct book_id from seal_queue")]


def seal_head(conn: psycopg.Connection, book_id: uuid.UUID) -> tuple[int, str] | None:
    """The last seal's (sequence, hash), or None before the first."""
    row = conn.execute(
        "select seq, hash from seals where book_id = %s order by seq desc limit 1", (book_id,)
    ).fetchone()
    return None if row is None else (int(row[0]), str(row[1]))
