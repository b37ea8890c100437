"""Console sessions: a signed cookie naming the API key (never the key itself),
its book, a CSRF token and an expiry. The key is looked up again on every
request, so a revoked key ends its sessions."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import uuid
from dataclasses import dataclass

COOKIE = "ab_console"
CSRF_COOKIE = "ab_console_csrf"  # before sign-in: a double-submit token for the sign-in form
SESSION_SECONDS = 8 * 3600

# Several server processes share sessions only with ACTIVEBILLING_CONSOLE_SECRET set;
# without it each process signs with its own random secret (sign in again per process).
_SECRET = (os.environ.get("ACTIVEBILLING_CONSOLE_SECRET") or "").encode() or secrets.token_bytes(32)


@dataclass(frozen=True, slots=True)
class Session:
    book_id: uuid.UUID
    key_id: uuid.UUID
    csrf: str
    expires: int  # unix seconds


def new_token() -> str:
    return secrets.token_urlsafe(24)


def _mac(payload: bytes, secret: bytes) -> str:
    return hmac.new(secret, payload, hashlib.sha256).hexdigest()


def sign(session: Session, secret: bytes = _SECRET) -> str:
    body = json.dumps(
        [str(session.book_id), str(session.key_id), session.csrf, session.expires]
    ).encode()
    payload = base64.urlsafe_b64encode(body).rstrip(b"=")  # no quoting in the cookie
    return f"{payload.decode()}.{_mac(payload, secret)}"


def verify(token: str | None, now: float, secret: bytes = _SECRET) -> Session | None:
    """The session the cookie holds, or None if absent, forged or expired."""
    if not token or "." not in token:
        return None
    payload, _, mac = token.rpartition(".")
    if not hmac.compare_digest(mac, _mac(payload.encode(), secret)):
        return None
    try:
        book, key, csrf, expires = json.loads(base64.urlsafe_b64decode(payload.encode() + b"=="))
        session = Session(uuid.UUID(book), uuid.UUID(key), str(csrf), int(expires))
    except (ValueError, TypeError):
        return None
    return session if session.expires > now else None


def same_token(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())
