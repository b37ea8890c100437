"""API keys: shown once, stored as a SHA-256 hash, scoped to one book, with a role.

A key reads `ab_<book id hex>_<secret>`: the book id lets the lookup use the
(book_id, key_hash) index, so even authentication never scans across books.
Keys carry 192 random bits, so a fast hash is enough (no password stretching).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import psycopg

from ledger.errors import InvalidEntry, NotFound


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    ACCOUNTANT = "accountant"
    AUDITOR = "auditor"
    ERP = "erp"
    BILLING_STAFF = "billing_staff"  # healthcare front office: may see PHI


class Permission(StrEnum):
    READ = "read"
    POST_JOURNAL = "post_journal"  # manual journals, reversals
    MANAGE_ACCOUNTS = "manage_accounts"
    CLOSE_PERIODS = "close_periods"
    MANAGE_KEYS = "manage_keys"
    MOVE_CLOCK = "move_clock"
    BILLING_WRITE = "billing_write"
    EXPORT = "export"
    MANAGE_BOOK = "manage_book"  # book settings (admin only)
    SEE_PHI = "see_phi"  # patient names, DOB, member ids, diagnoses (HIPAA)
    READ_AUDIT = "read_audit"  # the audit log of who changed what


GRANTS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.OPERATOR: frozenset({Permission.READ, Permission.BILLING_WRITE, Permission.MOVE_CLOCK}),
    Role.ACCOUNTANT: frozenset(
        {
            Permission.READ,
            Permission.POST_JOURNAL,
            Permission.MANAGE_ACCOUNTS,
            Permission.CLOSE_PERIODS,
            Permission.EXPORT,
        }
    ),
    Role.AUDITOR: frozenset({Permission.READ, Permission.EXPORT, Permission.READ_AUDIT}),
    Role.ERP: frozenset({Permission.READ, Permission.EXPORT}),
    Role.BILLING_STAFF: frozenset({Permission.READ, Permission.BILLING_WRITE, Permission.SEE_PHI}),
}


@dataclass(frozen=True, slots=True)
class Principal:
    book_id: uuid.UUID
    key_id: uuid.UUID
    role: Role
    # The book's `rate_limit` setting as (requests per second, burst), read with the key.
    rate_limit: tuple[float, float] | None = None

    def may(self, permission: Permission) -> bool:
        return permission in GRANTS[self.role]


def parse_role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise InvalidEntry(
            f"unknown role {value!r}: use one of {', '.join(r.value for r in Role)}"
        ) from None


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(
    conn: psycopg.Connection, book_id: uuid.UUID, role: Role, label: str = ""
) -> tuple[uuid.UUID, str]:
    """A new key for the book; the plaintext is returned once and never stored."""
    key = f"ab_{book_id.hex}_{secrets.token_urlsafe(24)}"
    key_id = uuid.uuid4()
    conn.execute(
        "insert into api_keys (book_id, id, key_hash, role, label) values (%s, %s, %s, %s, %s)",
        (book_id, key_id, _hash(key), role.value, label),
    )
    return key_id, key


def book_of(key: str) -> uuid.UUID | None:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != "ab":
        return None
    try:
        return uuid.UUID(hex=parts[1])
    except ValueError:
        return None


def authenticate(conn: psycopg.Connection, key: str) -> Principal | None:
    """The key's principal, or None if unknown or revoked. Stamps `last_used_at`, at
    most once a minute per key so that busy keys do not turn reads into writes; the
    caller commits."""
    book_id = book_of(key)
    if book_id is None:
        return None
    row = conn.execute(
        "select k.id, k.role,"
        " k.last_used_at is null or k.last_used_at < now() - interval '1 minute',"
        " b.settings->'rate_limit'"
        " from api_keys k join books b on b.id = k.book_id"
        " where k.book_id = %s and k.key_hash = %s and k.revoked_at is null",
        (book_id, _hash(key)),
    ).fetchone()
    if row is None:
        return None
    if row[2]:
        # Checked again here: of concurrent first requests, one writes, the rest skip.
        conn.execute(
            "update api_keys set last_used_at = now() where book_id = %s and id = %s"
            " and (last_used_at is null or last_used_at < now() - interval '1 minute')",
            (book_id, row[0]),
        )
    return Principal(book_id, row[0], Role(row[1]), _rate_limit(row[3]))


def _rate_limit(setting: object) -> tuple[float, float] | None:
    """(rate, burst) of a book's `rate_limit` setting; burst defaults to one second's worth."""
    if not isinstance(setting, dict) or "requests_per_second" not in setting:
        return None
    rate = float(setting["requests_per_second"])
    if rate <= 0:
        return None
    return rate, float(setting.get("burst") or max(1.0, rate))


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What may be shown of a key: never the key or its hash."""

    key_id: uuid.UUID
    role: Role
    label: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    def json(self) -> dict[str, Any]:
        def at(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "key_id": str(self.key_id),
            "role": self.role.value,
            "label": self.label,
            "created_at": self.created_at.isoformat(),
            "last_used_at": at(self.last_used_at),
            "revoked_at": at(self.revoked_at),
        }


_KEY_COLUMNS = "id, role, label, created_at, last_used_at, revoked_at"


def list_keys(conn: psycopg.Connection, book_id: uuid.UUID) -> list[KeyInfo]:
    rows = conn.execute(
        f"select {_KEY_COLUMNS} from api_keys where book_id = %s order by created_at, id",
        (book_id,),
    ).fetchall()
    return [KeyInfo(r[0], Role(r[1]), r[2], r[3], r[4], r[5]) for r in rows]


def revoke_key(conn: psycopg.Connection, book_id: uuid.UUID, key_ref: str) -> KeyInfo:
    """Revoke the key (idempotent: a revoked key keeps its first revocation time)."""
    try:
        key_id = uuid.UUID(key_ref)
    except (ValueError, TypeError):
        raise NotFound(f"API key {key_ref!r} does not exist in this book") from None
    row = conn.execute(
        "update api_keys set revoked_at = coalesce(revoked_at, now())"
        f" where book_id = %s and id = %s returning {_KEY_COLUMNS}",
        (book_id, key_id),
    ).fetchone()
    if row is None:
        raise NotFound(f"API key {key_ref!r} does not exist in this book")
    return KeyInfo(row[0], Role(row[1]), row[2], row[3], row[4], row[5])


def principal_by_id(
    conn: psycopg.Connection, book_id: uuid.UUID, key_id: uuid.UUID
) -> Principal | None:
    """A key's principal by its id (a console session names the key, not its secret);
    None once it is revoked."""
    row = conn.execute(
        "select role from api_keys where book_id = %s and id = %s and revoked_at is null",
        (book_id, key_id),
    ).fetchone()
    return None if row is None else Principal(book_id, key_id, Role(row[0]))


def audit_log(
    conn: psycopg.Connection, book_id: uuid.UUID, *, before: int | None, limit: int
) -> list[dict[str, Any]]:
    """The book's audit rows, newest first, before the row `before` (a cursor)."""
    rows = conn.execute(
        "select id, at, key_id, role, method, path, status, idempotency_key, request_id,"
        " created from audit_log where book_id = %s and (%s::bigint is null or id < %s)"
        " order by id desc limit %s",
        (book_id, before, before, limit),
    ).fetchall()
    names = (
        "id",
        "at",
        "key_id",
        "role",
        "method",
        "path",
        "status",
        "idempotency_key",
        "request_id",
        "created",
    )
    return [dict(zip(names, row, strict=True)) for row in rows]
