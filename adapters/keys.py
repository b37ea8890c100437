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
from enum import StrEnum

import psycopg

from ledger.errors import InvalidEntry


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    ACCOUNTANT = "accountant"
    AUDITOR = "auditor"
    ERP = "erp"


class Permission(StrEnum):
    READ = "read"
    POST_JOURNAL = "post_journal"  # manual journals, reversals
    MANAGE_ACCOUNTS = "manage_accounts"
    CLOSE_PERIODS = "close_periods"
    MANAGE_KEYS = "manage_keys"
    MOVE_CLOCK = "move_clock"
    BILLING_WRITE = "billing_write"
    EXPORT = "export"


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
    Role.AUDITOR: frozenset({Permission.READ, Permission.EXPORT}),
    Role.ERP: frozenset({Permission.READ, Permission.EXPORT}),
}


@dataclass(frozen=True, slots=True)
class Principal:
    book_id: uuid.UUID
    key_id: uuid.UUID
    role: Role

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
    book_id = book_of(key)
    if book_id is None:
        return None
    row = conn.execute(
        "select id, role from api_keys where book_id = %s and key_hash = %s and revoked_at is null",
        (book_id, _hash(key)),
    ).fetchone()
    if row is None:
        return None
    return Principal(book_id, row[0], Role(row[1]))
