"""The set-based reads (journal feed pages, the Beancount export, the verifier) plan under
one set of settings (ledger.postgres.planner.set_based_read), held while their statement
or cursor runs and put back afterwards, so the rest of the caller's transaction plans as
it would have."""

from __future__ import annotations

import psycopg

from adapters.exports import journal_feed
from adapters.exports.beancount import begin_snapshot, export_beancount
from adapters.runtime import Runtime
from ledger.postgres.planner import SET_BASED_READ, set_based_read
from tests.conftest import BookFixture

NAMES = [*SET_BASED_READ, "DateStyle"]


def _settings(conn: psycopg.Connection) -> dict[str, str]:
    row = conn.execute("select array_agg(current_setting(n)) from unnest(%s::text[]) n", (NAMES,))
    return dict(zip(NAMES, row.fetchone()[0], strict=True))  # type: ignore[index]


def test_set_based_read_holds_its_settings_for_the_block_only(runtime: Runtime) -> None:
    with runtime.connection() as conn:
        before = _settings(conn)
        with set_based_read(conn, DateStyle="ISO, YMD"):
            inside = _settings(conn)
        after = _settings(conn)
        conn.rollback()
    assert inside == {**SET_BASED_READ, "DateStyle": "ISO, YMD"}
    assert before["enable_nestloop"] == "on" and before["work_mem"] != "64MB"
    assert after == before


def test_the_feed_and_the_beancount_export_leave_the_transactions_settings(
    runtime: Runtime, book: BookFixture
) -> None:
    """The export used to leave its settings (no nested loops, no JIT, its DateStyle…)
    on the rest of the transaction; a feed page puts them back too."""
    with runtime.connection() as conn:
        begin_snapshot(conn)
        before = _settings(conn)
        assert "".join(export_beancount(conn, book.id))
        assert _settings(conn) == before
        journal_feed.build_batch(conn, book.id, "jsonl", 0)
        assert _settings(conn) == before
        conn.rollback()
