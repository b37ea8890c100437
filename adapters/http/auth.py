"""Bearer-key authentication, with a short in-process cache of verified keys."""

from __future__ import annotations

import threading
import time
from typing import Any

from litestar import Request

from adapters.http.problems import ApiError
from adapters.keys import Principal, authenticate
from adapters.runtime import Runtime

CACHE_SECONDS = 10.0  # a revoked key stops working within this time


class KeyCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[Principal, float]] = {}

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
            conn.rollback()
        if found is None:
            raise ApiError(401, "unauthenticated", "the API key is unknown or revoked")
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[key] = (found, now + CACHE_SECONDS)
        return found


def bearer_key(request: Request[Any, Any, Any]) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(401, "unauthenticated", "send the API key as 'Authorization: Bearer <key>'")
    return key.strip()
