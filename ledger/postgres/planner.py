"""Planner settings for a statement (or a cursor's life), within the caller's transaction.

Set-based reads (the journal feed's pages, the Beancount export, the verifier's passes)
read a large part of a book in one statement, often while the book grows faster than
autovacuum analyzes it. Planned on those estimates, PostgreSQL took a set for a few rows
and joined it by nested loops (rescanning the other side per row: a feed page probed
postings once per entry; a 5,000-entry Beancount export took 7.5 s), compiled JIT code
for costs that never came, planned a cursor for its first rows, or sorted on disk.
`set_based_read` turns those off in one place; callers add their own settings.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

import psycopg

__all__ = ["SET_BASED_READ", "planner_settings", "set_based_read"]

SET_BASED_READ = {
    # hash or merge joins, whatever the row estimates of a never-analyzed book say
    "enable_nestloop": "off",
    # past jit_above_cost (~400k postings for the verifier) compiling cost more than it saved
    "jit": "off",
    # a page's or an export's sorts and hash tables in memory, not on disk
    "work_mem": "64MB",
    # a cursor is read to its end: plan for all its rows
    "cursor_tuple_fraction": "1",
}


@contextmanager
def planner_settings(conn: psycopg.Connection, values: dict[str, str]) -> Iterator[None]:
    """These settings until the block ends, then the previous values."""
    names = list(values)
    row = conn.execute(
        "select array_agg(current_setting(n) order by i),"
        "       array_agg(set_config(n, v, true) order by i)"
        "  from unnest(%s::text[], %s::text[]) with ordinality as s(n, v, i)",
        (names, [values[n] for n in names]),
    ).fetchone()
    yield
    # Not on an error: the transaction is then aborted, and its rollback
    # undoes the local settings anyway.
    if row is not None:
        conn.execute(
            "select set_config(n, v, true) from unnest(%s::text[], %s::text[]) as s(n, v)",
            (names, row[0]),
        )


def set_based_read(conn: psycopg.Connection, **extra: str) -> AbstractContextManager[None]:
    """SET_BASED_READ and the caller's own settings (`extra`), for the block."""
    return planner_settings(conn, {**SET_BASED_READ, **extra})
