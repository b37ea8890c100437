"""The models and the migrations agree, and the migrations run both ways."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from psycopg import sql
from sqlalchemy import create_engine, pool

from adapters.database import sqlalchemy_url, with_database
from adapters.migrate import alembic_config, upgrade
from adapters.schema import metadata


def test_models_match_the_migrated_schema(database_url: str) -> None:
    engine = create_engine(sqlalchemy_url(database_url), poolclass=pool.NullPool)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()
    assert diff == []


@contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """The URL of a new empty database on the server, dropped afterwards."""
    name = f"ab_mig_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        yield with_database(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )


def test_downgrade_and_upgrade_again(server_url: str) -> None:
    with scratch_database(server_url) as url:
        upgrade(url)
        command.downgrade(alembic_config(url), "base")
        with psycopg.connect(url) as conn:
            tables = conn.execute(
                "select count(*) from pg_tables where schemaname = 'public'"
                " and tablename <> 'alembic_version'"
            ).fetchone()
            assert tables == (0,)
        upgrade(url)
        upgrade(url)  # a second upgrade is a no-op
        with psycopg.connect(url) as conn:
            row = conn.execute("select count(*) from currencies where code = 'KWD'").fetchone()
            assert row == (1,)


def test_seal_format_downgrade_refuses_while_format_2_seals_exist(server_url: str) -> None:
    """Without the column a format-2 seal would read as format 1 and fail verify:
    revision 0052's downgrade refuses until no such seal is left."""
    with scratch_database(server_url) as url:
        upgrade(url)
        with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
            conn.execute("set local session_replication_role = replica")  # no book needed
            conn.execute(
                "insert into seals (book_id, seq, entry_id, prev_hash, hash, format)"
                " values (%s, 1, %s, repeat('0', 64), repeat('f', 64), 2)",
                (uuid.uuid4(), uuid.uuid4()),
            )
        with pytest.raises(Exception, match="seals of format 2 exist"):
            command.downgrade(alembic_config(url), "0051")
        with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
            conn.execute("set local session_replication_role = replica")
            conn.execute("update seals set format = 1")
        command.downgrade(alembic_config(url), "0051")
        with psycopg.connect(url) as conn:
            column = conn.execute(
                "select count(*) from information_schema.columns"
                " where table_name = 'seals' and column_name = 'format'"
            ).fetchone()
            assert column == (0,)
