"""The `activebilling` command line, run as a subprocess against the test database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from adapters.runtime import Runtime
from tests.conftest import BookFixture, make_book
from tests.integration.http_fixtures import assert_problem, auth, entry_body, open_client

pytestmark = pytest.mark.slow  # each command is a fresh Python process

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / ".venv" / "bin" / "activebilling"
if not CLI.exists():  # an installation outside the repository's virtualenv
    CLI = Path(sys.executable).with_name("activebilling")


@pytest.fixture(scope="module")
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


@pytest.fixture(scope="module")
def cli(database_url: str) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTIVEBILLING_")}
    env["DATABASE_URL"] = database_url

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(CLI), *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )

    return run


@pytest.fixture(scope="module")
def two_books(runtime: Runtime) -> list[BookFixture]:
    """With two books, a command that names none cannot guess."""
    return [make_book(runtime), make_book(runtime)]


def table_counts(conn: psycopg.Connection) -> tuple[int, ...]:
    row = conn.execute(
        "select (select count(*) from books), (select count(*) from api_keys),"
        " (select count(*) from accounts), (select count(*) from journal_entries),"
        " (select count(*) from postings)"
    ).fetchone()
    assert row is not None
    return tuple(int(v) for v in row)


def create_book(cli: Any, *extra: str) -> dict[str, Any]:
    r = cli(
        "books", "create", "--name", "CLI test", "--currency", "USD", "--format", "json", *extra
    )
    assert r.returncode == 0, r.stderr
    document: dict[str, Any] = json.loads(r.stdout)
    return document


def test_books_create_prints_id_and_admin_key(
    cli: Any, client: Any, owner_conn: psycopg.Connection
) -> None:
    created = create_book(cli)
    assert set(created) >= {"book_id", "api_key"}
    book_id = uuid.UUID(created["book_id"])
    assert created["api_key"].startswith("ab_")
    row = owner_conn.execute(
        "select name, base_currency, clock_mode from books where id = %s", (book_id,)
    ).fetchone()
    assert row == ("CLI test", "USD", "real")
    # the key works over HTTP, and the book has the default chart
    accounts = client.get("/v1/accounts", headers=auth(created["api_key"]))
    assert accounts.status_code == 200
    assert "Assets:Bank:Operating" in {a["name"] for a in accounts.json()["data"]}
    r = client.post("/v1/journal-entries", json=entry_body(), headers=auth(created["api_key"]))
    assert r.status_code == 201, r.text


def test_books_create_with_a_simulated_clock(cli: Any, client: Any) -> None:
    created = create_book(cli, "--simulated-clock", "2026-01-01")
    clock = client.get("/v1/clock", headers=auth(created["api_key"]))
    assert clock.json() == {"mode": "simulated", "now": "2026-01-01"}


def test_keys_create_with_a_role(cli: Any, client: Any) -> None:
    book = create_book(cli)
    r = cli("keys", "create", "--book", book["book_id"], "--role", "auditor", "--format", "json")
    assert r.returncode == 0, r.stderr
    key = json.loads(r.stdout)
    assert key["role"] == "auditor"
    assert key["book_id"] == book["book_id"]
    assert key["api_key"] != book["api_key"]
    h = auth(key["api_key"])
    assert client.get("/v1/accounts", headers=h).status_code == 200
    assert_problem(client.post("/v1/journal-entries", json=entry_body(), headers=h), 403)
    plain = cli("keys", "create", "--book", book["book_id"], "--role", "accountant")
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.strip().startswith("ab_")


def test_trial_balance_equals_the_http_report(cli: Any, client: Any) -> None:
    book = create_book(cli)
    h = auth(book["api_key"])
    for body in (
        entry_body("2026-01-05", "110.00", "Assets:Receivable:Trade"),
        entry_body("2026-01-20", "60.00", "Assets:Bank:Operating", "Assets:Receivable:Trade"),
        entry_body("2026-01-21", "0.35", "Expenses:Payment-Fees"),
        entry_body("2026-01-22", "7.50", currency="EUR"),
        entry_body("2026-02-02", "1000.00"),
    ):
        assert client.post("/v1/journal-entries", json=body, headers=h).status_code == 201
    over_http = client.get(
        "/v1/reports/trial-balance", params={"as_of": "2026-01-31"}, headers=h
    ).json()
    r = cli(
        "report", "trial-balance", "--book", book["book_id"], "--as-of", "2026-01-31",
        "--format", "json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    from_cli = json.loads(r.stdout)
    assert from_cli["as_of"] == over_http["as_of"] == "2026-01-31"
    assert from_cli["lines"] == over_http["lines"]
    assert from_cli["totals"] == over_http["totals"]
    assert from_cli["totals"] == {
        "EUR": {"debit": "7.50", "credit": "7.50"},
        "USD": {"debit": "110.35", "credit": "110.35"},
    }
    assert {"account": "Income:Services", "currency": "USD", "debit": "0.00",
            "credit": "110.35", "balance": "-110.35"} in from_cli["lines"]  # fmt: skip
    table = cli("report", "trial-balance", "--book", book["book_id"], "--as-of", "2026-01-31")
    assert table.returncode == 0, table.stderr
    assert "110.35" in table.stdout and "Income:Services" in table.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("books", "create", "--name", "X", "--currency", "XYZ"), "XYZ"),
        (("books", "create", "--name", "X", "--currency", "usd"), "usd"),
        (("books", "create", "--name", "X", "--currency", "USD", "--simulated-clock", "2026-02-30"),
         "YYYY-MM-DD"),
        (("books", "create", "--name", "", "--currency", "USD"), "name"),
        (("keys", "create", "--book", "{book}", "--role", "superuser"), "role"),
        (("keys", "create", "--book", "0b0c8a8e-0000-4000-8000-000000000000", "--role", "admin"),
         "0b0c8a8e-0000-4000-8000-000000000000"),
        (("keys", "create", "--book", "not-a-book", "--role", "admin"), "not-a-book"),
        (("report", "trial-balance", "--book", "{book}", "--as-of", "2026-13-01"), "YYYY-MM-DD"),
        (("report", "trial-balance", "--book", "0b0c8a8e-0000-4000-8000-000000000000"),
         "0b0c8a8e-0000-4000-8000-000000000000"),
        (("report", "trial-balance"), "--book"),  # several books exist
    ],
    ids=["currency", "lowercase-currency", "clock-date", "empty-name", "role", "unknown-book",
         "bad-book-id", "as-of", "report-unknown-book", "ambiguous-book"],
)  # fmt: skip
def test_errors_exit_non_zero_with_a_message_and_write_nothing(
    cli: Any,
    two_books: list[BookFixture],
    owner_conn: psycopg.Connection,
    args: tuple[str, ...],
    message: str,
) -> None:
    before = table_counts(owner_conn)
    r = cli(*(a.format(book=two_books[0].id) for a in args), "--format", "json")
    assert r.returncode != 0
    assert r.stdout == ""
    assert message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    assert table_counts(owner_conn) == before
