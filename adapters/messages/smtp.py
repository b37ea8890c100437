"""The SMTP sender: drains queued messages (the dunning outbox) after their run
committed, for books that configure `smtp` (host, port, from, optional
username/password, starttls).

One message at a time, in its own transaction: the row is claimed with
`FOR UPDATE SKIP LOCKED`, so two senders (the server's worker and a CLI
`messages send`) never send the same message; it is sent, its status set
(`sent`, or back to `queued` with a later `next_attempt_at`, or `failed` once
the retries are used up), then committed. The row lock is held while sending,
so a message id is never sent twice by concurrent senders; a sender killed
between the SMTP answer and its commit sends that one again (at least once),
and the `Message-ID` header, derived from the message id, lets a mailbox
de-duplicate it. "Now" is the injected clock.
"""

from __future__ import annotations

import logging
import smtplib
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

import psycopg
from psycopg.rows import dict_row

from adapters.polling import PollingWorker

log = logging.getLogger("activebilling.messages")

RETRY_SECONDS = (60, 300, 1800, 7200, 21600)  # then the message is `failed`
TIMEOUT_SECONDS = 10.0

_CLAIM = """
select m.book_id, m.id, m.recipient, m.subject, m.body, m.attempts, b.settings->'smtp' as smtp
  from messages m
  join books b on b.id = m.book_id
 where m.status = 'queued' and m.next_attempt_at <= %(now)s
   and b.settings ? 'smtp'
   and (%(books)s::uuid[] is null or m.book_id = any (%(books)s))
 order by m.next_attempt_at, m.created_at
 limit 1
 for update of m skip locked
"""


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
    mail["Message-ID"] = make_msgid(idstring=str(row["id"]), domain="activebilling")
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


class MessageSender(PollingWorker):
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
    ) -> None:
        self.connection = connection
        self.clock = clock
        self.send = send
        self.books = None if books is None else list(books)
        self.timeout = timeout
        super().__init__()

    def send_one(self) -> bool:
        """Send one due message; False when none is due."""
        now = self.clock()
        with self.connection() as conn:
            with conn.cursor(row_factory=dict_row) as cur:
                row = cur.execute(_CLAIM, {"now": now, "books": self.books}).fetchone()
            if row is None:
                conn.rollback()
                return False
            error = None
            try:
                self.send(row["smtp"], build_email(row), self.timeout)
            except (OSError, smtplib.SMTPException, KeyError, ValueError) as exc:
                error = f"{type(exc).__name__}: {exc}"[:500]
            self._record(conn, row, now, error)
            conn.commit()
        return True

    def _record(
        self, conn: psycopg.Connection, row: dict[str, Any], now: datetime, error: str | None
    ) -> None:
        attempts = row["attempts"] + 1
        if error is None:
            status, next_at = "sent", now
        else:
            delay = next_delay(attempts)
            status = "queued" if delay is not None else "failed"
            next_at = now + timedelta(seconds=delay or 0)
            log.warning("message %s: %s", row["id"], error)
        conn.execute(
            "update messages set status = %s, attempts = %s, next_attempt_at = %s,"
            " last_error = %s, sent_at = case when %s = 'sent' then %s else sent_at end"
            " where book_id = %s and id = %s",
            (status, attempts, next_at, error, status, now, row["book_id"], row["id"]),
        )

    def send_due(self, limit: int = 10_000) -> int:
        """Send every due message (up to `limit`); how many were attempted."""
        done = 0
        while done < limit and not self.stopping() and self.send_one():
            done += 1
        return done

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
