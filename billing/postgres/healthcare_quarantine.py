"""835 files refused whole, kept in quarantine.

ACCOUNTING.md: an 835 that does not balance is quarantined with a clear error.
The import that refused it rolled back and posted nothing; the caller then
keeps the file here, in a transaction of its own, with the refusal's code,
level and message (which names the amounts), so staff can see what was refused
and why. The same bytes are kept once: a resend changes nothing here.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

Row = dict[str, Any]
_COLUMNS = (
    "id, received_at, file_name, file_sha256, length(content) as size, code, level, reason, details"
)


def quarantine_remittance(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    file_name: str,
    content: bytes,
    file_sha256: str,
    code: str,
    reason: str,
    details: Mapping[str, Any],
) -> Row:
    """Keep a refused file (once per content); the row kept, new or earlier."""
    level = details.get("level")
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "insert into remittance_quarantine (book_id, id, file_name, file_sha256, content,"
            " code, level, reason, details) values (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " on conflict (book_id, file_sha256) do nothing",
            (
                book_id,
                uuid.uuid4(),
                file_name,
                file_sha256,
                content,
                code,
                str(level) if level is not None else None,
                reason,
                Jsonb({k: str(v) for k, v in details.items()}),
            ),
        )
        row = cur.execute(
            f"select {_COLUMNS} from remittance_quarantine where book_id = %s and file_sha256 = %s",
            (book_id, file_sha256),
        ).fetchone()
    assert row is not None
    return row


def quarantined(conn: psycopg.Connection, book_id: uuid.UUID, limit: int = 100) -> list[Row]:
    """The refused files, newest first (without their content)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"select {_COLUMNS} from remittance_quarantine where book_id = %s"
            " order by received_at desc, id limit %s",
            (book_id, limit),
        ).fetchall()


def quarantined_file(conn: psycopg.Connection, book_id: uuid.UUID, ref: str) -> bytes | None:
    try:
        key = uuid.UUID(ref)
    except ValueError:
        return None
    row = conn.execute(
        "select content from remittance_quarantine where book_id = %s and id = %s",
        (book_id, key),
    ).fetchone()
    return bytes(row[0]) if row else None
