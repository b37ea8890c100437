"""The rules a schema distributed by `book_id` on Citus must keep (docs/SCALING.md),
checked against the migrated catalog, so a new table that breaks them fails here:

- every table carries `book_id`, except `books` (distributed by its own `id`, which
  is every other table's `book_id`), the small reference tables and Alembic's own;
- every primary key, unique constraint and unique index includes `book_id`;
- a foreign key between distributed tables includes `book_id`; one without it may
  only point at a reference table.
"""

from __future__ import annotations

import psycopg

BOOK_TABLE = "books"
REFERENCE_TABLES = {"currencies"}  # replicated to every node
LOCAL_TABLES = {"alembic_version"}  # stays on the coordinator

_KEYS = """
select c.relname, coalesce(con.conname, i.indexrelid::regclass::text),
       exists (select 1 from unnest(i.indkey) k
               join pg_attribute a on a.attrelid = c.oid and a.attnum = k
               where a.attname = 'book_id')
from pg_index i
join pg_class c on c.oid = i.indrelid
join pg_namespace n on n.oid = c.relnamespace
left join pg_constraint con on con.conindid = i.indexrelid
where n.nspname = 'public' and c.relkind in ('r', 'p') and i.indisunique
"""

_FOREIGN_KEYS = """
select c.relname, con.conname, r.relname,
       exists (select 1 from unnest(con.conkey) k
               join pg_attribute a on a.attrelid = c.oid and a.attnum = k
               where a.attname = 'book_id')
from pg_constraint con
join pg_class c on c.oid = con.conrelid
join pg_class r on r.oid = con.confrelid
join pg_namespace n on n.oid = c.relnamespace
where n.nspname = 'public' and con.contype = 'f'
"""


def _tables(conn: psycopg.Connection) -> dict[str, bool]:
    rows = conn.execute(
        "select c.relname, exists (select 1 from pg_attribute a where a.attrelid = c.oid"
        " and a.attname = 'book_id' and not a.attisdropped)"
        " from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = 'public' and c.relkind in ('r', 'p') and not c.relispartition"
    ).fetchall()
    return dict(rows)


def test_every_table_but_the_stated_few_carries_book_id(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        tables = _tables(conn)
    without = {t for t, has in tables.items() if not has}
    assert without == {BOOK_TABLE} | REFERENCE_TABLES | LOCAL_TABLES
    assert len(tables) > 40  # the check saw the migrated schema, not an empty one


def test_every_unique_key_includes_book_id(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        keys = conn.execute(_KEYS).fetchall()
    exempt = {BOOK_TABLE} | REFERENCE_TABLES | LOCAL_TABLES
    broken = sorted(f"{t}.{k}" for t, k, has in keys if not has and t not in exempt)
    assert broken == []
    assert sum(1 for t, _, has in keys if has and t not in exempt) > 40


def test_foreign_keys_without_book_id_point_only_at_reference_tables(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        fks = conn.execute(_FOREIGN_KEYS).fetchall()
    broken = sorted(
        f"{t}.{name} → {target}"
        for t, name, target, has in fks
        if not has and target not in REFERENCE_TABLES
    )
    assert broken == []


def test_reference_tables_are_small(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        for table in REFERENCE_TABLES:
            row = conn.execute(f"select count(*) from {table}").fetchone()
            assert row is not None and row[0] < 1_000, table
