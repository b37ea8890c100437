"""A real PgBouncer in transaction pooling mode in front of a test database.

Started as the `postgres` OS user when we are root (PgBouncer refuses root), on
a free loopback port, with trust auth for the users the tests log in as; the
service connects through it with ACTIVEBILLING_TRANSACTION_POOLING set, which
turns off prepared statements and session-level SET (adapters/runtime.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
import pytest

from tests.integration.pg_cluster import _as_service_user, free_port, service_tempdir

USERS = ("postgres", "activebilling_app")


def pgbouncer_binary() -> str:
    found = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
    )
    if found is None:
        pytest.skip("pgbouncer is not installed (Debian package pgbouncer)")
    return found


def _config(root: Path, target: str, port: int, pool_size: int) -> Path:
    parts = urlsplit(target)
    server = f"host={parts.hostname or '127.0.0.1'} port={parts.port or 5432}"
    if parts.password:
        server += f" password={unquote(parts.password)}"
    users = root / "users.txt"
    users.write_text("".join(f'"{u}" ""\n' for u in USERS))
    ini = root / "pgbouncer.ini"
    ini.write_text(
        "[databases]\n"
        # Any database name passes through; every server connection starts in UTC,
        # so no client needs a session-level SET that would outlive its transaction.
        f"* = {server} connect_query='set time zone ''UTC'''\n"
        "[pgbouncer]\n"
        "listen_addr = 127.0.0.1\n"
        f"listen_port = {port}\n"
        "unix_socket_dir =\n"
        "auth_type = trust\n"
        f"auth_file = {users}\n"
        "pool_mode = transaction\n"
        "max_client_conn = 1000\n"
        f"default_pool_size = {pool_size}\n"
        f"logfile = {root / 'pgbouncer.log'}\n"
        f"pidfile = {root / 'pgbouncer.pid'}\n"
        "admin_users = postgres\n"
    )
    for path in (users, ini):
        os.chmod(path, 0o644)
    return ini


@contextmanager
def pgbouncer_in_front(database_url: str, pool_size: int = 40) -> Iterator[str]:
    """Yield `database_url` rewritten to go through a transaction-pooling PgBouncer."""
    binary = pgbouncer_binary()
    with service_tempdir("ab-pgbouncer-") as root:
        port = free_port()
        ini = _config(root, database_url, port, pool_size)
        process = subprocess.Popen(
            _as_service_user([binary, str(ini)]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        parts = urlsplit(database_url)
        user = parts.username or "postgres"
        url = parts._replace(netloc=f"{user}@127.0.0.1:{port}").geturl()
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    psycopg.connect(url, connect_timeout=2, prepare_threshold=None).close()
                    break
                except psycopg.OperationalError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        log = (root / "pgbouncer.log").read_text(errors="replace")
                        raise RuntimeError(f"pgbouncer did not start:\n{log}") from None
                    time.sleep(0.1)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=10)
