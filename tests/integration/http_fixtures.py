"""Helpers shared by the HTTP and CLI tests: clients, request bodies, counters.

Fixtures live in the test modules themselves (they call `open_client`), so
this module holds only plain functions.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from litestar.testing import TestClient

from adapters.http.app import create_app
from adapters.keys import Role, create_key
from adapters.runtime import Runtime
from ledger.postgres.unit_of_work import unit_of_work

PROBLEM = "application/problem+json"

# Litestar() imports some of its plugins lazily inside its constructor; tests that
# build apps in several threads at once (the concurrency tests) saw that first import
# race ("cannot import name 'AttrsSchemaPlugin'"). Apps are built one at a time.
_BUILDING_APP = threading.Lock()


@contextmanager
def open_client(runtime: Runtime) -> Iterator[Any]:
    with _BUILDING_APP:
        app = create_app(runtime, run_sealer=False)
    with TestClient(app) as client:
        yield client


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def posting(account: str, amount: str, currency: str = "USD", **extra: Any) -> dict[str, Any]:
    return {"account": account, "amount": amount, "currency": currency, **extra}


def entry_body(
    effective_date: str = "2026-01-05",
    amount: str = "10.00",
    debit: str = "Assets:Bank:Operating",
    credit: str = "Income:Services",
    currency: str = "USD",
    memo: str = "sale",
    **extra: Any,
) -> dict[str, Any]:
    """A balanced two-posting entry: `amount` debited to `debit`, credited to `credit`."""
    negative = amount[1:] if amount.startswith("-") else "-" + amount
    return {
        "effective_date": effective_date,
        "memo": memo,
        "postings": [posting(debit, amount, currency), posting(credit, negative, currency)],
        **extra,
    }


def new_key(runtime: Runtime, book_id: uuid.UUID, role: Role) -> str:
    with unit_of_work(runtime.connection) as uow:
        _, key = create_key(uow.conn, book_id, role, label=f"test {role.value}")
        uow.commit()
    return key


def counts(conn: psycopg.Connection, book_id: uuid.UUID) -> dict[str, int]:
    """Rows the book owns in every table a command could write."""
    row = conn.execute(
        "select (select count(*) from journal_entries where book_id = %(b)s),"
        " (select count(*) from postings where book_id = %(b)s),"
        " (select count(*) from accounts where book_id = %(b)s),"
        " (select count(*) from idempotency_keys where book_id = %(b)s),"
        " (select count(*) from periods where book_id = %(b)s),"
        " (select count(*) from api_keys where book_id = %(b)s)",
        {"b": book_id},
    ).fetchone()
    assert row is not None
    names = ("journal_entries", "postings", "accounts", "idempotency_keys", "periods", "api_keys")
    return dict(zip(names, (int(v) for v in row), strict=True))


def assert_problem(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """An RFC 9457 problem with the given status (and machine code, when given)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    for member in ("type", "title", "status", "detail"):
        assert member in body, body
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    assert isinstance(body["type"], str) and body["type"]
    if code is not None:
        assert body.get("code") == code, body
        assert body["type"].endswith("/" + code), body
    return body


def sessions_in_transaction(database_url: str) -> int:
    """Sessions of this database idle in a transaction, as the superuser sees them (the
    app role does not see other logins' sessions' state)."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "select count(*) from pg_stat_activity where datname = current_database()"
            " and state like 'idle in transaction%%' and pid <> pg_backend_pid()"
        ).fetchone()
    assert row is not None
    return int(row[0])
