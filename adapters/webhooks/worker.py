"""The delivery worker: sends queued webhook deliveries after their events committed.

A delivery is leased, never locked, while it is sent (migration 0043). One
short transaction claims a batch per endpoint (`FOR UPDATE SKIP LOCKED`, then
`status = 'sending'` with a lease: this backend's pid and start, `lease_until`,
a token) and commits; the batches are sent outside any transaction, each by a
thread of a small pool, one endpoint per thread, so a slow or hanging receiver
holds one thread and no database transaction or lock; each batch's results are
recorded in one short transaction. A delivery whose lease ran out, or whose
claiming backend is gone (the worker died mid-send), is claimable again and is
sent again with the same event id and body (at least once; receivers
de-duplicate by the event id); the token keeps a late result off a re-claimed row.

Order: a delivery waits while an older delivery (by event sequence) of the same
object to the same endpoint is open and not claimable now (a retry not yet due,
or sent by another worker), and a batch is sent in event sequence order, so each
endpoint sees an object's events in order. A failure ends its batch: the rest go
back to pending unsent, as the one-at-a-time worker would have sent them later.
Retry delays and the disabling rule are billing/webhooks.py's; "now" is the
injected clock (leases use the database's clock, shared by every server).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from adapters.leases import CLEARED, OURS, claimable, lease, release
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
SENDERS = 4  # endpoints sent to at once by one worker
BATCH = 20  # deliveries leased to one endpoint per claim, sent in order
# Batches in flight to one endpoint: the next is sent while the last is recorded;
# a hanging endpoint holds no more senders than this.
PER_ENDPOINT = 2
LEASE_MARGIN_SECONDS = 30.0

_CLAIMABLE = claimable("{d}")

# The endpoints with the oldest due deliveries (from the first rows due only:
# which endpoint goes first is fairness, not correctness). Two parts, so each
# walks its own partial index: pending by due time, and the few rows in flight.
_ENDPOINTS = f"""
select d.book_id, d.endpoint_id
  from ((select d.book_id, d.endpoint_id, d.next_attempt_at
           from webhook_deliveries d
          where d.status = 'pending' and d.next_attempt_at <= %(now)s
            and (%(books)s::uuid[] is null or d.book_id = any (%(books)s))
            and not (d.endpoint_id = any (%(busy)s))
          order by d.next_attempt_at
          limit 1000)
        union all
        (select d.book_id, d.endpoint_id, d.next_attempt_at
           from webhook_deliveries d
          where d.status = 'sending' and {_CLAIMABLE.format(d="d")}
            and (%(books)s::uuid[] is null or d.book_id = any (%(books)s))
            and not (d.endpoint_id = any (%(busy)s))
          limit 1000)) d
  join webhook_endpoints w on w.book_id = d.book_id and w.id = d.endpoint_id
 where w.status = 'enabled'
 group by d.book_id, d.endpoint_id
 order by min(d.next_attempt_at)
 limit %(endpoints)s
"""

# An endpoint's next batch, in event sequence order: claimable rows not behind
# an older open delivery of their object that is not claimable (an older one that
# is claimable comes earlier in the same batch).
_BATCH = f"""
select d.id
  from webhook_deliveries d
 where d.book_id = %(book)s and d.endpoint_id = %(endpoint)s
   and d.status in ('pending', 'sending') and {_CLAIMABLE.format(d="d")}
   and not exists (
         select 1 from webhook_deliveries p
          where p.book_id = d.book_id and p.endpoint_id = d.endpoint_id
            and p.object_id = d.object_id and p.status in ('pending', 'sending')
            and p.event_sequence < d.event_sequence
            and not {_CLAIMABLE.format(d="p")})
 order by d.event_sequence
 limit %(batch)s
"""

_DETAILS = """
select d.book_id, d.id, d.endpoint_id, d.attempts, d.lease_token, w.url, w.secret,
       w.allow_private_network, e.id as event_id, e.sequence, e.type, e.object_id,
       e.created_at, e.data
  from webhook_deliveries d
  join webhook_endpoints w on w.book_id = d.book_id and w.id = d.endpoint_id
  join events e on e.book_id = d.book_id and e.id = d.event_id
 where d.book_id = %(book)s and d.id = any (%(ids)s)
 order by d.event_sequence, d.id
"""

# A result counts only while the lease is ours (else another worker re-claimed it).
_RECORD = f"""
update webhook_deliveries d
   set status = v.status, attempts = v.attempts, next_attempt_at = v.next_at,
       finished_at = v.finished, {CLEARED}
  from unnest(%s::uuid[], %s::text[], %s::int[], %s::timestamptz[], %s::timestamptz[],
              %s::uuid[]) as v(id, status, attempts, next_at, finished, token)
 where d.book_id = %s and d.id = v.id and {OURS.format(d="d", token="v.token")}
returning d.id
"""

Result = tuple[datetime, int | None, str | None]  # attempted at, response code, error


@dataclass
class Batch:
    book_id: uuid.UUID
    endpoint_id: uuid.UUID
    rows: list[dict[str, Any]]


def utc_now() -> datetime:
    return datetime.now(UTC)


class WebhookWorker(PollingWorker):
    """Sends due deliveries; `deliver_due` drains them, `start` runs it in a thread."""

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
        senders: int = SENDERS,
        batch: int = BATCH,
        per_endpoint: int = PER_ENDPOINT,
        poll_seconds: float = 0.5,
    ) -> None:
        self.connection = connection
        self.books = None if books is None else list(books)  # None: every book
        self.clock = clock
        self.resolve = resolve
        self.timeout = timeout
        self.senders = senders
        self.batch = batch
        self.per_endpoint = per_endpoint
        self.poll_seconds = poll_seconds  # how often a free sender looks for work meanwhile
        self.client = httpx.Client(
            transport=transport,
            timeout=timeout,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=senders, max_keepalive_connections=senders),
        )
        self.pool = ThreadPoolExecutor(senders, thread_name_prefix="webhook-sender")
        super().__init__()

    def deliver_due(self, limit: int = 10_000) -> int:
        """Send every due delivery (up to `limit` claimed); returns how many were attempted.
        Returns once nothing is due and nothing is in flight."""
        attempted = claimed = 0
        running: dict[Future[list[Result]], Batch] = {}
        try:
            while True:
                found = False
                if len(running) < self.senders and claimed < limit and not self.stopping():
                    per = Counter(b.endpoint_id for b in running.values())
                    busy = [e for e, n in per.items() if n >= self.per_endpoint]
                    for batch in self._claim(self.senders - len(running), limit - claimed, busy):
                        running[self.pool.submit(self._send_batch, batch)] = batch
                        claimed += len(batch.rows)
                        found = True
                if not running:
                    return attempted
                if found and len(running) < self.senders:
                    continue  # an endpoint's next batch is claimed while this one is sent
                # A free sender looks again now and then (new work for other endpoints
                # while one hangs); a full pool waits for a batch to finish.
                wait_s = self.poll_seconds if len(running) < self.senders else None
                done, _ = wait(running, timeout=wait_s, return_when=FIRST_COMPLETED)
                for future in done:
                    batch = running.pop(future)
                    attempted += self._record(batch, future.result())
        finally:
            for future in list(running):  # stopping or failing: record what was sent
                batch = running.pop(future)
                try:
                    self._record(batch, future.result())
                except Exception:
                    log.exception("webhooks: recording a batch failed; its lease will lapse")

    def deliver_one(self) -> bool:
        """Send one due delivery; False when none is due."""
        return self.deliver_due(limit=1) == 1

    def _claim(self, endpoints: int, limit: int, busy: list[uuid.UUID]) -> list[Batch]:
        """Lease up to `limit` deliveries in batches to up to `endpoints` endpoints, in one
        committed transaction. A row another worker holds locked ends its batch there
        (what follows may be the same object's next event)."""
        now = self.clock()
        batches: list[Batch] = []
        with self.connection() as conn:
            with conn.cursor(row_factory=dict_row) as cur:
                targets = cur.execute(
                    _ENDPOINTS,
                    {"now": now, "books": self.books, "busy": busy, "endpoints": endpoints},
                ).fetchall()
                for target in targets:
                    size = min(self.batch, limit - sum(len(b.rows) for b in batches))
                    if size <= 0:
                        break
                    key = {"now": now, "book": target["book_id"]}
                    ids = [
                        r["id"]
                        for r in cur.execute(
                            _BATCH,
                            {**key, "endpoint": target["endpoint_id"], "batch": size},
                            prepare=False,  # a generic plan sorts every open row first
                        )
                    ]
                    seconds = len(ids) * self.timeout + LEASE_MARGIN_SECONDS
                    table, book = "webhook_deliveries", target["book_id"]
                    prefix, _ = lease(conn, table, book, ids, seconds, now=now, in_order=True)
                    if not prefix:
                        continue
                    rows = cur.execute(_DETAILS, {"book": book, "ids": prefix}).fetchall()
                    batches.append(Batch(target["book_id"], target["endpoint_id"], rows))
            conn.commit()
        return batches

    def _send_batch(self, batch: Batch) -> list[Result]:
        """Send in order until the first failure (the rest stay unsent); no database here."""
        results: list[Result] = []
        for row in batch.rows:
            now = self.clock()
            try:
                code, error = self._send(row, now)
            except Exception as exc:  # a bug must not strand the batch's leases
                code, error = None, f"{type(exc).__name__}: {exc}"[:500]
            results.append((now, code, error))
            if error is not None or self.stopping():
                break
        return results

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

    def _record(self, batch: Batch, results: list[Result]) -> int:
        """Log the batch's attempts, set its deliveries' states and its endpoint's
        failure count, in one transaction of a few statements; unsent rows go back
        to pending. Only rows whose lease is still ours change state (else another
        worker re-claimed them: the attempt is logged, nothing else)."""
        sent = batch.rows[: len(results)]
        with self.connection() as conn:
            settings = read_settings(conn, batch.book_id)
            schedule = settings.get("webhook_retry_seconds") or DEFAULT_RETRY_SECONDS
            states = []
            for row, (now, _, error) in zip(sent, results, strict=True):
                attempts = row["attempts"] + 1
                if error is None:
                    status, next_at = "succeeded", now
                else:
                    delay = next_delay(attempts, schedule)
                    status = "pending" if delay is not None else "failed"
                    next_at = now + timedelta(seconds=delay or 0)
                finished = None if status == "pending" else now
                states.append((row["id"], status, attempts, next_at, finished, row["lease_token"]))
            with conn.cursor() as cur:
                cur.executemany(
                    "insert into webhook_attempts (book_id, delivery_id, endpoint_id, event_id,"
                    " attempted_at, status, response_code, error)"
                    " values (%s, %s, %s, %s, %s, %s, %s, %s)",
                    [
                        (batch.book_id, row["id"], batch.endpoint_id, row["event_id"], now,
                         "succeeded" if error is None else "failed", code, error)
                        for row, (now, code, error) in zip(sent, results, strict=True)
                    ],
                )  # fmt: skip
            columns = [list(c) for c in zip(*states, strict=True)] or [[]] * 6
            ours = {r[0] for r in conn.execute(_RECORD, (*columns, batch.book_id))}
            if len(batch.rows) > len(results):
                unsent = batch.rows[len(results) :]
                ids, tokens = [r["id"] for r in unsent], [r["lease_token"] for r in unsent]
                release(conn, "webhook_deliveries", batch.book_id, ids, tokens)
            counted = [res for row, res in zip(sent, results, strict=True) if row["id"] in ours]
            if any(error is None for _, _, error in counted):
                conn.execute(
                    "update webhook_endpoints set consecutive_failures = 0"
                    " where book_id = %s and id = %s",
                    (batch.book_id, batch.endpoint_id),
                )
            if counted and counted[-1][2] is not None:  # a failure ends a batch: the last
                self._count_failure(conn, settings, batch, counted[-1][2])
            conn.commit()
        return len(results)

    def _count_failure(
        self, conn: psycopg.Connection, settings: dict[str, Any], batch: Batch, error: str
    ) -> None:
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
                "book": batch.book_id,
                "id": batch.endpoint_id,
            },
        )

    def run_round(self) -> object:
        return self.deliver_due()

    def stop(self) -> None:
        super().stop()
        self.pool.shutdown(wait=True)
        self.client.close()
