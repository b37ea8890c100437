"""What one request carries through the layers that do not see the request:
its id, which problem documents and logs name."""

from __future__ import annotations

from contextvars import ContextVar

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
