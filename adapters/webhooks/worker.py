"""The delivery worker: sends queued webhook deliveries after their events committed.

One delivery at a time, in its own transaction: the row is claimed with
`FOR UPDATE SKIP LOCKED` (two servers never send the same delivery at once),
sent, its attempt logged and its state set, then committed. A worker killed
mid-send commits nothing: the delivery stays pending and is sent again (at
least once; receivers de-duplicate by the event id). A delivery waits while
an older delivery of the same object to the same endpoint is pending, so each
endpoint sees an object's events in order. Retry delays and the disabling
rule are billing/webhooks.py's; "now" is the injected clock.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from adapters.polling import PollingWorker
from adapters.webhooks.store import Resolve, refused_address, resolve_host
from billing.postgres.events import Event
from billing.postgres.settings import read_settings
from billing.webhooks import (
    DEFAULT_RETRY_SECONDS,
    DISABLE_AFTER,
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    InvalidWebhook,
    next_delay,
    signature_header,
)

log = logging.getLogger("activebilling.webhooks")

TIMEOUT_SECONDS = 10.0

_CLAIM = """
select d.book_id, d.id, d.endpoint_id, d.attempts, w.url, w.secret, w.allow_private_network,
       e.id as event_id, e.sequence, e.type, e.object_id, e.created_at, e.data
  from webhook_deliveries d
  join webhook_endpoints w on w.book_id = d.book_id and w.id = d.endpoint_id
  join events e on e.book_id = d.book_id and e.id = d.event_id
 where d.status = 'pending' and d.next_attempt_at <= %(now)s and w.status = 'enabled'
   and (%(books)s::uuid[] is null or d.book_id = any (%(books)s))
   and not exists (
         select 1 from webhook_deliveries p
          where p.book_id = d.book_id and p.endpoint_id = d.endpoint_id
            and p.object_id = d.object_id and p.status = 'pending'
            and p.event_sequence < d.event_sequence)
 order by d.next_attempt_at, d.event_sequence
 limit 1
 for update of d skip locked
"""


def utc_now() -> datetime:
    return datetime.now(UTC)


class WebhookWorker(PollingWorker):
    """Sends due deliveries; `deliver_one` is one step, `start` runs it in a thread."""

    what = "webhook deliveries"
    join_seconds = TIMEOUT_SECONDS + 5

    def __init__(
        self,
        connection: Callable[[], AbstractContextManager[psycopg.Connection]],
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], datetime] = utc_now,
        timeout: float = TIMEOUT_SECONDS,
        resolve: Resolve = resolve_host,
        books: Sequence[uuid.UUID] | None = None,
    ) -> None:
        self.connection = connection
        self.books = None if books is None else list(books)  # None: every book
        self.clock = clock
        self.resolve = resolve
        self.client = httpx.Client(transport=transport, timeout=timeout, follow_redirects=False)
        super().__init__()

    def deliver_one(self) -> bool:
        """Send one due delivery; False when none is due."""
        now = self.clock()
        with self.connection() as conn:
            with conn.cursor(row_factory=dict_row) as cur:
                row = cur.execute(_CLAIM, {"now": now, "books": self.books}).fetchone()
            if row is None:
                conn.rollback()
                return False
            code, error = self._send(row, now)
            self._record(conn, row, now, code, error)
            conn.commit()
        return True

    def deliver_due(self, limit: int = 10_000) -> int:
        """Send every due delivery (up to `limit`); returns how many were attempted."""
        sent = 0
        while sent < limit and not self.stopping() and self.deliver_one():
            sent += 1
        return sent

    def _send(self, row: dict[str, Any], now: datetime) -> tuple[int | None, str | None]:
        event = Event(
            id=row["event_id"],
            sequence=row["sequence"],
            type=row["type"],
            object_id=row["object_id"],
            created_at=row["created_at"],
            data=row["data"],
        )
        body = json.dumps(event.json(), separators=(",", ":")).encode()
        stamp = int(now.timestamp())
        try:  # checked again at send time: the name may resolve elsewhere now
            refused = refused_address(row["url"], row["allow_private_network"], self.resolve)
        except InvalidWebhook as exc:
            refused = exc.message
        if refused is not None:
            return None, refused
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "ActiveBilling-Webhooks/1",
            SIGNATURE_HEADER: signature_header(row["secret"], stamp, body),
            EVENT_ID_HEADER: event.id,
        }
        try:
            response = self.client.post(row["url"], content=body, headers=headers)
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:500]
        if 200 <= response.status_code < 300:
            return response.status_code, None
        return response.status_code, f"the endpoint answered {response.status_code}"

    def _record(
        self,
        conn: psycopg.Connection,
        row: dict[str, Any],
        now: datetime,
        code: int | None,
        error: str | None,
    ) -> None:
        ok = error is None
        attempts = row["attempts"] + 1
        conn.execute(
            "insert into webhook_attempts (book_id, delivery_id, endpoint_id, event_id,"
            " attempted_at, status, response_code, error) values (%s, %s, %s, %s, %s, %s, %s, %s)",
            (
                row["book_id"],
                row["id"],
                row["endpoint_id"],
                row["event_id"],
                now,
                "succeeded" if ok else "failed",
                code,
                error,
            ),
        )
        settings = read_settings(conn, row["book_id"])
        if ok:
            status, next_at = "succeeded", now
        else:
            schedule = settings.get("webhook_retry_seconds") or DEFAULT_RETRY_SECONDS
            delay = next_delay(attempts, schedule)
            status = "pending" if delay is not None else "failed"
            next_at = now + timedelta(seconds=delay or 0)
        conn.execute(
            "update webhook_deliveries set status = %s, attempts = %s, next_attempt_at = %s,"
            " finished_at = case when %s = 'pending' then null else %s end"
            " where book_id = %s and id = %s",
            (status, attempts, next_at, status, now, row["book_id"], row["id"]),
        )
        if ok:
            conn.execute(
                "update webhook_endpoints set consecutive_failures = 0"
                " where book_id = %s and id = %s",
                (row["book_id"], row["endpoint_id"]),
            )
            return
        limit = int(settings.get("webhook_disable_after") or DISABLE_AFTER)
        conn.execute(
            "update webhook_endpoints set consecutive_failures = consecutive_failures + 1,"
            " status = case when consecutive_failures + 1 >= %(limit)s then 'disabled'"
            "   else status end,"
            " disabled_reason = case when consecutive_failures + 1 >= %(limit)s"
            "   then %(reason)s else disabled_reason end"
            " where book_id = %(book)s and id = %(id)s and status = 'enabled'",
            {
                "limit": limit,
                "reason": f"{limit} consecutive failed deliveries; the last: {error}",
                "book": row["book_id"],
                "id": row["endpoint_id"],
            },
        )

    def run_round(self) -> object:
        return self.deliver_due()

    def stop(self) -> None:
        super().stop()
        self.client.close()
