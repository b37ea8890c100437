"""The service's runtime: a connection pool running as the application role,
the wall clock, and the background sealer."""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, date, datetime, timedelta

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from adapters.database import DatabaseSettings, libpq_url
from ledger.postgres.queries import compact_balances
from ledger.postgres.sealer import books_with_pending_seals, seal_pending

log = logging.getLogger("activebilling.runtime")

COMPACT_EVERY_ROUNDS = 300  # with the default 0.2 s sealing interval: once a minute


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


def _aconfigure(role: str | None) -> Callable[[psycopg.AsyncConnection], Awaitable[None]]:
    async def configure(conn: psycopg.AsyncConnection) -> None:
        if role:
            await conn.execute(sql.SQL("set role {}").format(sql.Identifier(role)))
        await conn.execute("set time zone 'UTC'")
        await conn.commit()

    return configure


def _login(url: str, role: str | None) -> tuple[dict[str, str], str | None]:
    """Log in as the application role when the server lets us (trust, or a
    password in the environment); otherwise log in as given and SET ROLE."""
    if not role:
        return {}, None
    try:
        psycopg.connect(url, user=role, connect_timeout=5).close()
    except psycopg.OperationalError:
        log.warning("cannot log in as %s; using SET ROLE from the configured user", role)
        return {}, role
    return {"user": role}, None


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
        url = libpq_url(settings.url)
        login, set_role = _login(url, settings.app_role)
        self._url, self._login, self._set_role, self._max_size = url, login, set_role, max_size
        self.pool = ConnectionPool(
            url,
            kwargs=login,
            min_size=min_size,
            max_size=max_size,
            configure=_configure(set_role),
            open=True,
            name="activebilling",
        )
        self._stop = threading.Event()
        self._sealer: threading.Thread | None = None

    def connection(self) -> AbstractContextManager[psycopg.Connection]:
        return self.pool.connection()

    async def open_async_pool(self, min_size: int = 2) -> AsyncConnectionPool:
        """An asyncio pool with the same login and session settings, for handlers
        that run on the event loop (no thread hop). It belongs to the running
        loop: the caller closes it (the HTTP app does so at shutdown)."""
        pool = AsyncConnectionPool(
            self._url,
            kwargs=self._login,
            min_size=min_size,
            max_size=self._max_size,
            configure=_aconfigure(self._set_role),
            open=False,
            name="activebilling-async",
        )
        await pool.open()
        return pool

    def start_sealer(self, interval: float = 0.2) -> None:
        self._sealer = threading.Thread(target=self._seal_loop, args=(interval,), daemon=True)
        self._sealer.start()

    def _seal_loop(self, interval: float) -> None:
        rounds = 0
        while not self._stop.wait(interval):
            try:
                self.seal_all(wait=False)
            except Exception:  # the next round retries; sealing never blocks writers
                log.exception("sealing failed")
            rounds += 1
            if rounds % COMPACT_EVERY_ROUNDS == 0:
                try:
                    self.compact_all()
                except Exception:  # reads stay correct uncompacted, only slower
                    log.exception("compacting balances failed")

    def compact_all(self) -> int:
        """Fold the per-writer balance slots of days before yesterday, in every
        book: reads then scan one row per account, currency and day."""
        before = self.today() - timedelta(days=1)
        folded = 0
        with self.pool.connection() as conn:
            books = [row[0] for row in conn.execute("select id from books")]
            conn.commit()
            for book in books:
                folded += compact_balances(conn, book, before)
                conn.commit()
        return folded

    def seal_all(self, *, wait: bool) -> int:
        """Seal every book's queue; one book's failure does not stop the others."""
        with self.pool.connection() as conn:
            books = books_with_pending_seals(conn)
            conn.commit()
        sealed = 0
        failures: list[Exception] = []
        for book in books:
            try:
                sealed += seal_pending(self.pool.connection, book, wait=wait)
            except psycopg.Error as exc:
                log.exception("sealing book %s failed", book)
                failures.append(exc)
        if failures and wait:
            raise failures[0]
        return sealed

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
