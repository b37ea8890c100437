"""Outbound: a customer's billing status written back onto its CRM record.

Status: `mrr` (billing/metrics.py, on the book's today), `balance_due` (the
customer's receivable postings), `overdue` (an open invoice past its due date
with something left to pay), `last_invoice_number` and `last_invoice_date`
(the newest issued invoice), `next_renewal_date` (the earliest next period of
a live subscription). Money goes as decimal strings, dates ISO 8601.

Deliveries are queued by a trigger on `events` (migration 0017_crm) for
invoice, payment, subscription and credit-note events of a linked customer,
in the event's transaction, and by the worker once a book's day has moved past
a record's last write (the status also changes with the date alone: an
invoice falls overdue, a trial ends). The worker claims one due delivery at a time
(`FOR UPDATE SKIP LOCKED`), computes the status now, and writes it only when
it differs from what was last written (`crm_links.pushed`): a repeated event
with the same values writes nothing (status `unchanged`). A failed write is
retried on the book's `webhook_retry_seconds` schedule (billing/webhooks.py),
then given up (`failed`), each attempt logged in `crm_sync_log`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from adapters.crm import store
from adapters.crm.base import CrmAdapter
from adapters.crm.factory import adapter_for
from adapters.polling import PollingWorker
from billing.metrics import customer_mrr
from billing.postgres.customers import get_customer, receivable_balance
from billing.postgres.invoices import receivable_amounts
from billing.postgres.metrics import subscription_facts
from billing.postgres.settings import read_settings
from billing.webhooks import DEFAULT_RETRY_SECONDS, next_delay
from ledger.errors import LedgerError
from ledger.money import minor_unit_text
from ledger.postgres.books import get_book

log = logging.getLogger("activebilling.crm")

Connect = Callable[[], AbstractContextManager[psycopg.Connection]]
AdapterFactory = Callable[[dict[str, Any], str], CrmAdapter]


def billing_status(
    conn: psycopg.Connection, book_id: uuid.UUID, customer_id: uuid.UUID, today: date
) -> dict[str, Any]:
    customer = get_customer(conn, book_id, str(customer_id))
    c = customer.currency
    mrr = customer_mrr(subscription_facts(conn, book_id, today), today).get(
        (c, str(customer.id)), Decimal(0)
    )
    balance = receivable_balance(conn, book_id, customer.id, c)
    open_late = [
        r[0]
        for r in conn.execute(
            "select id from invoices where book_id = %s and customer_id = %s"
            " and status = 'open' and due_date < %s",
            (book_id, customer.id, today),
        )
    ]
    overdue = bool(open_late) and any(
        a[0] > 0 for a in receivable_amounts(conn, book_id, open_late).values()
    )
    last = conn.execute(
        "select number, issue_date from invoices where book_id = %s and customer_id = %s"
        " and number is not null and issue_date is not null"
        " order by issue_date desc, created_at desc limit 1",
        (book_id, customer.id),
    ).fetchone()
    renewal = conn.execute(
        "select min(next_period_start) from subscriptions where book_id = %s"
        " and customer_id = %s and canceled_on is null"
        " and (cancel_at is null or cancel_at > next_period_start)",
        (book_id, customer.id),
    ).fetchone()
    return {
        "mrr": minor_unit_text(mrr, c),
        "balance_due": minor_unit_text(balance, c),
        "overdue": overdue,
        "last_invoice_number": last[0] if last else None,
        "last_invoice_date": last[1].isoformat() if last else None,
        "next_renewal_date": renewal[0].isoformat() if renewal and renewal[0] else None,
    }


def crm_values(status: dict[str, Any], outbound: dict[str, str]) -> dict[str, Any]:
    """The status under the CRM's field names (unmapped status fields are not sent)."""
    return {crm: status[name] for name, crm in outbound.items() if name in status}


_CLAIM = """
select d.book_id, d.id, d.provider, d.record_id, d.customer_id, d.attempts, l.pushed
  from crm_deliveries d
  join crm_links l on l.book_id = d.book_id and l.provider = d.provider
                  and l.record_id = d.record_id
  left join events e on e.book_id = d.book_id and e.id = d.event_id
 where d.status = 'pending' and d.next_attempt_at <= %(now)s
   and (%(books)s::uuid[] is null or d.book_id = any (%(books)s))
 order by d.next_attempt_at, e.sequence nulls last
 limit 1
 for update of d, l skip locked
"""


# Once a book's day has moved past a link's last write, its status is computed again
# (and written only if it changed): overdue flags, trial ends and scheduled
# cancellations change the status without an event.
_REFRESH = """
insert into crm_deliveries (book_id, id, provider, record_id, customer_id)
select l.book_id, gen_random_uuid(), l.provider, l.record_id, l.customer_id
  from crm_links l
  join books b on b.id = l.book_id
 where l.pushed_on < coalesce(b.clock_date, %(today)s)
   and (%(books)s::uuid[] is null or l.book_id = any (%(books)s))
   and not exists (
         select 1 from crm_deliveries d
          where d.book_id = l.book_id and d.provider = l.provider
            and d.record_id = l.record_id and d.status = 'pending')
"""


def utc_now() -> datetime:
    return datetime.now(UTC)


class CrmWorker(PollingWorker):
    """Writes due CRM deliveries; `deliver_one` is one step, `start` runs it in a thread."""

    what = "CRM write-backs"
    join_seconds = 30.0

    def __init__(
        self,
        connection: Connect,
        *,
        clock: Callable[[], datetime] = utc_now,
        adapters: AdapterFactory = adapter_for,
        books: Sequence[uuid.UUID] | None = None,
    ) -> None:
        self.connection = connection
        self.clock = clock
        self.adapters = adapters
        self.books = None if books is None else list(books)
        super().__init__()

    def deliver_one(self) -> bool:
        now = self.clock()
        with self.connection() as conn:
            with conn.cursor(row_factory=dict_row) as cur:
                row = cur.execute(_CLAIM, {"now": now, "books": self.books}).fetchone()
            if row is None:
                conn.rollback()
                return False
            self._deliver(conn, row, now)
            conn.commit()
        return True

    def refresh(self) -> int:
        """Queue the daily refresh of every link last written before its book's today."""
        with self.connection() as conn:
            queued = conn.execute(
                _REFRESH, {"today": self.clock().date(), "books": self.books}
            ).rowcount
            conn.commit()
        return queued

    def deliver_due(self, limit: int = 10_000) -> int:
        """Queue the daily refreshes, then write every due delivery (up to `limit`)."""
        self.refresh()
        sent = 0
        while sent < limit and not self.stopping() and self.deliver_one():
            sent += 1
        return sent

    def _deliver(self, conn: psycopg.Connection, row: dict[str, Any], now: datetime) -> None:
        book_id, provider = row["book_id"], row["provider"]
        settings = read_settings(conn, book_id)
        mapping = store.get_mapping(conn, book_id, provider)
        today = get_book(conn, book_id).today(now.date())
        values = crm_values(
            billing_status(conn, book_id, row["customer_id"], today), mapping.outbound
        )
        if values == row["pushed"]:
            self._pushed(conn, row, values, today)
            self._finish(conn, row, now, "unchanged", None)
            return
        try:
            self.adapters(settings, provider).update_account(row["record_id"], values)
        except LedgerError as exc:  # CrmError, CrmRefused: retried on the schedule
            attempts = row["attempts"] + 1
            schedule = settings.get("webhook_retry_seconds") or DEFAULT_RETRY_SECONDS
            delay = next_delay(attempts, schedule)
            conn.execute(
                "update crm_deliveries set attempts = %s, last_error = %s, status = %s,"
                " next_attempt_at = %s, finished_at = %s where book_id = %s and id = %s",
                (
                    attempts,
                    exc.message[:500],
                    "pending" if delay is not None else "failed",
                    now + timedelta(seconds=delay or 0),
                    None if delay is not None else now,
                    book_id,
                    row["id"],
                ),
            )
            store.log(
                conn,
                book_id,
                provider,
                "error",
                record_id=row["record_id"],
                customer_id=row["customer_id"],
                message=f"attempt {attempts}: {exc.message}",
            )
            return
        self._pushed(conn, row, values, today)
        store.log(
            conn,
            book_id,
            provider,
            "pushed",
            record_id=row["record_id"],
            customer_id=row["customer_id"],
            crm_value=values,
        )
        self._finish(conn, row, now, "succeeded", None)

    def _pushed(
        self, conn: psycopg.Connection, row: dict[str, Any], values: dict[str, Any], today: date
    ) -> None:
        conn.execute(
            "update crm_links set pushed = %s, pushed_on = %s where book_id = %s"
            " and provider = %s and record_id = %s",
            (Jsonb(values), today, row["book_id"], row["provider"], row["record_id"]),
        )

    def _finish(
        self,
        conn: psycopg.Connection,
        row: dict[str, Any],
        now: datetime,
        status: str,
        error: str | None,
    ) -> None:
        conn.execute(
            "update crm_deliveries set status = %s, attempts = attempts + 1, last_error = %s,"
            " finished_at = %s where book_id = %s and id = %s",
            (status, error, now, row["book_id"], row["id"]),
        )

    def run_round(self) -> object:
        return self.deliver_due()
