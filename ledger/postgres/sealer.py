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

from ledger.sealing import (
    CURRENT_FORMAT,
    GENESIS_HASH,
    canonical_amount,
    canonical_row_bytes,
    link_hash,
)

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


# The queue's head with what sealing it needs, in one round trip. The oldest
# queued statements, whole, up to BATCH entries (at least one statement, however
# large); each of their entries in the order written, with its canonical columns
# and whether a seal names it already; on every row the chain's last (seq, hash)
# and whether statements are left behind (InitPlans: read once).
_QUEUE = f"""
with queued as (
    select id, entry_ids, sum(cardinality(entry_ids)) over (order by id) as running
      from seal_queue where book_id = %(book)s order by id limit %(limit)s
), picked as (
    select id, entry_ids from queued
     where running <= %(limit)s or id = (select min(id) from queued)
), queued_entries as (
    select p.id as queue_id, u.entry_id, u.ord
      from picked p, unnest(p.entry_ids) with ordinality as u(entry_id, ord)
), last as (
    select seq, hash from seals where book_id = %(book)s order by seq desc limit 1
)
select q.queue_id, s.entry_id is not null, (select seq from last), (select hash from last),
       (select count(*) from queued) > (select count(*) from picked)
           or (select count(*) from queued) = %(limit)s,
       {ENTRY_COLUMNS}
  from queued_entries q
  join journal_entries e on e.book_id = %(book)s and e.id = q.entry_id
  left join seals s on s.book_id = %(book)s and s.entry_id = q.entry_id
 order by q.queue_id, q.ord
"""
_LEAD = 5  # columns before ENTRY_COLUMNS in _QUEUE's rows

# The seals and the queue's release in one statement; the arrays come as literals
# (str.join) rather than lists psycopg adapts element by element.
_SEAL = """
with sealed as (
    insert into seals (book_id, seq, entry_id, prev_hash, hash, format)
    select %(book)s, *, %(format)s::smallint from unnest(%(seqs)s::bigint[], %(ids)s::uuid[],
                                  %(prevs)s::text[], %(hashes)s::text[])
)
delete from seal_queue where book_id = %(book)s and id = any(%(done)s::bigint[])
"""


def _array(items: Sequence[str]) -> str:
    """An array literal of items that need no quoting (uuids, numbers, hex digests)."""
    return "{" + ",".join(items) + "}"


def seal_batch(conn: psycopg.Connection, book_id: uuid.UUID, *, wait: bool) -> tuple[int, bool]:
    """Seal the oldest queued statements' entries (about BATCH, at least one
    statement's) in one transaction; returns how many, and whether more wait.

    Four round trips (BEGIN, the lock, the queue with its entries, the seals with
    the queue's release) and COMMIT. The lock has a statement of its own: a
    statement's snapshot is taken before it waits, so reading the queue in the
    lock's statement could miss what the sealer before us committed."""
    with conn.transaction():
        lock = "pg_advisory_xact_lock" if wait else "pg_try_advisory_xact_lock"
        got = conn.execute(
            f"select {lock}(hashtextextended(%s, 0))::text", (_lock_key(book_id),)
        ).fetchone()
        if not wait and got is not None and got[0] != "true":
            return 0, False
        rows = conn.execute(_QUEUE, {"book": book_id, "limit": BATCH}).fetchall()
        if not rows:
            return 0, False
        seq, previous = (rows[0][2], rows[0][3]) if rows[0][2] is not None else (0, GENESIS_HASH)
        more = bool(rows[0][4])
        done = sorted({str(row[0]) for row in rows})
        ids: list[str] = []
        seqs: list[str] = []
        prevs: list[str] = []
        hashes: list[str] = []
        for row in rows:
            # An entry sealed behind the sealer's back (a forged seal) leaves the
            # queue without a second seal; `verify` reports the forged one.
            if row[1]:
                continue
            seq += 1
            digest = link_hash(previous, entry_canonical_bytes(row[_LEAD:]), CURRENT_FORMAT)
            ids.append(row[_LEAD])  # e.id::text, ENTRY_COLUMNS' first
            seqs.append(str(seq))
            prevs.append(previous)
            hashes.append(digest)
            previous = digest
        conn.execute(
            _SEAL,
            {
                "book": book_id,
                "seqs": _array(seqs),
                "ids": _array(ids),
                "prevs": _array(prevs),
                "hashes": _array(hashes),
                "done": _array(done),
                "format": CURRENT_FORMAT,
            },
        )
    return len(rows), more


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
