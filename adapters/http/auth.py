"""Bearer-key authentication, with a short in-process cache of verified keys."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from litestar import Request

from adapters.http.problems import ApiError
from adapters.keys import Principal, authenticate
from adapters.runtime import Runtime

# A key revoked in this process stops working at once (the cache forgets it); in
# other worker processes it stops within this time.
CACHE_SECONDS = 10.0


class KeyCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[Principal, float]] = {}
        # Keys revoked by this process: a lookup that read the key before the revocation
        # committed must not put it back in the cache.
        self._revoked: set[uuid.UUID] = set()

    def cached(self, key: str) -> Principal | None:
        with self._lock:
            cached = self._entries.get(key)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        return None

    def principal(self, runtime: Runtime, key: str) -> Principal:
        now = time.monotonic()
        found_cached = self.cached(key)
        if found_cached is not None:
            return found_cached
        with runtime.connection() as conn:
            found = authenticate(conn, key)
            conn.commit()  # the last_used_at stamp
        with self._lock:
            if found is None or found.key_id in self._revoked:
                raise ApiError(401, "unauthenticated", "the API key is unknown or revoked")
            if len(self._entries) > 10_000:
                self._entries.clear()
            keep = CACHE_SECONDS
            if found.seconds_left is not None:  # a rotated key: not a moment past its grace
                keep = min(keep, found.seconds_left)
            self._entries[key] = (found, now + keep)
        return found

    def forget(self, key_id: uuid.UUID) -> None:
        """Drop a (revoked) key from the cache: its next request is refused."""
        with self._lock:
            self._revoked.add(key_id)
            for key in [k for k, (p, _) in self._entries.items() if p.key_id == key_id]:
                del self._entries[key]


def bearer_key(request: Request[Any, Any, Any]) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(401, "unauthenticated", "send the API key as 'Authorization: Bearer <key>'")
    return key.strip()
