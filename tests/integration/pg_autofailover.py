"""A real pg_auto_failover formation for the failover test: a monitor, a primary
and a secondary, each run by its own `pg_autoctl run` keeper on a free loopback
port, their data and pg_autoctl's config/state/pid files in one temporary
directory (XDG_CONFIG_HOME, XDG_DATA_HOME and XDG_RUNTIME_DIR point there, so
nothing is left under the postgres user's home).

pg_autoctl, like PostgreSQL, refuses to run as root: as root its processes run
as the `postgres` OS user. Each keeper is a process group leader, so killing the
group takes the keeper, the postgres it supervises and every backend down at
once — the node is lost, as when its machine dies (killing postgres alone would
only make the keeper restart it). The test skips, saying why, without pg_autoctl
(Debian: `apt-get install postgresql-15-auto-failover`).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.integration.pg_cluster import (
    BINDIR,
    SERVICE_USER,
    free_port,
    require_binaries,
    service_tempdir,
)

PG_AUTOCTL = os.environ.get("PG_AUTOCTL", "pg_autoctl")
SETTLE_TIMEOUT = 300.0  # seconds a formation may take to reach a state (loaded CI machines)

# The monitor's defaults take ~30 s to notice a dead primary and 30 s more before
# promoting (primary_demote_timeout): shortened so the test fails over in ~10 s,
# with room left for a keeper or a health check slowed by a loaded machine (a node
# is failed over only when both its checks fail and its keeper stops reporting).
MONITOR_SETTINGS = {
    "pgautofailover.health_check_period": "1000",
    "pgautofailover.health_check_timeout": "2000",
    "pgautofailover.health_check_max_retries": "1",
    "pgautofailover.health_check_retry_delay": "500",
    "pgautofailover.node_considered_unhealthy_timeout": "5000",
    "pgautofailover.primary_demote_timeout": "5000",
}
# pg_autoctl sizes shared_buffers from the machine's memory (GBs); three servers
# share a small CI box. fsync off: the tests kill processes, not the machine.
NODE_SETTINGS = {"shared_buffers": "64MB", "fsync": "off"}


def pg_autoctl_path() -> str | None:
    return shutil.which(PG_AUTOCTL) or shutil.which(PG_AUTOCTL, path=str(BINDIR))


def require_pg_autoctl() -> str:
    require_binaries("initdb", "pg_ctl", "pg_basebackup")
    path = pg_autoctl_path()
    if path is None:
        pytest.skip(
            "pg_autoctl not installed (Debian: apt-get install postgresql-15-auto-failover);"
            " the scripted-promote failover test still runs"
        )
    return path


class Formation:
    """Keepers of one formation, all under `root`; see the module docstring."""

    def __init__(self, root: Path, pg_autoctl: str) -> None:
        self.root = root
        self.pg_autoctl = pg_autoctl
        self.keepers: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}
        self.monitor_port = 0

    # -- processes ---------------------------------------------------------

    def _env(self) -> dict[str, str]:
        return {
            "PATH": f"{BINDIR}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(self.root),
            "LANG": "C.UTF-8",
            "XDG_CONFIG_HOME": str(self.root / "config"),
            "XDG_DATA_HOME": str(self.root / "share"),
            "XDG_RUNTIME_DIR": str(self.root / "run"),
        }

    def _user(self) -> dict[str, Any]:
        if os.geteuid() != 0:
            return {}
        entry = pwd.getpwnam(SERVICE_USER)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def autoctl(self, *args: str) -> str:
        """Run one pg_autoctl command to completion; its stdout, or raise with its output."""
        done = subprocess.run(
            [self.pg_autoctl, *args],
            env=self._env(),
            cwd=self.root,
            capture_output=True,
            text=True,
            check=False,
            timeout=SETTLE_TIMEOUT,
            **self._user(),
        )
        if done.returncode != 0:
            raise RuntimeError(f"pg_autoctl {' '.join(args)} failed:\n{done.stderr[-4000:]}")
        return done.stdout

    def pgdata(self, name: str) -> Path:
        return self.root / name

    def configure(self, name: str, settings: dict[str, str]) -> None:
        """Settings pg_autoctl does not manage, in postgresql.auto.conf (read last)."""
        lines = "".join(f"{k} = '{v}'\n" for k, v in settings.items())
        with open(self.pgdata(name) / "postgresql.auto.conf", "a") as conf:
            conf.write(lines)

    def run(self, name: str) -> None:
        """Start `pg_autoctl run` for a created node, in its own process group."""
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - the keeper writes it
        self.keepers[name] = subprocess.Popen(
            [self.pg_autoctl, "run", "--pgdata", str(self.pgdata(name))],
            env=self._env(),
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **self._user(),
        )
        log.close()  # the child has its own descriptor

    def kill(self, name: str) -> None:
        """The node is lost: SIGKILL its keeper's process group (keeper, postgres, backends)."""
        keeper = self.keepers[name]
        with suppress(ProcessLookupError):
            os.killpg(keeper.pid, signal.SIGKILL)
        keeper.wait()
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while time.monotonic() < deadline:  # nothing answers on its port any more
            try:
                socket.create_connection(("127.0.0.1", self.ports[name]), timeout=0.2).close()
            except OSError:
                return
            time.sleep(0.05)

    def stop_all(self) -> None:
        """Stop every keeper (data nodes first, the monitor last), killing what lingers."""
        for name in reversed(list(self.keepers)):
            keeper = self.keepers[name]
            if keeper.poll() is None:
                subprocess.run(
                    [self.pg_autoctl, "stop", "--pgdata", str(self.pgdata(name)), "--immediate"],
                    env=self._env(),
                    cwd=self.root,
                    capture_output=True,
                    check=False,
                    timeout=60,
                    **self._user(),
                )
                with suppress(subprocess.TimeoutExpired):
                    keeper.wait(timeout=60)
            with suppress(ProcessLookupError):  # what is left of the group goes too
                os.killpg(keeper.pid, signal.SIGKILL)
            keeper.wait()

    def logs(self) -> str:
        tails = []
        for path in sorted(self.root.glob("*.log")):
            lines = path.read_text(errors="replace").splitlines()[-15:]
            tails.append(f"--- {path.name}\n" + "\n".join(lines))
        return "\n".join(tails)

    # -- the formation -----------------------------------------------------

    @property
    def monitor_url(self) -> str:
        return f"postgresql://autoctl_node@127.0.0.1:{self.monitor_port}/pg_auto_failover"

    def url(self, name: str, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.ports[name]}/{database}"

    def states(self) -> dict[str, tuple[str, str]]:
        """Node name -> (reported state, goal state), as the monitor sees them."""
        with psycopg.connect(self.monitor_url, connect_timeout=5) as conn:
            rows = conn.execute(
                "select nodename, reportedstate::text, goalstate::text from pgautofailover.node"
            ).fetchall()
        return {name: (reported, goal) for name, reported, goal in rows}

    def wait_for(self, wanted: dict[str, str]) -> None:
        """Until each named node has reached (reported = goal) the wanted state."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        states: dict[str, tuple[str, str]] = {}
        while True:
            try:
                states = self.states()
            except psycopg.OperationalError:
                states = {}
            if all(states.get(n) == (s, s) for n, s in wanted.items()):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"formation never reached {wanted}: {states}\n{self.logs()}")
            time.sleep(0.5)

    def wait_accepting(self, name: str) -> None:
        """Until the node's postgres accepts connections (its keeper starts it)."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while True:
            try:
                psycopg.connect(self.url(name), connect_timeout=5).close()
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    logs = self.logs()
                    raise AssertionError(f"{name} never accepted connections\n{logs}") from exc
                time.sleep(0.2)

    def create_monitor(self) -> None:
        self.monitor_port = free_port()
        self.autoctl(
            "create", "monitor",
            "--pgdata", str(self.pgdata("monitor")),
            "--pgport", str(self.monitor_port),
            "--hostname", "127.0.0.1",
            "--auth", "trust",
            "--no-ssl",
            "--pgctl", str(BINDIR / "pg_ctl"),
        )  # fmt: skip
        self.autoctl(
            "config", "set", "--pgdata", str(self.pgdata("monitor")),
            "postgresql.listen_addresses", "127.0.0.1",
        )  # fmt: skip
        self.configure("monitor", {"shared_buffers": "64MB", **MONITOR_SETTINGS})
        self.ports["monitor"] = self.monitor_port
        self.run("monitor")
        self.wait_accepting("monitor")

    def create_node(self, name: str, database: str) -> None:
        """Create a data node (pg_autoctl's create does initdb, or pg_basebackup from
        the primary for a second node, and registers with the monitor), then run it."""
        self.ports[name] = free_port()
        self.autoctl(
            "create", "postgres",
            "--pgdata", str(self.pgdata(name)),
            "--pgport", str(self.ports[name]),
            "--listen", "127.0.0.1",
            "--hostname", "127.0.0.1",
            "--name", name,
            "--dbname", database,
            "--auth", "trust",
            "--no-ssl",
            "--monitor", self.monitor_url,
            "--pgctl", str(BINDIR / "pg_ctl"),
        )  # fmt: skip
        self.configure(name, NODE_SETTINGS)
        self.run(name)

    def uri(self) -> str:
        """The multi-host URL the monitor hands to applications."""
        return self.autoctl(
            "show", "uri", "--pgdata", str(self.pgdata("monitor")), "--formation", "default"
        ).strip()


@contextmanager
def formation(database: str) -> Iterator[Formation]:
    """A monitor, a primary `node1` and a synchronous secondary `node2`, stopped afterwards."""
    pg_autoctl = require_pg_autoctl()
    with service_tempdir("ab-pg-auto-failover-") as root:
        f = Formation(root, pg_autoctl)
        try:
            f.create_monitor()
            f.create_node("node1", database)
            f.wait_for({"node1": "single"})
            f.wait_accepting("node1")
            # pg_autoctl's pg_basebackup asks for a spread checkpoint, which paces the
            # writes of initdb's and CREATE DATABASE's dirty buffers over minutes;
            # written now, the second node's base backup starts at once.
            with psycopg.connect(f.url("node1"), autocommit=True) as conn:
                conn.execute("checkpoint")
            f.create_node("node2", database)
            f.wait_for({"node1": "primary", "node2": "secondary"})
            f.wait_accepting("node1")
            f.wait_accepting("node2")
            yield f
        finally:
            f.stop_all()
