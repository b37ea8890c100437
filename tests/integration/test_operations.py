"""Operating the service (issue 14): request ids on every response and in problem
documents, `/metrics` scraped, the audit log of mutations (HTTP and command line,
with filters), and per-key rate limits."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from datetime import date
from typing import Any

import psycopg
import pytest

from adapters.keys import Role
from adapters.runtime import Runtime
from tests.conftest import BookFixture, make_book
from tests.integration.http_fixtures import PROBLEM, auth, entry_body, new_key, open_client
from tests.integration.test_cli import cli  # noqa: F401  (the CLI as a process)
from tests.payments.helpers import create_customer, create_invoice
from tests.payments.test_direct_debit import CREDITOR, _mandate, _run, _settings


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


def _gauge(text: str, name: str, status: str) -> float:
    found = re.search(rf'^{name}{{status="{status}"}} ([0-9.e+]+)$', text, re.M)
    assert found is not None, (name, status, text[-3000:])
    return float(found.group(1))


def test_metrics_show_collection_runs_and_transactions_in_flight(
    client: Any, runtime: Runtime
) -> None:
    """A SEPA run of two invoices: one more submitted run, two more pending
    transactions (the database may hold other tests' runs, so the test counts the
    difference)."""
    book = make_book(runtime, "EUR", date(2026, 3, 2))
    key = book.admin_key
    _settings(client, key, sepa_creditor=CREDITOR)
    customer = create_customer(client, key, currency="EUR", tax_rate="0", name="Anna")
    _mandate(client, key, customer["id"], "M-OPS")
    for amount in ("100.00", "50.00"):
        create_invoice(client, key, customer["id"], amount)

    def scrape() -> tuple[float, float, float]:
        text = client.get("/metrics").text
        return (
            _gauge(text, "activebilling_collection_runs", "submitted"),
            _gauge(text, "activebilling_collection_transactions", "pending"),
            _gauge(text, "activebilling_collection_transactions", "returned"),
        )

    before = scrape()
    made = _run(client, key, "sepa")
    assert made.status_code == 201, made.text
    assert made.json()["total"] == "150.00"
    after = scrape()
    assert (after[0] - before[0], after[1] - before[1], after[2] - before[2]) == (1, 2, 0)


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


_AUDIT_ROW = (
    "insert into audit_log (book_id, at, key_id, role, method, path, status, request_id)"
    " values (%s, now(), %s, 'admin', 'POST', '/v1/journal-entries', 201, 'r-1')"
)


def test_audit_rows_name_only_books_that_exist_and_keep_them(
    runtime: Runtime, book: BookFixture, database_url: str
) -> None:
    """Revision 0054 checks the audit log's book per statement instead of by a
    foreign key (which locked the book's row for every post): the same refusals,
    SQLSTATE and constraint name, both ways."""
    with runtime.connection() as conn:  # the service's role
        with pytest.raises(psycopg.errors.ForeignKeyViolation) as refused:
            conn.execute(_AUDIT_ROW, (uuid.uuid4(), uuid.uuid4()))
        assert refused.value.diag.constraint_name == "fk_audit_log_book_id_books"
        conn.rollback()
        conn.execute(_AUDIT_ROW, (book.id, uuid.uuid4()))  # its own book: written
        # ... without a lock on the book's row (FOR UPDATE conflicts with the foreign
        # key's FOR KEY SHARE, which every concurrent post took on that one row)
        with psycopg.connect(database_url) as other:
            other.execute("select from books where id = %s for update nowait", (book.id,))
        conn.commit()
    bare = uuid.uuid4()  # a book with nothing else naming it, so only the audit row holds it
    with psycopg.connect(database_url, autocommit=True) as owner:
        owner.execute(
            "insert into books (id, name, base_currency) values (%s, 'bare', 'USD')", (bare,)
        )
        owner.execute(_AUDIT_ROW, (bare, uuid.uuid4()))
        owner.execute("update books set name = 'renamed' where id = %s", (bare,))  # not its key
        for change in (
            "delete from books where id = %s",
            "update books set id = gen_random_uuid() where id = %s",
        ):
            with pytest.raises(psycopg.errors.ForeignKeyViolation) as kept:
                owner.execute(change, (bare,))
            assert kept.value.diag.constraint_name == "fk_audit_log_book_id_books"
        count = owner.execute("select count(*) from books where id = %s", (bare,)).fetchone()
        assert count == (1,)


def test_a_journal_entry_commits_with_its_audit_row(
    client: Any, runtime: Runtime, book: BookFixture
) -> None:
    """No entry without its audit row: both ways of `POST /v1/journal-entries` (one
    statement for a dated entry, the general unit of work for one without a date)
    write the row with the entry, as run_command does, not after the response. With
    the after-response writer gone (the process dies right after the commit), both
    rows are there."""
    h = auth(book.admin_key)
    writer = client.app.state.audit
    client.app.state.audit = None  # the after-response writer writes nothing
    try:
        hot = client.post("/v1/journal-entries", json=entry_body(), headers=h)
        undated = {k: v for k, v in entry_body(memo="today").items() if k != "effective_date"}
        general = client.post(
            "/v1/journal-entries", json=undated, headers={**h, "Idempotency-Key": "k-undated"}
        )
    finally:
        client.app.state.audit = writer
    assert (hot.status_code, general.status_code) == (201, 201), general.text
    with runtime.connection() as conn:
        rows = conn.execute(
            "select method, path, status, idempotency_key, request_id, created, role, key_id"
            " from audit_log where book_id = %s order by id",
            (book.id,),
        ).fetchall()
        admin = conn.execute(
            "select id from api_keys where book_id = %s and role = 'admin'", (book.id,)
        ).fetchone()
    assert admin is not None
    assert rows == [
        ("POST", "/v1/journal-entries", 201, None, hot.headers["x-request-id"],
         [hot.json()["id"]], "admin", admin[0]),
        ("POST", "/v1/journal-entries", 201, "k-undated", general.headers["x-request-id"],
         [general.json()["id"]], "admin", admin[0]),
    ]  # fmt: skip
    time.sleep(0.5)  # the writer (batches every 0.2 s) adds no second row for either
    with runtime.connection() as conn:
        count = conn.execute("select count(*) from audit_log where book_id = %s", (book.id,))
        assert count.fetchone() == (2,)


def test_the_audit_log_names_key_role_request_and_created_and_takes_filters(
    client: Any,
    runtime: Runtime,
    book: BookFixture,
    cli: Any,  # noqa: F811
) -> None:
    """Each row says who (key and role, or the OS user on the command line), what
    (method, path, Idempotency-Key, request id), how it ended and what it created;
    `GET /v1/audit-log` and `activebilling audit list` filter by time, key, method,
    path prefix and status, keep the cursor, and refuse a bad filter with a 422."""
    admin = auth(book.admin_key)
    operator = new_key(runtime, book.id, Role.OPERATOR)
    made = client.post(
        "/v1/journal-entries",
        json=entry_body(memo="audited"),
        headers={**admin, "Idempotency-Key": "k-audit-2", "X-Request-Id": "req-audit-2"},
    )
    assert made.status_code == 201, made.text
    denied = client.post("/v1/accounts", json={"name": "Assets:X"}, headers=auth(operator))
    assert denied.status_code == 403
    _audit_rows(runtime, book, 2)  # the writer has written both

    posted = cli(
        "journal-entries", "post", "Assets:Bank:Operating=5.00", "Income:Subscriptions=-5.00",
        "--idempotency-key", "cli-audit-1", "--book", str(book.id), "--format", "json",
    )  # fmt: skip
    assert posted.returncode == 0, posted.stderr
    entry_id = json.loads(posted.stdout)["id"]
    created_key = cli("keys", "create", "--book", str(book.id), "--role", "erp", "--format", "json")
    assert created_key.returncode == 0, created_key.stderr
    erp_key_id = json.loads(created_key.stdout)["key_id"]

    auditor = auth(new_key(runtime, book.id, Role.AUDITOR))

    def listed(**query: str) -> list[dict[str, Any]]:
        got = client.get("/v1/audit-log", params=query, headers=auditor)
        assert got.status_code == 200, got.text
        data: list[dict[str, Any]] = got.json()["data"]
        return data

    everything = listed()
    assert [(r["method"], r["path"], r["status"]) for r in everything] == [
        ("CLI", "keys create", 0),
        ("CLI", "journal-entries post", 0),
        ("POST", "/v1/accounts", 403),
        ("POST", "/v1/journal-entries", 201),
    ]
    keys_row, post_row, denied_row, made_row = everything
    with runtime.connection() as conn:
        admin_id, operator_id = conn.execute(
            "select (select id from api_keys where book_id = %(b)s and role = 'admin'),"
            " (select id from api_keys where book_id = %(b)s and role = 'operator')",
            {"b": book.id},
        ).fetchone() or (None, None)
    assert (made_row["key_id"], made_row["principal"], made_row["role"]) == (
        str(admin_id),
        f"key:{admin_id}",
        "admin",
    )
    assert (made_row["idempotency_key"], made_row["request_id"]) == ("k-audit-2", "req-audit-2")
    assert made_row["created"] == [made.json()["id"]]
    assert (denied_row["key_id"], denied_row["role"], denied_row["created"]) == (
        str(operator_id),
        "operator",
        [],
    )
    assert denied_row["request_id"] == denied.headers["x-request-id"]
    for row, created in ((post_row, [entry_id]), (keys_row, [erp_key_id])):
        assert (row["key_id"], row["role"], row["created"]) == (None, "cli", created)
        assert row["principal"].startswith("cli:") and len(row["principal"]) > 4
        assert row["request_id"].startswith("cli-")
    assert post_row["idempotency_key"] == "cli-audit-1"

    # Filters, one at a time and together; the cursor pages within a filter.
    assert [r["id"] for r in listed(key_id=str(operator_id))] == [denied_row["id"]]
    assert [r["id"] for r in listed(method="cli")] == [keys_row["id"], post_row["id"]]
    assert [r["id"] for r in listed(path="/v1/journal")] == [made_row["id"]]
    assert [r["id"] for r in listed(status="403")] == [denied_row["id"]]
    assert [r["id"] for r in listed(method="POST", status="201")] == [made_row["id"]]
    assert [r["id"] for r in listed(**{"from": keys_row["at"]})] == [keys_row["id"]]
    assert [r["id"] for r in listed(to=post_row["at"])] == [denied_row["id"], made_row["id"]]
    assert listed(**{"from": "2099-01-01T00:00:00Z"}) == []
    page = client.get("/v1/audit-log", params={"method": "CLI", "limit": 1}, headers=auditor)
    assert [r["id"] for r in page.json()["data"]] == [keys_row["id"]]
    rest = client.get(
        "/v1/audit-log",
        params={"method": "CLI", "cursor": page.json()["next_cursor"]},
        headers=auditor,
    )
    assert [r["id"] for r in rest.json()["data"]] == [post_row["id"]]
    for bad in (
        {"from": "yesterday"},
        {"to": "2026-13-01"},
        {"from": "2026-12-02", "to": "2026-12-01"},
        {"key_id": "not-a-key"},
        {"method": "GET"},
        {"status": "ok"},
        {"status": "-1"},
    ):
        refused = client.get("/v1/audit-log", params=bad, headers=auditor)
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.headers["content-type"].startswith(PROBLEM)

    # The same on the command line.
    on_cli = cli(
        "audit", "list", "--book", str(book.id), "--method", "CLI", "--path", "journal",
        "--format", "json",
    )  # fmt: skip
    assert on_cli.returncode == 0, on_cli.stderr
    assert [r["id"] for r in json.loads(on_cli.stdout)["data"]] == [post_row["id"]]
    by_key = cli(
        "audit", "list", "--book", str(book.id), "--key-id", str(admin_id), "--format", "json"
    )
    assert [r["id"] for r in json.loads(by_key.stdout)["data"]] == [made_row["id"]]
    wrong = cli("audit", "list", "--book", str(book.id), "--status", "ok")
    assert wrong.returncode == 2 and wrong.stderr.startswith("error: status 'ok'"), wrong.stderr
    # Reading the log is not itself audited.
    assert len(listed()) == 4


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


def test_a_billing_command_commits_its_audit_row_with_its_change_and_only_once(
    runtime: Runtime, book: BookFixture
) -> None:
    """POST /v1/customers runs as one unit of work: its audit row is in the database
    when the answer arrives (a crash after the commit cannot lose it), and the
    after-response writer adds no second row; a refusal is still logged by it."""

    def rows() -> list[tuple[Any, ...]]:
        with runtime.connection() as conn:
            return conn.execute(
                "select status, created, idempotency_key, request_id from audit_log"
                " where book_id = %s and path = '/v1/customers' order by id",
                (book.id,),
            ).fetchall()

    with open_client(runtime) as c:
        made = c.post(
            "/v1/customers",
            json={"name": "Audited Ltd", "currency": "USD"},
            headers={**auth(book.admin_key), "Idempotency-Key": "cust-1"},
        )
        assert made.status_code == 201, made.text
        at_once = rows()
        bad = c.post("/v1/customers", json={"name": ""}, headers=auth(book.admin_key))
        assert bad.status_code in (400, 422)
    # The client is closed: its writer has written what it queued.
    expected = (201, [made.json()["id"]], "cust-1", made.headers["x-request-id"])
    assert at_once == [expected]
    assert rows() == [expected, (bad.status_code, [], None, bad.headers["x-request-id"])]
