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
invoice falls overdue, a trial ends).

A delivery is leased, never locked, while it is written (adapters/leases.py,
migration 0047): one short transaction claims a batch of due deliveries, one per
CRM record and none of a record another worker is writing now (the records'
`crm_links` rows are locked for that transaction only, so two claims of one
record take turns and the second sees the first's lease), and commits; the
status of each is computed, written to the CRM outside any transaction, and
the batch's results recorded in one more short transaction, fenced by the lease.
A status equal to what was last written (`crm_links.pushed`) is not written
(status `unchanged`). A worker that dies mid-batch leaves its deliveries to be
written again once their lease lapses: the write sets fields to values, so a
repeat changes nothing. A failed write is retried on the book's
`webhook_retry_seconds` schedule (billing/webhooks.py), then given up
(`failed`), each attempt logged in `crm_sync_log`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from adapters.crm import store
from adapters.crm.base import TIMEOUT_SECONDS, CrmAdapter
from adapters.crm.factory import adapter_for
from adapters.leases import (
    CLEARED,
    OURS,
    LeasedSender,
    claimable,
    lease_each_book,
    lease_lapsed,
    release_unsent,
)
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


BATCH = 10  # deliveries leased per claim, written one by one
LEASE_MARGIN_SECONDS = 30.0

# Another delivery of the same record is being written under a live lease.
_RECORD_BUSY = f"""
exists (select 1 from crm_deliveries o
         where o.book_id = d.book_id and o.provider = d.provider and o.record_id = d.record_id
           and o.id <> d.id and o.status = 'sending' and not {lease_lapsed("o")})
"""

_DUE = f"""
select d.book_id, d.id, d.provider, d.record_id
  from crm_deliveries d
  left join events e on e.book_id = d.book_id and e.id = d.event_id
 where d.status in ('pending', 'sending') and {claimable("d")}
   and (%(books)s::uuid[] is null or d.book_id = any (%(books)s))
   and not {_RECORD_BUSY}
 order by d.next_attempt_at, e.sequence nulls last
 limit %(batch)s
"""

_LOCK_LINKS = """
select 1 from crm_links l
  join crm_deliveries d on d.book_id = l.book_id and d.provider = l.provider
                       and d.record_id = l.record_id
  join unnest(%s::uuid[], %s::uuid[]) as v(book, id) on d.book_id = v.book and d.id = v.id
 order by l.book_id, l.provider, l.record_id
 for update of l
"""

_DETAILS = """
select d.book_id, d.id, d.provider, d.record_id, d.customer_id, d.attempts, d.lease_token,
       l.pushed
  from crm_deliveries d
  join crm_links l on l.book_id = d.book_id and l.provider = d.provider
                  and l.record_id = d.record_id
 where d.book_id = %s and d.id = any (%s)
"""

_RECORD = f"""
update crm_deliveries d
   set status = %(status)s, attempts = %(attempts)s, last_error = %(error)s,
       next_attempt_at = %(next_at)s, finished_at = %(finished)s, {CLEARED}
 where d.book_id = %(book)s and d.id = %(id)s and {OURS.format(d="d", token="%(token)s")}
returning 1
"""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What writing one delivery came to: `succeeded`, `unchanged` or `error`."""

    status: str
    values: dict[str, Any] | None = None
    today: date | None = None
    error: str | None = None


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


class CrmWorker(LeasedSender[Outcome]):
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
        batch: int = BATCH,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        self.connection = connection
        self.batch = batch
        self.timeout = timeout  # the adapters' (crm/base.py): a write's longest wait
        self.clock = clock
        self.adapters = adapters
        self.books = None if books is None else list(books)
        super().__init__()

    def deliver_one(self) -> bool:
        """Write one due delivery; False when none is due."""
        return self.drain(1) == 1

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
        return self.drain(limit)

    def claim(self, size: int) -> list[dict[str, Any]]:
        """Lease up to `size` due deliveries, one per record, in one committed transaction."""
        now = self.clock()
        with self.connection() as conn:
            due = conn.execute(_DUE, {"now": now, "books": self.books, "batch": size}).fetchall()
            first: dict[tuple[Any, ...], tuple[uuid.UUID, uuid.UUID]] = {}  # one per record
            for book_id, delivery_id, provider, record_id in due:
                first.setdefault((book_id, provider, record_id), (book_id, delivery_id))
            pairs = list(first.values())
            conn.execute(_LOCK_LINKS, ([p[0] for p in pairs], [p[1] for p in pairs]))
            # After the links' locks: this statement sees the leases of the claims that
            # held them.
            seconds = size * self.timeout + LEASE_MARGIN_SECONDS
            table, busy = "crm_deliveries", f"and not {_RECORD_BUSY}"
            rows = lease_each_book(conn, table, pairs, seconds, _DETAILS, now=now, also=busy)
            conn.commit()
        return rows

    def send_row(self, row: dict[str, Any]) -> Outcome:
        """The status now (read and rolled back), then written to the CRM outside any
        transaction unless it is what was last written."""
        book_id, provider = row["book_id"], row["provider"]
        try:
            with self.connection() as conn:
                settings = read_settings(conn, book_id)
                mapping = store.get_mapping(conn, book_id, provider)
                today = get_book(conn, book_id).today(self.clock().date())
                status = billing_status(conn, book_id, row["customer_id"], today)
                conn.rollback()
            values = crm_values(status, mapping.outbound)
            if values == row["pushed"]:
                return Outcome("unchanged", values, today)
            self.adapters(settings, provider).update_account(row["record_id"], values)
        except LedgerError as exc:  # CrmError, CrmRefused: retried on the schedule
            return Outcome("error", error=exc.message[:500])
        except Exception as exc:  # a bug must not strand the batch's leases
            log.exception("crm: delivery %s", row["id"])
            return Outcome("error", error=f"{type(exc).__name__}: {exc}"[:500])
        return Outcome("succeeded", values, today)

    def record(self, batch: list[dict[str, Any]], outcomes: list[Outcome]) -> None:
        """The outcomes in one transaction: a delivery's state and its link's last
        write only while the lease is ours (else another worker re-claimed it), each
        attempt logged; the deliveries not tried go back to pending."""
        now = self.clock()
        with self.connection() as conn:
            schedules: dict[uuid.UUID, Any] = {}
            for row, outcome in zip(batch, outcomes, strict=False):
                book_id = row["book_id"]
                if book_id not in schedules:
                    settings = read_settings(conn, book_id)
                    schedules[book_id] = (
                        settings.get("webhook_retry_seconds") or DEFAULT_RETRY_SECONDS
                    )
                attempts = row["attempts"] + 1
                status, next_at = outcome.status, now
                finished: datetime | None = now
                if outcome.error is not None:
                    delay = next_delay(attempts, schedules[book_id])
                    status = "pending" if delay is not None else "failed"
                    next_at = now + timedelta(seconds=delay or 0)
                    finished = None if delay is not None else now
                ours = conn.execute(
                    _RECORD,
                    {
                        "status": status,
                        "attempts": attempts,
                        "error": outcome.error,
                        "next_at": next_at,
                        "finished": finished,
                        "book": book_id,
                        "id": row["id"],
                        "token": row["lease_token"],
                    },
                ).fetchone()
                who = {"record_id": row["record_id"], "customer_id": row["customer_id"]}
                if outcome.error is not None:
                    message = f"attempt {attempts}: {outcome.error}"
                    store.log(conn, book_id, row["provider"], "error", message=message, **who)
                    continue
                if ours is not None:
                    assert outcome.values is not None and outcome.today is not None
                    self._pushed(conn, row, outcome.values, outcome.today)
                if outcome.status == "succeeded":
                    store.log(
                        conn, book_id, row["provider"], "pushed", crm_value=outcome.values, **who
                    )
            release_unsent(conn, "crm_deliveries", batch[len(outcomes) :])
            conn.commit()

    def _pushed(
        self, conn: psycopg.Connection, row: dict[str, Any], values: dict[str, Any], today: date
    ) -> None:
        conn.execute(
            "update crm_links set pushed = %s, pushed_on = %s where book_id = %s"
            " and provider = %s and record_id = %s",
            (Jsonb(values), today, row["book_id"], row["provider"], row["record_id"]),
        )

    def run_round(self) -> object:
        return self.deliver_due()
