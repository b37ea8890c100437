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

from ledger.errors import Conflict, InvalidEntry, NotFound


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
    # Seconds the key has left when it was read (a rotated key in its grace period):
    # a cache must not keep it past them.
    seconds_left: float | None = None

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


# A key works until its revoked_at: none, or one still ahead (a rotated key's grace).
_ACTIVE = "(k.revoked_at is null or k.revoked_at > now())"


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
        " b.settings->'rate_limit', extract(epoch from k.revoked_at - now())"
        " from api_keys k join books b on b.id = k.book_id"
        f" where k.book_id = %s and k.key_hash = %s and {_ACTIVE}",
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
    left = None if row[4] is None else float(row[4])
    return Principal(book_id, row[0], Role(row[1]), _rate_limit(row[3]), left)


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
    # A key in a rotation's grace period is cut off now; one already refused keeps
    # its first revocation time.
    row = conn.execute(
        "update api_keys set revoked_at = least(coalesce(revoked_at, now()), now())"
        f" where book_id = %s and id = %s returning {_KEY_COLUMNS}",
        (book_id, key_id),
    ).fetchone()
    if row is None:
        raise NotFound(f"API key {key_ref!r} does not exist in this book")
    return KeyInfo(row[0], Role(row[1]), row[2], row[3], row[4], row[5])


class KeyNotActive(Conflict):
    """A revoked (or already rotated) key cannot be rotated: 409."""

    code = "key_revoked"


MAX_GRACE_SECONDS = 30 * 86_400  # Stripe lets a rolled key live up to 7 days; we allow 30


@dataclass(frozen=True, slots=True)
class Rotation:
    old: KeyInfo
    new: KeyInfo
    api_key: str  # the new key, shown once

    def json(self) -> dict[str, Any]:
        return {**self.new.json(), "api_key": self.api_key, "rotated_from": self.old.json()}


def rotate_key(
    conn: psycopg.Connection, book_id: uuid.UUID, key_ref: str, grace_seconds: int = 0
) -> Rotation:
    """A new key with the old one's role and label; the old one is refused from now,
    or after `grace_seconds` (Stripe's "roll key" with an expiry), so that the callers
    can be switched over. A key already revoked, or already rotated, is refused (409):
    rotating it again would hand out a second successor."""
    if not 0 <= grace_seconds <= MAX_GRACE_SECONDS:
        raise InvalidEntry(f"grace_seconds must be between 0 and {MAX_GRACE_SECONDS}")
    try:
        key_id = uuid.UUID(key_ref)
    except (ValueError, TypeError):
        raise NotFound(f"API key {key_ref!r} does not exist in this book") from None
    row = conn.execute(
        f"select {_KEY_COLUMNS} from api_keys where book_id = %s and id = %s for update",
        (book_id, key_id),
    ).fetchone()
    if row is None:
        raise NotFound(f"API key {key_ref!r} does not exist in this book")
    if row[5] is not None:
        raise KeyNotActive(
            f"API key {key_ref} was revoked (or rotated) at {row[5].isoformat()}:"
            " create a new key instead"
        )
    role, label = Role(row[1]), row[2]
    new_id, secret = create_key(conn, book_id, role, label)
    old = conn.execute(
        "update api_keys set revoked_at = now() + make_interval(secs => %s)"
        f" where book_id = %s and id = %s returning {_KEY_COLUMNS}",
        (grace_seconds, book_id, key_id),
    ).fetchone()
    new = conn.execute(
        f"select {_KEY_COLUMNS} from api_keys where book_id = %s and id = %s", (book_id, new_id)
    ).fetchone()
    assert old is not None and new is not None
    return Rotation(_info(old), _info(new), secret)


def _info(row: tuple[Any, ...]) -> KeyInfo:
    return KeyInfo(row[0], Role(row[1]), row[2], row[3], row[4], row[5])


def principal_by_id(
    conn: psycopg.Connection, book_id: uuid.UUID, key_id: uuid.UUID
) -> Principal | None:
    """A key's principal by its id (a console session names the key, not its secret);
    None once it is revoked."""
    row = conn.execute(
        f"select role from api_keys k where book_id = %s and id = %s and {_ACTIVE}",
        (book_id, key_id),
    ).fetchone()
    return None if row is None else Principal(book_id, key_id, Role(row[0]))
