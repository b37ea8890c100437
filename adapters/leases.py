"""Leases on outbox rows being sent (webhook deliveries, CRM write-backs, e-mail).

A row is never row-locked while its message goes out over the network. One short
transaction locks the claimable rows it chose (`FOR UPDATE SKIP LOCKED`), marks
them `status = 'sending'` with a lease (this backend's pid and start,
`lease_until`, a token) and commits; the caller sends outside any transaction and
records the results in one more short transaction, fenced by the token (`OURS`),
so a late result of a lapsed lease changes nothing. A lease lapses when its time
runs out or its backend is gone (the sender died): the row is claimable again and
sent again (at least once; receivers de-duplicate by the id the message carries).

Each table has `book_id`, `id`, `status`, `next_attempt_at` and the four lease
columns (migrations 0043, 0047); `waiting` names its to-be-sent status. Leases
use the database's clock, shared by every server; due times the injected clock
(`%(now)s`).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, Generic, TypeVar

import psycopg
from psycopg.rows import dict_row

from adapters.polling import PollingWorker

__all__ = [
    "CLEARED",
    "OURS",
    "LeasedSender",
    "claimable",
    "lease",
    "lease_each_book",
    "lease_lapsed",
    "release",
    "release_unsent",
]

Result = TypeVar("Result")


def lease_lapsed(alias: str) -> str:
    """SQL: `alias`'s lease ran out, or its backend is gone (a backend started later
    reuses the pid; another login's backend_start is hidden from the app role: then
    the pid alone keeps the lease)."""
    return (
        f"({alias}.lease_until <= clock_timestamp()"
        f" or not exists (select 1 from pg_stat_activity a where a.pid = {alias}.lease_pid"
        f" and (a.backend_start is null or a.backend_start <= {alias}.leased_at)))"
    )


def claimable(alias: str, waiting: str = "pending") -> str:
    """SQL: the row may be claimed: waiting and due by `%(now)s`, or sending under a
    lapsed lease. `waiting` is a fixed status name, never input."""
    return (
        f"({alias}.status = '{waiting}' and {alias}.next_attempt_at <= %(now)s"
        f" or {alias}.status = 'sending' and {lease_lapsed(alias)})"
    )


CLEARED = "lease_until = null, leased_at = null, lease_pid = null, lease_token = null"
# A result counts only while the lease is ours (else another sender re-claimed it).
OURS = "{d}.status = 'sending' and {d}.lease_token = {token}"


def lease(
    conn: psycopg.Connection,
    table: str,
    book_id: uuid.UUID,
    ids: Sequence[uuid.UUID],
    seconds: float,
    *,
    now: object,
    waiting: str = "pending",
    in_order: bool = False,
    also: str = "",
) -> tuple[list[uuid.UUID], uuid.UUID]:
    """Lock (skipping rows another sender holds) and lease those of `ids` still
    claimable, in the caller's transaction, which it commits at once; the ids leased
    (with `in_order`, only the prefix of `ids` up to the first row not leased) and
    their token. `also` is one more SQL condition on `d` (a fresh snapshot: it sees
    the leases committed before this statement's locks were granted)."""
    rows = conn.execute(
        f"select id from {table} d where book_id = %(book)s and id = any (%(ids)s)"
        f" and {claimable('d', waiting)} {also} for update skip locked",
        {"book": book_id, "ids": list(ids), "now": now},
    ).fetchall()
    locked = {r[0] for r in rows}
    if in_order:
        leased = list(itertools.takewhile(locked.__contains__, ids))
    else:
        leased = [i for i in ids if i in locked]
    token = uuid.uuid4()
    if leased:
        conn.execute(
            f"update {table} set status = 'sending', lease_token = %(token)s,"
            " lease_pid = pg_backend_pid(), leased_at = clock_timestamp(),"
            " lease_until = clock_timestamp() + %(lease)s * interval '1 second'"
            " where book_id = %(book)s and id = any (%(ids)s)",
            {"book": book_id, "ids": leased, "token": token, "lease": seconds},
        )
    return leased, token


def release(
    conn: psycopg.Connection,
    table: str,
    book_id: uuid.UUID,
    ids: Sequence[uuid.UUID],
    tokens: Sequence[uuid.UUID],
    waiting: str = "pending",
) -> None:
    """Put leased rows that were not sent back to `waiting` (only while ours)."""
    if ids:
        conn.execute(
            f"update {table} d set status = '{waiting}', {CLEARED}"
            " from unnest(%s::uuid[], %s::uuid[]) as v(id, token)"
            f" where d.book_id = %s and d.id = v.id and {OURS.format(d='d', token='v.token')}",
            (list(ids), list(tokens), book_id),
        )


def lease_each_book(
    conn: psycopg.Connection,
    table: str,
    due: Iterable[tuple[uuid.UUID, uuid.UUID]],
    seconds: float,
    details: str,
    *,
    now: object,
    waiting: str = "pending",
    also: str = "",
) -> list[dict[str, Any]]:
    """`lease` the (book, id) pairs of `due`, a book at a time; the rows leased as the
    query `details` (given a book and a list of ids) reads them."""
    by_book: dict[uuid.UUID, list[uuid.UUID]] = {}
    for book_id, row_id in due:
        by_book.setdefault(book_id, []).append(row_id)
    rows: list[dict[str, Any]] = []
    with conn.cursor(row_factory=dict_row) as cur:
        for book_id, ids in by_book.items():
            got, _ = lease(conn, table, book_id, ids, seconds, now=now, waiting=waiting, also=also)
            if got:
                rows += cur.execute(details, (book_id, got)).fetchall()
    return rows


def release_unsent(
    conn: psycopg.Connection, table: str, rows: Sequence[dict[str, Any]], waiting: str = "pending"
) -> None:
    """`release` leased rows (with `book_id`, `id`, `lease_token`) of any books."""
    for book_id in {r["book_id"] for r in rows}:
        mine = [r for r in rows if r["book_id"] == book_id]
        ids, tokens = [r["id"] for r in mine], [r["lease_token"] for r in mine]
        release(conn, table, book_id, ids, tokens, waiting)


class LeasedSender(PollingWorker, Generic[Result]):
    """A sender of leased batches, one row at a time: `claim` leases a batch and commits,
    `send_row` sends one outside any transaction, `record` writes the batch's results in
    one transaction and releases the rows not sent (stopping, or a bug)."""

    batch = 20

    def claim(self, size: int) -> list[dict[str, Any]]:
        raise NotImplementedError

    def send_row(self, row: dict[str, Any]) -> Result:
        raise NotImplementedError

    def record(self, batch: list[dict[str, Any]], results: list[Result]) -> None:
        raise NotImplementedError

    def drain(self, limit: int) -> int:
        """Send due rows until none is due, `limit` were tried or the sender stops; how
        many were tried."""
        done = 0
        while done < limit and not self.stopping():
            batch = self.claim(min(self.batch, limit - done))
            if not batch:
                break
            results: list[Result] = []
            try:
                for row in batch:
                    results.append(self.send_row(row))
                    if self.stopping():
                        break
            finally:
                self.record(batch, results)
            done += len(results)
        return done
