"""`activebilling backup` / `restore`: a demo book archived, restored into a fresh
database, and `verify` there passes with the same seal-chain head; a database that
holds a book is refused and left as it was."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from adapters.database import with_database
from tests.conftest import migrated_database
from tests.integration.test_cli import CLI

pytestmark = pytest.mark.slow


def _cli(url: str) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTIVEBILLING_")}
    env["DATABASE_URL"] = url

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(CLI), *args], env=env, capture_output=True, text=True, timeout=300, check=False
        )

    return run


@pytest.fixture
def empty_database(server_url: str) -> Iterator[str]:
    """A new database with nothing in it, not even the schema."""
    name = f"ab_restore_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        yield with_database(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )


def _verify(url: str) -> dict[str, Any]:
    done = _cli(url)("verify", "--format", "json")
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_a_restored_book_verifies_with_the_same_seal_head(
    server_url: str, empty_database: str, tmp_path: Path
) -> None:
    with migrated_database(server_url, "ab_backup") as source:
        made = _cli(source)("demo", "--customers", "3", "--months", "2", "--format", "json")
        assert made.returncode == 0, made.stderr
        before = _verify(source)
        archive = tmp_path / "book.dump"
        written = _cli(source)("backup", "--out", str(archive), "--format", "json")
        assert written.returncode == 0, written.stderr
        assert json.loads(written.stdout)["bytes"] == archive.stat().st_size > 0
    restored = _cli(empty_database)("restore", str(archive))
    assert restored.returncode == 0, restored.stderr
    after = _verify(empty_database)
    assert after["ok"] is True and after["seal_head"] == before["seal_head"]
    assert before["seal_head"]["sequence"] == before["entries"] > 100
    assert (after["entries"], after["postings"]) == (before["entries"], before["postings"])
    # Append-only again after the load: the restored ledger refuses an edit.
    with psycopg.connect(empty_database) as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("update postings set amount = amount + 1")

    again = _cli(empty_database)("restore", str(archive))
    assert again.returncode == 2 and "holds 1 book" in again.stderr
    assert _verify(empty_database)["seal_head"] == before["seal_head"]  # left as it was


def test_restore_replaces_a_migrated_schema_without_books(server_url: str, tmp_path: Path) -> None:
    with migrated_database(server_url, "ab_backup") as source:
        assert (
            _cli(source)("books", "create", "--name", "Solo", "--currency", "EUR").returncode == 0
        )
        archive = tmp_path / "solo.dump"
        assert _cli(source)("backup", "--out", str(archive)).returncode == 0
    with migrated_database(server_url, "ab_restore") as target:
        done = _cli(target)("restore", str(archive))
        assert done.returncode == 0, done.stderr
        with psycopg.connect(target) as conn:
            assert conn.execute("select name, base_currency from books").fetchall() == [
                ("Solo", "EUR")
            ]


def test_bad_arguments_are_clear_errors(empty_database: str, tmp_path: Path) -> None:
    missing = _cli(empty_database)("restore", str(tmp_path / "nothing.dump"))
    assert missing.returncode == 2 and "is not a file" in missing.stderr
    garbage = tmp_path / "garbage.dump"
    garbage.write_bytes(b"not an archive")
    broken = _cli(empty_database)("restore", str(garbage))
    assert broken.returncode == 2 and "pg_restore failed" in broken.stderr
    into_dir = _cli(empty_database)("backup", "--out", str(tmp_path))
    assert into_dir.returncode == 2 and "is a directory" in into_dir.stderr
