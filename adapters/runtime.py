"""The service's runtime: a connection pool running as the application role,
the wall clock, and the background sealer."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from adapters.crm.outbound import CrmWorker
from adapters.database import DatabaseSettings, libpq_url
from adapters.messages.smtp import MessageSender
from adapters.webhooks.worker import WebhookWorker
from ledger.postgres.queries import compact_balances
from ledger.postgres.sealer import books_with_pending_seals, seal_pending

log = logging.getLogger("activebilling.runtime")

COMPACT_EVERY_ROUNDS = 300  # with the default 0.2 s sealing interval: once a minute
# One sealer per database: the server's workers elect it by a session advisory
# lock; the others try again this often (a dead leader's lock goes with its
# connection, so a standby takes over within about this long).
STANDBY_RETRY = 1.0
LEADER_PING_ROUNDS = 25  # the leader checks its lock's connection every 25 rounds
SEALER_LOCK = "ab_sealer"

# During a database outage a request fails within these bounds (the HTTP edge
# answers 503 with Retry-After) instead of queueing behind the pool:
ACQUIRE_TIMEOUT = 2.0  # seconds a request waits for a pooled connection
CONNECT_TIMEOUT = 2  # seconds libpq waits for a new connection (its minimum)
# A failed reconnection retries with backoff for this long, then gives up so
# the next request starts a fresh attempt: recovery follows the database's return.
RECONNECT_TIMEOUT = 1.0
CONNECTION_OPTIONS: dict[str, int] = {
    "connect_timeout": CONNECT_TIMEOUT,
    # A peer that vanished without closing (a cut network) is found by keepalives.
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 2,
    "keepalives_count": 3,
}


def utc_today() -> date:
    """The wall clock, read at the edge only; domain code receives dates."""
    return datetime.now(UTC).date()


def _configure(role: str | None, session: bool = True) -> Callable[[psycopg.Connection], None]:
    def configure(conn: psycopg.Connection) -> None:
        if not session:  # transaction pooling: the next transaction may be another server's
            return
        if role:
            conn.execute(sql.SQL("set role {}").format(sql.Identifier(role)))
        conn.execute("set time zone 'UTC'")
        conn.commit()

    return configure


def _aconfigure(
    role: str | None, session: bool = True
) -> Callable[[psycopg.AsyncConnection], Awaitable[None]]:
    async def configure(conn: psycopg.AsyncConnection) -> None:
        if not session:
            return
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


class TransactionPoolingError(RuntimeError):
    """Transaction pooling with a login that needs SET ROLE: the role would not stick."""


def _options(settings: DatabaseSettings, login: dict[str, str]) -> dict[str, object]:
    options: dict[str, object] = {**CONNECTION_OPTIONS, **login}
    if settings.transaction_pooling:
        # Server-side prepared statements belong to one server session; behind a
        # transaction-pooling PgBouncer the next execute may land on another one.
        options["prepare_threshold"] = None
    return options


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
        if set_role and settings.transaction_pooling:
            raise TransactionPoolingError(
                f"behind a transaction-pooling PgBouncer the service must log in as {set_role}"
                " (SET ROLE is session state); add the role to PgBouncer's auth_file"
            )
        self._url, self._login, self._set_role, self._max_size = url, login, set_role, max_size
        self._session = not settings.transaction_pooling
        self.pool = ConnectionPool(
            url,
            kwargs=_options(settings, login),
            min_size=min_size,
            max_size=max_size,
            configure=_configure(set_role, self._session),
            open=True,
            name="activebilling",
            timeout=ACQUIRE_TIMEOUT,
            reconnect_timeout=RECONNECT_TIMEOUT,
        )
        # Reads (reports, exports, lists) go to a streaming replica when one is
        # configured; read_connection() says when a read may use it.
        self.read_pool: ConnectionPool | None = None
        if settings.read_url:
            read_url = libpq_url(settings.read_url)
            read_login, read_role = _login(read_url, settings.app_role)
            self.read_pool = ConnectionPool(
                read_url,
                kwargs=_options(settings, read_login),
                min_size=1,
                max_size=max_size,
                configure=_configure(read_role, self._session),
                open=True,
                name="activebilling-read",
                timeout=ACQUIRE_TIMEOUT,
                reconnect_timeout=RECONNECT_TIMEOUT,
            )
        self.replica_reads = 0  # reads the replica served; the rest fell back to the primary
        self._checking = threading.Lock()
        self._stop = threading.Event()
        self._sealer: threading.Thread | None = None
        self.sealer_elected = threading.Event()  # set while this runtime is the sealer
        self._election: psycopg.Connection | None = None
        self._webhooks: WebhookWorker | None = None
        self._crm: CrmWorker | None = None
        self._messages: MessageSender | None = None

    def connection(self) -> AbstractContextManager[psycopg.Connection]:
        return self.pool.connection()

    @contextmanager
    def read_connection(self) -> Iterator[psycopg.Connection]:
        """A connection for a read-only request, rolled back afterwards.

        The consistency rule: a read sees every write committed before it began.
        With a replica, the read first takes the primary's WAL position
        (pg_current_wal_lsn(), which every acknowledged commit precedes), then
        waits until the replica has replayed that far (pg_last_wal_replay_lsn()),
        at most settings.read_max_wait seconds; past that, or when the replica is
        unreachable, the primary serves the read.
        """
        conn = self._caught_up_replica() if self.read_pool is not None else None
        if conn is None:
            with self.pool.connection() as primary:
                try:
                    yield primary
                finally:
                    if not primary.closed:
                        primary.rollback()
            return
        assert self.read_pool is not None
        try:
            yield conn
        finally:
            if not conn.closed:
                conn.rollback()
            self.read_pool.putconn(conn)

    def _caught_up_replica(self) -> psycopg.Connection | None:
        assert self.read_pool is not None
        with self.pool.connection() as primary:
            row = primary.execute("select pg_current_wal_lsn()::text").fetchone()
        assert row is not None
        target = row[0]
        deadline = time.monotonic() + self.settings.read_max_wait
        try:
            conn = self.read_pool.getconn()
        except (psycopg.OperationalError, PoolTimeout):
            log.warning("the read replica is unreachable; reading from the primary")
            return None
        try:
            delay = 0.002
            while True:
                replayed = conn.execute(
                    "select coalesce(pg_last_wal_replay_lsn() >= %s::pg_lsn, true)", (target,)
                ).fetchone()
                conn.rollback()
                if replayed is not None and replayed[0]:
                    self.replica_reads += 1
                    return conn
                if time.monotonic() >= deadline:
                    break
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
        except psycopg.OperationalError:
            log.warning("the read replica failed; reading from the primary")
        self.read_pool.putconn(conn)
        return None

    async def open_async_pool(
        self, min_size: int = 2, *, autocommit: bool = False
    ) -> AsyncConnectionPool:
        """An asyncio pool with the same login and session settings, for handlers
        that run on the event loop (no thread hop). It belongs to the running
        loop: the caller closes it (the HTTP app does so at shutdown). With
        autocommit, its connections run each statement as its own transaction."""
        pool = AsyncConnectionPool(
            self._url,
            kwargs={**_options(self.settings, self._login), "autocommit": autocommit},
            min_size=min_size,
            max_size=self._max_size,
            configure=_aconfigure(self._set_role, self._session),
            open=False,
            name="activebilling-async-autocommit" if autocommit else "activebilling-async",
            timeout=ACQUIRE_TIMEOUT,
            reconnect_timeout=RECONNECT_TIMEOUT,
        )
        await pool.open()
        return pool

    def discard_broken(self) -> None:
        """After a connection error, check the idle connections in the background:
        those an outage broke are replaced before requests draw them."""
        if self._checking.acquire(blocking=False):
            threading.Thread(target=self._check_pool, daemon=True).start()

    def _check_pool(self) -> None:
        try:
            self.pool.check()
            if self.read_pool is not None:
                self.read_pool.check()
        except Exception:  # the pool is closing, or the check itself failed
            log.exception("checking the pool failed")
        finally:
            self._checking.release()

    def start_sealer(self, interval: float = 0.2, standby_retry: float = STANDBY_RETRY) -> None:
        if self._sealer is not None and self._sealer.is_alive():
            return  # one sealer thread per runtime (apps built on a shared runtime)
        self._sealer = threading.Thread(
            target=self._seal_loop, args=(interval, standby_retry), daemon=True
        )
        self._sealer.start()

    def start_webhooks(self, interval: float = 1.0) -> None:
        """The webhook delivery worker (adapters/webhooks/worker.py), beside the sealer."""
        self._webhooks = WebhookWorker(self.pool.connection)
        self._webhooks.start(interval)
        # CRM write-backs are the outbox's other delivery kind (adapters/crm/outbound.py).
        self._crm = CrmWorker(self.pool.connection)
        self._crm.start(interval)
        # The dunning outbox's SMTP sender (adapters/messages/smtp.py) runs the same way.
        self._messages = MessageSender(self.pool.connection)
        self._messages.start(interval)

    def _seal_loop(self, interval: float, standby_retry: float) -> None:
        """Seal every `interval` while elected; a standby only retries the election.
        Before, every worker sealed: the losers of each book's try-lock paid four
        round trips a round (their backends ~80 µs CPU per entry) for nothing."""
        rounds = 0
        wait = 0.0  # the first election at once
        while not self._stop.wait(wait):
            if not self._elected(rounds):
                wait = standby_retry
                continue
            wait = interval
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
        self._resign()

    def _elected(self, rounds: int) -> bool:
        """Whether this runtime holds the sealer's lock (taking it when free).
        Behind a transaction-pooling PgBouncer a session lock means nothing: every
        runtime seals, as before (each book's transaction lock still serializes)."""
        if self.settings.transaction_pooling:
            return True
        conn = self._election
        try:
            if conn is None:
                options: dict[str, Any] = _options(self.settings, self._login)
                conn = self._election = psycopg.connect(self._url, autocommit=True, **options)
            if self.sealer_elected.is_set():
                if rounds % LEADER_PING_ROUNDS == 0:  # a lost connection lost the lock
                    conn.execute("select 1")
                return True
            row = conn.execute(
                "select pg_try_advisory_lock(hashtextextended(%s, 0))", (SEALER_LOCK,)
            ).fetchone()
        except psycopg.Error:
            log.warning("the sealer's election connection failed; trying again")
            self._resign()
            return False
        if row is not None and row[0]:
            self.sealer_elected.set()
            return True
        return False

    def _resign(self) -> None:
        self.sealer_elected.clear()
        if self._election is not None:
            self._election.close()  # the lock goes with the session
            self._election = None

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
        if self._webhooks is not None:
            self._webhooks.stop()
        if self._crm is not None:
            self._crm.stop()
        if self._messages is not None:
            self._messages.stop()
        if self.read_pool is not None:
            self.read_pool.close()
        self.pool.close()


@contextmanager
def open_runtime(settings: DatabaseSettings | None = None) -> Iterator[Runtime]:
    runtime = Runtime(settings or DatabaseSettings.from_environment(), min_size=1, max_size=4)
    try:
        yield runtime
    finally:
        runtime.close()
