"""The service behind a real PgBouncer in transaction pooling mode.

With one server connection shared by every client session, anything a session
leaves behind (a prepared statement, SET ROLE, SET TIME ZONE) is seen by the
next transaction of another client. The whole ledger suite also runs through a
bouncer: ACTIVEBILLING_PGBOUNCER=1 (see .ci/run and docs/SCALING.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import psycopg
import pytest

from adapters.database import DatabaseSettings
from adapters.runtime import Runtime
from tests.conftest import APP_ROLE, THROUGH_PGBOUNCER, make_book, migrated_database
from tests.integration.http_fixtures import auth, entry_body, open_client
from tests.integration.pgbouncer import pgbouncer_in_front

pytestmark = pytest.mark.slow

QUERY = "select current_user, current_setting('TimeZone'), %s::int"


@pytest.fixture(scope="module")
def bounced_url(server_url: str) -> Iterator[str]:
    if THROUGH_PGBOUNCER or urlsplit(server_url).hostname in (None, ""):
        pytest.skip("needs DATABASE_URL on a TCP host, without ACTIVEBILLING_PGBOUNCER")
    with (
        migrated_database(server_url, "ab_bouncer") as url,
        pgbouncer_in_front(url, pool_size=1) as bounced,
    ):
        yield bounced


def test_pooled_sessions_keep_no_state_across_transactions(bounced_url: str) -> None:
    runtime = Runtime(
        DatabaseSettings(bounced_url, APP_ROLE, transaction_pooling=True), min_size=2, max_size=3
    )
    try:
        book = make_book(runtime)
        with open_client(runtime) as client:
            h = auth(book.admin_key)
            # More than psycopg's prepare threshold (5) of the same statements, from
            # several client sessions over one server connection.
            for n in range(12):
                r = client.post(
                    "/v1/journal-entries", json=entry_body(amount=f"{n + 1}.00"), headers=h
                )
                assert r.status_code == 201, r.text
            report = client.get(
                "/v1/reports/trial-balance", params={"as_of": "2026-01-31"}, headers=h
            )
            assert report.status_code == 200, report.text
            cash = [x for x in report.json()["lines"] if x["account"] == "Assets:Bank:Operating"]
            assert cash[0]["debit"] == "78.00"  # 1 + 2 + ... + 12
        for n in range(12):
            with runtime.connection() as conn:
                assert conn.execute(QUERY, (n,)).fetchone() == (APP_ROLE, "UTC", n)
    finally:
        runtime.close()


def test_prepared_statements_break_transaction_pooling_without_the_setting(
    bounced_url: str,
) -> None:
    """The control: psycopg's default prepare_threshold fails behind the bouncer."""
    a = psycopg.connect(bounced_url, autocommit=True)
    b = psycopg.connect(bounced_url, autocommit=True)
    try:
        with pytest.raises(psycopg.errors.DuplicatePreparedStatement):
            for n in range(12):
                for conn in (a, b):
                    conn.execute(QUERY, (n,))
    finally:
        a.close()
        b.close()
