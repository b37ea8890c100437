"""The service's runtime: a connection pool running as the application role,
the wall clock, and the background sealer."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, date, datetime

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from adapters.database import DatabaseSettings, libpq_url
from ledger.postgres.sealer import books_with_pending_seals, seal_pending

log = logging.getLogger("activebilling.runtime")


def utc_today() -> date:
    """The wall clock, read at the edge only; domain code receives dates."""
    return datetime.now(UTC).date()


def _configure(role: str | None) -> Callable[[psycopg.Connection], None]:
    def configure(conn: psycopg.Connection) -> None:
        if role:
            conn.execute(sql.SQL("set role {}").format(sql.Identifier(role)))
        conn.execute("set time zone 'UTC'")
        conn.commit()

    return configure


class Runtime:
    def __init__(
        self,
        settings: DatabaseSettings,
        *,
        min_size: int = 2,
        max_size: int = 16,
        today: Callable[[], date] = utc_today,
    ) -> None:
        self.settings = settings
        self.today = today
        self.pool = ConnectionPool(
            libpq_url(settings.url),
            min_size=min_size,
            max_size=max_size,
            configure=_configure(settings.app_role),
            open=True,
            name="activebilling",
        )
        self._stop = threading.Event()
        self._sealer: threading.Thread | None = None

    def connection(self) -> AbstractContextManager[psycopg.Connection]:
        return self.pool.connection()

    def start_sealer(self, interval: float = 0.2) -> None:
        self._sealer = threading.Thread(target=self._seal_loop, args=(interval,), daemon=True)
        self._sealer.start()

    def _seal_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.seal_all(wait=False)
            except Exception:  # the next round retries; sealing never blocks writers
                log.exception("sealing failed")

    def seal_all(self, *, wait: bool) -> int:
        with self.pool.connection() as conn:
            books = books_with_pending_seals(conn)
            conn.commit()
        return sum(seal_pending(self.pool.connection, book, wait=wait) for book in books)

    def close(self) -> None:
        self._stop.set()
        if self._sealer is not None:
            self._sealer.join(timeout=5)
        self.pool.close()


@contextmanager
def open_runtime(settings: DatabaseSettings | None = None) -> Iterator[Runtime]:
    runtime = Runtime(settings or DatabaseSettings.from_environment(), min_size=1, max_size=4)
    try:
        yield runtime
    finally:
        runtime.close()
