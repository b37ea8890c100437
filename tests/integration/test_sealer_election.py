"""One sealer per database: the workers of a server elect it, and a standby
takes over when the sealer's process dies (its session, and so its lock, ends)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import date

import pytest

from adapters.database import DatabaseSettings
from adapters.runtime import Runtime
from ledger.entries import Posting, build_entry
from ledger.money import Money
from ledger.postgres.posting import post_entry
from ledger.postgres.unit_of_work import unit_of_work
from tests.conftest import APP_ROLE, THROUGH_PGBOUNCER, BookFixture, make_book, migrated_database

pytestmark = pytest.mark.skipif(
    THROUGH_PGBOUNCER, reason="behind transaction pooling every runtime seals"
)

# A server worker in a process of its own: it prints once elected, then seals on.
_WORKER = """
import sys, time
from adapters.database import DatabaseSettings
from adapters.runtime import Runtime
runtime = Runtime(DatabaseSettings(sys.argv[1], sys.argv[2]), min_size=1, max_size=2)
runtime.start_sealer(interval=0.05, standby_retry=0.1)
runtime.sealer_elected.wait(30)
print("elected", flush=True)
time.sleep(600)
"""


@pytest.fixture(scope="module")
def own_database(server_url: str) -> Iterator[str]:
    """A database of its own: no other test's sealer holds its lock."""
    with migrated_database(server_url, "ab_elect") as url:
        yield url


def _runtime(url: str) -> Runtime:
    return Runtime(DatabaseSettings(url, APP_ROLE), min_size=1, max_size=4)


def _post(runtime: Runtime, book: BookFixture) -> uuid.UUID:
    entry = build_entry(
        date(2026, 3, 10),
        "election",
        [
            Posting("Assets:Bank:Operating", Money.exact("1.00", "USD")),
            Posting("Income:Services", Money.exact("-1.00", "USD")),
        ],
        idempotency_key=f"e:{uuid.uuid4()}",
    )
    with unit_of_work(runtime.connection) as uow:
        posted = post_entry(uow.conn, book.id, entry)
        uow.commit()
    return posted.id


def _eventually(check: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def _sealed(runtime: Runtime, entry_id: uuid.UUID) -> bool:
    with runtime.connection() as conn:
        row = conn.execute("select count(*) from seals where entry_id = %s", (entry_id,)).fetchone()
        conn.rollback()
    return row == (1,)


def test_of_two_workers_one_seals_and_the_other_stands_by(own_database: str) -> None:
    first, second = _runtime(own_database), _runtime(own_database)
    try:
        first.start_sealer(interval=0.05, standby_retry=0.1)
        second.start_sealer(interval=0.05, standby_retry=0.1)
        assert _eventually(lambda: first.sealer_elected.is_set() or second.sealer_elected.is_set())
        time.sleep(0.5)  # several standby retries
        assert first.sealer_elected.is_set() != second.sealer_elected.is_set()
        book = make_book(first)
        entry_id = _post(second, book)
        assert _eventually(lambda: _sealed(first, entry_id))
    finally:
        first.close()
        second.close()


def test_a_killed_sealers_role_is_taken_over(own_database: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    worker = subprocess.Popen(
        [sys.executable, "-c", _WORKER, own_database, APP_ROLE],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    standby = _runtime(own_database)
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "elected"
        standby.start_sealer(interval=0.05, standby_retry=0.1)
        book = make_book(standby)
        before = _post(standby, book)
        assert _eventually(lambda: _sealed(standby, before))  # the other process sealed it
        assert not standby.sealer_elected.is_set()

        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        assert _eventually(standby.sealer_elected.is_set)
        after = _post(standby, book)
        assert _eventually(lambda: _sealed(standby, after))
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
        standby.close()


def test_a_closed_runtime_gives_the_lock_up(own_database: str) -> None:
    first = _runtime(own_database)
    first.start_sealer(interval=0.05, standby_retry=0.1)
    assert _eventually(first.sealer_elected.is_set)
    second = _runtime(own_database)
    try:
        second.start_sealer(interval=0.05, standby_retry=0.1)
        time.sleep(0.3)
        assert not second.sealer_elected.is_set()
        first.close()
        assert _eventually(second.sealer_elected.is_set)
    finally:
        second.close()
