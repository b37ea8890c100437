"""Operating the service (issue 14): request ids on every response and in problem
documents, `/metrics` scraped, the audit log of mutations, and per-key rate limits."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from adapters.keys import Role
from adapters.runtime import Runtime
from tests.conftest import BookFixture
from tests.integration.http_fixtures import PROBLEM, auth, entry_body, new_key, open_client


@pytest.fixture
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


def _audit_rows(runtime: Runtime, book: BookFixture, count: int) -> list[tuple[Any, ...]]:
    """The book's audit rows once the writer (batches every 0.2 s) has written `count`."""
    deadline = time.monotonic() + 10
    while True:
        with runtime.connection() as conn:
            rows = conn.execute(
                "select method, path, status, idempotency_key, request_id, created, role"
                " from audit_log where book_id = %s order by id",
                (book.id,),
            ).fetchall()
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_every_response_carries_a_request_id_and_problems_name_it(
    client: Any, book: BookFixture
) -> None:
    ok = client.get("/health")
    assert re.fullmatch(r"[0-9a-f]{32}", ok.headers["x-request-id"])
    mine = client.get("/v1/accounts", headers={**auth(book.admin_key), "X-Request-Id": "abc-123"})
    assert mine.headers["x-request-id"] == "abc-123"
    hostile = client.get("/health", headers={"X-Request-Id": "x" * 200})
    assert hostile.headers["x-request-id"] != "x" * 200
    refused = client.get("/v1/accounts")
    assert refused.status_code == 401 and refused.headers["content-type"].startswith(PROBLEM)
    assert refused.json()["request_id"] == refused.headers["x-request-id"]
    missing = client.get("/v1/nothing-here", headers=auth(book.admin_key))
    assert missing.json()["request_id"] == missing.headers["x-request-id"]


def test_metrics_count_requests_and_read_the_database(client: Any, book: BookFixture) -> None:
    for n in range(3):
        posted = client.post(
            "/v1/journal-entries", json=entry_body(memo=f"m{n}"), headers=auth(book.admin_key)
        )
        assert posted.status_code == 201
    scraped = client.get("/metrics")
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    text = scraped.text
    counted = re.search(
        r'activebilling_http_requests_total\{method="POST",route="/v1/journal-entries",'
        r'status="201"\} (\d+)',
        text,
    )
    assert counted is not None and float(counted.group(1)) >= 3, text[:2000]
    assert 'activebilling_http_request_seconds_bucket{le="0.5",method="POST"' in text
    for gauge in (
        "activebilling_entries_posted",
        "activebilling_unsealed_entries",
        "activebilling_oldest_unsealed_seconds",
        "activebilling_webhook_backlog",
        'activebilling_pool_connections{state="pool_size"}',
    ):
        assert re.search(rf"^{re.escape(gauge)} \d", text, re.M), gauge


def test_mutations_are_in_the_audit_log_which_is_append_only(
    client: Any, runtime: Runtime, book: BookFixture, database_url: str
) -> None:
    h = auth(book.admin_key)
    made = client.post(
        "/v1/journal-entries", json=entry_body(), headers={**h, "Idempotency-Key": "k-audit-1"}
    )
    assert made.status_code == 201
    bad = client.post("/v1/journal-entries", json={"memo": "no postings"}, headers=h)
    assert bad.status_code in (400, 422)
    client.get("/v1/accounts", headers=h)  # reads are not audited
    rows = _audit_rows(runtime, book, 2)
    assert [(r[0], r[1], r[2], r[3], r[5], r[6]) for r in rows] == [
        ("POST", "/v1/journal-entries", 201, "k-audit-1", [made.json()["id"]], "admin"),
        ("POST", "/v1/journal-entries", bad.status_code, None, [], "admin"),
    ]
    assert rows[0][4] == made.headers["x-request-id"]

    auditor = new_key(runtime, book.id, Role.AUDITOR)
    listed = client.get("/v1/audit-log?limit=1", headers=auth(auditor))
    assert listed.status_code == 200
    page = listed.json()
    assert [r["status"] for r in page["data"]] == [bad.status_code]  # newest first
    rest = client.get(f"/v1/audit-log?cursor={page['next_cursor']}", headers=auth(auditor))
    assert [r["created"] for r in rest.json()["data"]] == [[made.json()["id"]]]
    operator = new_key(runtime, book.id, Role.OPERATOR)
    assert client.get("/v1/audit-log", headers=auth(operator)).status_code == 403

    with psycopg.connect(database_url) as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("update audit_log set status = 200 where book_id = %s", (book.id,))


def test_a_key_over_its_books_rate_limit_gets_429_with_retry_after(
    client: Any, runtime: Runtime, book: BookFixture
) -> None:
    changed = client.patch(
        "/v1/book/settings",
        json={"rate_limit": {"requests_per_second": "0.5", "burst": 2}},
        headers=auth(book.admin_key),
    )
    assert changed.status_code == 200, changed.text
    key = new_key(runtime, book.id, Role.OPERATOR)  # read with the new setting
    answers = [client.get("/v1/accounts", headers=auth(key)) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    limited = answers[2]
    assert limited.headers["content-type"].startswith(PROBLEM)
    assert limited.json()["code"] == "rate_limited"
    assert int(limited.headers["retry-after"]) == 2
    other = client.get("/v1/accounts", headers=auth(book.admin_key))  # a cached key: own bucket
    assert other.status_code == 200
    wrong = client.patch(
        "/v1/book/settings",
        json={"rate_limit": {"requests_per_second": "fast"}},
        headers=auth(book.admin_key),
    )
    assert wrong.status_code == 422
