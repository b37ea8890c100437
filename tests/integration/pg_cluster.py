"""Real PostgreSQL 15 processes for the replica, failover and PgBouncer tests.

Each node is its own postmaster on a free loopback port with its data directory
under a temporary directory; a standby is made with `pg_basebackup -R` (streaming
replication through primary_conninfo). PostgreSQL refuses to run as root, so as
root the server processes run as the `postgres` OS user (runuser). Tests skip,
saying why, when the server binaries or that user are missing.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

BINDIR = Path(os.environ.get("PG_BINDIR", "/usr/lib/postgresql/15/bin"))
SERVICE_USER = "postgres"  # the OS user server processes run as when we are root
START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _as_service_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", SERVICE_USER, "--", *argv] if os.geteuid() == 0 else argv


def require_binaries(*names: str, bindir: Path = BINDIR) -> None:
    """Skip the test (with the reason) when a server binary or the service user is missing."""
    for name in names:
        if not (bindir / name).exists() and shutil.which(name) is None:
            pytest.skip(f"{name} not found in {bindir} or on PATH")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVICE_USER)
        except KeyError:
            pytest.skip(f"running as root and there is no {SERVICE_USER} OS user to run servers")


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(_as_service_user(argv), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}")
    return done


@contextmanager
def service_tempdir(prefix: str) -> Iterator[Path]:
    """A temporary directory the server user owns (and that we remove afterwards)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        if os.geteuid() == 0:
            entry = pwd.getpwnam(SERVICE_USER)
            os.chown(path, entry.pw_uid, entry.pw_gid)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class Node:
    """One postmaster: its data directory, port and socket directory."""

    def __init__(self, root: Path, name: str) -> None:
        self.name = name
        self.data = root / name
        self.port = free_port()
        self.socket_dir = root
        self.log = root / f"{name}.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def conf(self, **settings: str) -> None:
        lines = "".join(f"{k} = '{v}'\n" for k, v in settings.items())
        run(["sh", "-c", f"cat >> {self.data}/postgresql.auto.conf <<'EOF'\n{lines}EOF"])

    def start(self) -> None:
        run(
            [
                str(BINDIR / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-w",
                "-t",
                str(int(START_TIMEOUT)),
                "start",
            ]
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:  # pg_ctl -w returns at "ready"; a standby may still be connecting
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def pid(self) -> int | None:
        pidfile = self.data / "postmaster.pid"
        if not pidfile.exists():
            return None
        return int(pidfile.read_text().split()[0])

    def kill(self) -> None:
        """The primary dies: SIGKILL the postmaster; its backends notice and exit."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
        # Orphaned backends exit once they see the postmaster gone; wait for the
        # port to close so nothing answers there any more.
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            except OSError:
                return
            time.sleep(0.05)

    def stop(self) -> None:
        if self.pid() is None:
            return
        subprocess.run(
            _as_service_user(
                [str(BINDIR / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"]
            ),
            capture_output=True,
            check=False,
        )

    def promote(self) -> None:
        """Promote this standby; as pg_auto_failover's monitor does when the old
        primary is gone (state wait_primary), stop waiting for a synchronous
        standby that no longer exists, or every commit would hang."""
        run([str(BINDIR / "pg_ctl"), "-D", str(self.data), "-w", "promote"])
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute("alter system set synchronous_standby_names = ''")
            conn.execute("select pg_reload_conf()")


def init_primary(root: Path, *, synchronous: bool = False) -> Node:
    node = Node(root, "primary")
    run(
        [
            str(BINDIR / "initdb"),
            "-D",
            str(node.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ]
    )
    settings = {
        "listen_addresses": "127.0.0.1",
        "port": str(node.port),
        "unix_socket_directories": str(node.socket_dir),
        "wal_level": "replica",
        "max_wal_senders": "5",
        "hot_standby": "on",
        "max_connections": "100",
        "shared_buffers": "32MB",
        "fsync": "off",  # the tests kill processes, not the machine: the page cache survives
        "wal_keep_size": "256MB",
    }
    if synchronous:
        # An acknowledged commit is on the standby too: failover loses none.
        settings["synchronous_standby_names"] = "*"
        settings["synchronous_commit"] = "on"
    node.conf(**settings)
    node.start()
    return node


def init_standby(root: Path, primary: Node, name: str = "standby") -> Node:
    node = Node(root, name)
    run(
        [
            str(BINDIR / "pg_basebackup"),
            "-h",
            "127.0.0.1",
            "-p",
            str(primary.port),
            "-U",
            "postgres",
            "-D",
            str(node.data),
            "-R",
            "-X",
            "stream",
            "--no-sync",
        ]
    )
    node.conf(
        port=str(node.port),
        primary_conninfo=(
            f"host=127.0.0.1 port={primary.port} user=postgres application_name={name}"
        ),
    )
    node.start()
    return node


@contextmanager
def replicated_pair(*, synchronous: bool = False) -> Iterator[tuple[Node, Node]]:
    """A primary and a streaming standby on loopback, stopped afterwards."""
    require_binaries("initdb", "pg_ctl", "pg_basebackup")
    with service_tempdir("ab-pg-cluster-") as root:
        nodes: list[Node] = []
        try:
            primary = init_primary(root, synchronous=synchronous)
            nodes.append(primary)
            standby = init_standby(root, primary)
            nodes.append(standby)
            yield primary, standby
        finally:
            for node in nodes:
                node.stop()
