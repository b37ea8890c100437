"""The SMTP sender: drains queued messages (the dunning outbox) after their run
committed, for books that configure `smtp` (host, port, from, optional
username/password, starttls).

A message is leased, never locked, while it is sent (adapters/leases.py,
migration 0047): one short transaction claims a batch of due messages
(`status = 'sending'` under a lease) and commits; they are sent one by one
outside any transaction, so a slow or hanging mail server holds no database
transaction or lock; the batch's results are recorded in one short transaction
(`sent`, or back to `queued` with a later `next_attempt_at`, or `failed` once
the retries are used up). Two senders (the server's worker and a CLI
`messages send`) never send a message another holds under a live lease. A
sender that dies between the SMTP answer and its record, or whose lease runs out
mid-send (each SMTP step may take up to the timeout), leaves the message to be
sent again (at least once: SMTP has no idempotency key); the `Message-ID`
header, derived from the message id, is the same on every copy, so a mailbox or
its reader de-duplicates it. "Now" is the injected clock.
"""

from __future__ import annotations

import logging
import smtplib
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import psycopg
from psycopg.rows import dict_row

from adapters.leases import CLEARED, OURS, LeasedSender, claimable, lease_each_book, release_unsent

log = logging.getLogger("activebilling.messages")

RETRY_SECONDS = (60, 300, 1800, 7200, 21600)  # then the message is `failed`
TIMEOUT_SECONDS = 10.0

BATCH = 20  # messages leased per claim, sent one by one
LEASE_MARGIN_SECONDS = 30.0

_DUE = f"""
select m.book_id, m.id
  from messages m
  join books b on b.id = m.book_id
 where m.status in ('queued', 'sending') and {claimable("m", "queued")}
   and b.settings ? 'smtp'
   and (%(books)s::uuid[] is null or m.book_id = any (%(books)s))
 order by m.next_attempt_at, m.created_at
 limit %(batch)s
"""

_DETAILS = """
select m.book_id, m.id, m.recipient, m.subject, m.body, m.attempts, m.lease_token,
       b.settings->'smtp' as smtp
  from messages m
  join books b on b.id = m.book_id
 where m.book_id = %s and m.id = any (%s)
 order by m.next_attempt_at, m.created_at
"""

_RECORD = f"""
update messages d
   set status = v.status, attempts = v.attempts, next_attempt_at = v.next_at,
       last_error = v.error, sent_at = coalesce(v.sent, d.sent_at), {CLEARED}
  from unnest(%s::uuid[], %s::uuid[], %s::uuid[], %s::text[], %s::int[], %s::timestamptz[],
              %s::text[], %s::timestamptz[])
       as v(book, id, token, status, attempts, next_at, error, sent)
 where d.book_id = v.book and d.id = v.id and {OURS.format(d="d", token="v.token")}
"""

Result = str | None  # the error, None when sent


def utc_now() -> datetime:
    return datetime.now(UTC)


def next_delay(attempts: int, schedule: Sequence[int] = RETRY_SECONDS) -> int | None:
    """Seconds to wait after the `attempts`-th failure; None when no retry is left."""
    return schedule[attempts - 1] if attempts <= len(schedule) else None


def build_email(row: dict[str, Any]) -> EmailMessage:
    smtp = row["smtp"]
    mail = EmailMessage()
    mail["From"] = smtp["from"]
    mail["To"] = row["recipient"]
    mail["Subject"] = row["subject"]
    # The same on every copy of the message (a resend after a lapsed lease): a mailbox
    # de-duplicates by it. (make_msgid adds the time and a random part: not the same.)
    mail["Message-ID"] = f"<{row['id']}@activebilling>"
    mail["X-ActiveBilling-Message"] = str(row["id"])
    mail.set_content(row["body"])
    return mail


def send_smtp(smtp: dict[str, Any], mail: EmailMessage, timeout: float) -> None:
    with smtplib.SMTP(smtp["host"], int(smtp.get("port", 25)), timeout=timeout) as client:
        if smtp.get("starttls"):
            client.starttls()
        if smtp.get("username"):
            client.login(smtp["username"], smtp.get("password", ""))
        client.send_message(mail)


Send = Callable[[dict[str, Any], EmailMessage, float], None]


class MessageSender(LeasedSender[Result]):
    """Sends due messages; `send_one` is one step, `start` runs it in a thread."""

    what = "e-mail messages"
    join_seconds = TIMEOUT_SECONDS + 5

    def __init__(
        self,
        connection: Callable[[], AbstractContextManager[psycopg.Connection]],
        *,
        clock: Callable[[], datetime] = utc_now,
        send: Send = send_smtp,
        books: Sequence[uuid.UUID] | None = None,
        timeout: float = TIMEOUT_SECONDS,
        batch: int = BATCH,
    ) -> None:
        self.connection = connection
        self.clock = clock
        self.send = send
        self.books = None if books is None else list(books)
        self.timeout = timeout
        self.batch = batch
        super().__init__()

    def send_one(self) -> bool:
        """Send one due message; False when none is due."""
        return self.send_due(limit=1) == 1

    def send_due(self, limit: int = 10_000) -> int:
        """Send every due message (up to `limit`); how many were attempted."""
        return self.drain(limit)

    def claim(self, size: int) -> list[dict[str, Any]]:
        """Lease up to `size` due messages in one committed transaction."""
        now = self.clock()
        with self.connection() as conn:
            due = conn.execute(_DUE, {"now": now, "books": self.books, "batch": size}).fetchall()
            seconds = size * self.timeout + LEASE_MARGIN_SECONDS
            rows = lease_each_book(
                conn, "messages", due, seconds, _DETAILS, now=now, waiting="queued"
            )
            conn.commit()
        return rows

    def send_row(self, row: dict[str, Any]) -> Result:
        """Send one message; no database here."""
        try:
            self.send(row["smtp"], build_email(row), self.timeout)
        except (OSError, smtplib.SMTPException, KeyError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
            log.warning("message %s: %s", row["id"], error)
            return error
        return None

    def record(self, batch: list[dict[str, Any]], results: list[Result]) -> None:
        """The attempts' outcomes in one transaction (only where the lease is still ours);
        the messages not tried go back to queued."""
        now = self.clock()
        states = []
        for row, error in zip(batch, results, strict=False):
            attempts = row["attempts"] + 1
            delay = None if error is None else next_delay(attempts)
            status = "sent" if error is None else "queued" if delay is not None else "failed"
            states.append(
                (row["book_id"], row["id"], row["lease_token"], status, attempts,
                 now + timedelta(seconds=delay or 0), error, None if error else now)
            )  # fmt: skip
        with self.connection() as conn:
            columns = [list(c) for c in zip(*states, strict=True)] or [[]] * 8
            conn.execute(_RECORD, columns)
            release_unsent(conn, "messages", batch[len(results) :], waiting="queued")
            conn.commit()

    def run_round(self) -> object:
        return self.send_due()


def list_messages(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    *,
    invoice_id: uuid.UUID | None = None,
    status: str | None = None,
    after: tuple[datetime, uuid.UUID] | None = None,
    limit: int = 10_000,
) -> list[dict[str, Any]]:
    """Messages in the order they were queued, after the (created_at, id) of `after`."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "select id, customer_id, invoice_id, kind, recipient, subject, body, status,"
            " attempts, next_attempt_at, last_error, sent_at, created_at from messages"
            " where book_id = %(book)s and (%(invoice)s::uuid is null or invoice_id = %(invoice)s)"
            " and (%(status)s::text is null or status = %(status)s)"
            " and (%(at)s::timestamptz is null or (created_at, id) > (%(at)s, %(id)s))"
            " order by created_at, id limit %(limit)s",
            {
                "book": book_id,
                "invoice": invoice_id,
                "status": status,
                "at": after[0] if after else None,
                "id": after[1] if after else None,
                "limit": limit,
            },
        ).fetchall()
