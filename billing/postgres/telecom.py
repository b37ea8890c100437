"""Rate plans, subscribers, CDRs and rating runs in PostgreSQL (rules in
billing.telecom, wallets in billing.postgres.wallets).

CDR import: each record is checked on its own. A broken record (or one for an
unknown subscriber) is reported with its line (or position) and reason and
the rest are stored: one bad line in a switch's file must not hold back the
others, and re-sending the fixed file is safe because the record id
deduplicates (the same id with the same content is a duplicate, with other
content a `conflict`, never stored twice).

Rating run (`POST /v1/cdr-ratings {"through"}`): rates every CDR not yet rated
that started before `through` (midnight UTC), per subscriber in event-time
order, continuing the month's allowance from what earlier runs included, and
posts the rating sub-ledger as summarized entries, one per (local day, rate
plan, currency, customer or wallet):

- postpaid: Assets:Receivable:Unbilled / Income:Usage
- prepaid:  Liabilities:Prepaid-Wallet:W<id> / Income:Usage

each posting marked `via = cdr_rating:<run>`, so `verify` can tie the posted
sum to the rated CDRs. A CDR arriving after its month was rated takes what is
left of the allowance then. Rated amounts are net: tax is the invoice's.
A prepaid wallet short of its rated usage fails the whole run (the database
refuses to overdraw the wallet) and nothing is written: prepaid sessions are
meant to be authorized in real time through reservations.
"""

from __future__ import annotations

import struct
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import partial
from itertools import groupby
from operator import itemgetter
from typing import Any

import psycopg
from psycopg.adapt import PyFormat, Transformer
from psycopg.pq import Format
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from billing.errors import DocumentState, InvalidBillingRequest
from billing.periods import Interval
from billing.postgres.customers import get_customer
from billing.postgres.posting import post_entries
from billing.postgres.usage import BatchTooLarge
from billing.postgres.wallets import get_wallet
from billing.subscriptions import cycle_period
from billing.telecom import (
    AllowanceLedger,
    Cdr,
    PlanRater,
    PlanVersion,
    RatedCdr,
    Rating,
    RatingError,
    parse_cdr,
    parse_plan,
    version_at,
)
from billing.wallets import USAGE, wallet_account
from ledger.entries import JournalEntry, Posting, build_entry
from ledger.errors import NotFound
from ledger.money import Money
from ledger.postgres.planner import set_based_read

UNBILLED = "Assets:Receivable:Unbilled"
MAX_BATCH = 10_000


# --- rate plans ----------------------------------------------------------------------


def create_rate_plan(
    conn: psycopg.Connection, book_id: uuid.UUID, body: Mapping[str, Any]
) -> tuple[uuid.UUID, PlanVersion]:
    plan = parse_plan(body)
    existing = conn.execute(
        "select 1 from rate_plans where book_id = %s and name = %s and effective_from = %s",
        (book_id, plan.name, plan.effective_from),
    ).fetchone()
    if existing is not None:
        raise DocumentState(
            f"rate plan {plan.name!r} already has a version effective from {plan.effective_from}"
        )
    plan_id = uuid.uuid4()
    conn.execute(
        "insert into rate_plans (book_id, id, name, effective_from, currency, time_zone,"
        " definition) values (%s, %s, %s, %s, %s, %s, %s)",
        (
            book_id,
            plan_id,
            plan.name,
            plan.effective_from,
            plan.currency,
            plan.time_zone,
            Jsonb(dict(body)),
        ),
    )
    return plan_id, plan


def plan_versions(conn: psycopg.Connection, book_id: uuid.UUID, name: str) -> list[PlanVersion]:
    rows = conn.execute(
        "select definition from rate_plans where book_id = %s and name = %s"
        " order by effective_from",
        (book_id, name),
    ).fetchall()
    if not rows:
        raise NotFound(f"rate plan {name!r} does not exist in this book", rate_plan=name)
    return [parse_plan(r[0]) for r in rows]


# --- subscribers ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subscriber:
    subscriber: str
    customer_id: uuid.UUID
    rate_plan: str
    wallet_id: uuid.UUID | None
    created_at: datetime


def create_subscriber(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    subscriber: str,
    customer_ref: str,
    rate_plan: str,
    wallet_ref: str | None = None,
) -> Subscriber:
    if not subscriber.strip() or len(subscriber) > 100:
        raise InvalidBillingRequest("subscriber: required (1 to 100 characters)")
    customer = get_customer(conn, book_id, customer_ref)
    versions = plan_versions(conn, book_id, rate_plan)
    wallet_id = None
    if wallet_ref is not None:
        wallet = get_wallet(conn, book_id, wallet_ref)
        if wallet.customer_id != customer.id:
            raise InvalidBillingRequest("wallet: the wallet belongs to another customer")
        if any(v.currency != wallet.currency for v in versions):
            raise InvalidBillingRequest("wallet: the plan rates in another currency")
        wallet_id = wallet.id
    row = conn.execute(
        "insert into telecom_subscribers (book_id, subscriber, customer_id, rate_plan, wallet_id)"
        " values (%s, %s, %s, %s, %s) on conflict do nothing returning created_at",
        (book_id, subscriber.strip(), customer.id, rate_plan, wallet_id),
    ).fetchone()
    if row is None:
        raise DocumentState(f"subscriber {subscriber!r} already exists in this book")
    return Subscriber(subscriber.strip(), customer.id, rate_plan, wallet_id, row[0])


# --- CDR import ----------------------------------------------------------------------


@dataclass
class ImportResult:
    accepted: int = 0
    duplicates: list[str] | None = None
    rejected: list[dict[str, Any]] | None = None

    def json(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates or [],
            "rejected": self.rejected or [],
        }


def _same(cdr: Cdr, row: tuple[Any, ...]) -> bool:
    return (
        cdr.subscriber,
        cdr.event_type,
        cdr.start,
        cdr.quantity,
        cdr.destination,
        cdr.roaming,
    ) == (
        row[1],
        row[2],
        row[3],
        Decimal(row[4]),
        row[5],
        row[6],
    )


_IMPORT_STAGE = (
    "create temp table cdr_import_stage (id text, subscriber text, event_type text,"
    " start timestamptz, quantity numeric, destination text, roaming boolean) on commit drop"
)
_IMPORT_TYPES = ["text", "text", "text", "timestamptz", "numeric", "text", "bool"]


def import_cdrs(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    rows: Iterable[tuple[int, Mapping[str, Any]]],
) -> ImportResult:
    """Store the good records of `rows` ((line, fields) pairs); report the others."""
    result = ImportResult(0, [], [])
    assert result.duplicates is not None and result.rejected is not None
    parsed: dict[str, tuple[int, Cdr]] = {}
    size = 0
    for line, row in rows:
        size += 1
        try:
            cdr = parse_cdr(row)
        except RatingError as exc:
            result.rejected.append({"line": line, "id": row.get("id"), "reason": exc.message})
            continue
        if cdr.id in parsed:
            first = parsed[cdr.id][1]
            if first == cdr:
                result.duplicates.append(cdr.id)
            else:
                result.rejected.append({"line": line, "id": cdr.id, "reason": "conflict"})
            continue
        parsed[cdr.id] = (line, cdr)
    if size > MAX_BATCH:
        # As usage events answer it: 413, nothing stored (the CLI sends 10,000 at a time).
        raise BatchTooLarge(
            f"a batch holds at most {MAX_BATCH} records, this one {size}; split it",
            limit=MAX_BATCH,
            size=size,
        )
    known = {
        r[0]
        for r in conn.execute(
            "select subscriber from telecom_subscribers"
            " where book_id = %s and subscriber = any(%s)",
            (book_id, list({c.subscriber for _, c in parsed.values()})),
        ).fetchall()
    }
    fresh = []
    for line, cdr in parsed.values():
        if cdr.subscriber not in known:
            result.rejected.append(
                {"line": line, "id": cdr.id, "reason": f"unknown subscriber {cdr.subscriber!r}"}
            )
        else:
            fresh.append(cdr)
    # Binary COPY into a staging table, then one insert: the unnest of seven text
    # arrays dumped by Python cost more than the insert itself.
    inserted: set[str] = set()
    if fresh:
        conn.execute("drop table if exists pg_temp.cdr_import_stage")
        conn.execute(_IMPORT_STAGE)
        with conn.cursor().copy("copy cdr_import_stage from stdin (format binary)") as copy:
            copy.set_types(_IMPORT_TYPES)
            for c in fresh:
                copy.write_row(
                    (
                        c.id,
                        c.subscriber,
                        c.event_type,
                        c.start,
                        c.quantity,
                        c.destination,
                        c.roaming,
                    )
                )
        inserted = {
            r[0]
            for r in conn.execute(
                "insert into cdrs (book_id, id, subscriber, event_type, start, quantity,"
                " destination, roaming) select %s, * from cdr_import_stage"
                " on conflict do nothing returning id",
                (book_id,),
            ).fetchall()
        }
        conn.execute("drop table cdr_import_stage")
    result.accepted = len(inserted)
    others = [c for c in fresh if c.id not in inserted]
    if others:
        stored = {
            r[0]: r
            for r in conn.execute(
                "select id, subscriber, event_type, start, quantity, destination, roaming"
                " from cdrs where book_id = %s and id = any(%s)",
                (book_id, [c.id for c in others]),
            ).fetchall()
        }
        for cdr in others:
            if _same(cdr, stored[cdr.id]):
                result.duplicates.append(cdr.id)
            else:
                line = parsed[cdr.id][0]
                result.rejected.append({"line": line, "id": cdr.id, "reason": "conflict"})
    result.rejected.sort(key=lambda r: r["line"])
    return result


# --- rating runs ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RatingRun:
    id: uuid.UUID
    through: date
    rated: int
    unrateable: int
    entries: int
    amounts: dict[str, Decimal]


def _prior_included(
    conn: psycopg.Connection, book_id: uuid.UUID, subscribers: list[str], since: datetime
) -> dict[str, list[tuple[str, datetime, Decimal]]]:
    """Allowance already included by earlier runs, for the subscribers of this run
    (one query for the run, not one per subscriber)."""
    found: dict[str, list[tuple[str, datetime, Decimal]]] = defaultdict(list)
    for subscriber, event_type, start, included in conn.execute(
        "select c.subscriber, c.event_type, c.start, r.included from cdr_ratings r"
        " join cdrs c on c.book_id = r.book_id and c.id = r.cdr_id"
        " where r.book_id = %s and r.included > 0 and c.subscriber = any(%s)"
        " and c.start >= %s",
        (book_id, subscribers, since),
    ).fetchall():
        found[subscriber].append((event_type, start, Decimal(included)))
    return found


def _month(day: date) -> date:
    return day.replace(day=1)


def _allowance_windows(
    conn: psycopg.Connection, book_id: uuid.UUID, subscribers: list[str]
) -> dict[str, Callable[[date], date]]:
    """For subscribers on a subscription, its billing period's first day for a local day:
    their allowances run per billing period (billing.postgres.telecom_billing)."""
    out: dict[str, Callable[[date], date]] = {}
    for subscriber, anchor, interval, count in conn.execute(
        "select r.subscriber, s.billing_anchor, s.interval, s.interval_count"
        " from subscription_rate_plans r join subscriptions s"
        "   on s.book_id = r.book_id and s.id = r.subscription_id"
        " where r.book_id = %s and r.subscriber = any(%s)",
        (book_id, subscribers),
    ).fetchall():
        out[subscriber] = partial(_period_start, anchor, Interval(interval), count)
    return out


def _period_start(anchor: date, interval: Interval, count: int, day: date) -> date:
    return cycle_period(anchor, interval, count, day).start


def _seed(
    subscriber: str,
    versions: Sequence[PlanVersion],
    ledger: AllowanceLedger,
    months: set[date],
    prior: list[tuple[str, datetime, Decimal]],
    window: Callable[[date], date] = _month,
) -> None:
    """What earlier runs already included of each month's (or period's) allowances."""
    tz = versions[-1].tz
    used: dict[tuple[str, date], Decimal] = defaultdict(Decimal)
    for event_type, start, included in prior:
        month = window(start.astimezone(tz).date())
        if month in months:
            used[(event_type, month)] += included
    for (event_type, month), total in used.items():
        # Fill the month's allowances in plan order, as rating consumed them.
        plan = version_at(versions, datetime.combine(month, time(12), tz))
        left = total
        for index, allowance in enumerate(plan.allowances):
            if allowance.event_type != event_type or left <= 0:
                continue
            taken = min(left, allowance.quantity)
            ledger.used[(subscriber, event_type, month, index)] += taken
            left -= taken


# The ratings of a run go straight to `cdr_ratings` by binary COPY, written whole here:
# a row is the field count, the CDR's id and its rating's fields (made once per distinct
# rating by `_binary_fields`), then the run's two constants.
_COPY_RATINGS = (
    "copy cdr_ratings (cdr_id, rate_plan, plan_version, zone, band, billed_quantity,"
    " included, amount, currency, book_id, run_id) from stdin (format binary)"
)
_RATING_TYPES = ["text", "date", "text", "text", "numeric", "numeric", "numeric", "text"]
_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # no flags, no header extension
_COPY_TRAILER = b"\xff\xff"
_ROW_HEAD = struct.Struct(">hi").pack  # field count, length of the first field (the id)
_LENGTH = struct.Struct(">i").pack
_NULL = _LENGTH(-1)
# Subscribers fall in BUCKETS buckets by a hash of their number; a run in `parts` parts
# (a power of two up to BUCKETS) rates in part k the subscribers of the buckets b with
# b % parts = k, and locks those buckets, so runs sharing a subscriber never overlap.
BUCKETS = 64
PARTS = (1, 2, 4, 8)
_BUCKET = "(hashtext(subscriber) & 63)"
# Unrated CDRs are read from a server-side cursor this many at a time: a run's memory
# does not grow with its CDRs.
FETCH = 20_000

SummaryKey = tuple[date, str, str, uuid.UUID, uuid.UUID | None]


def _binary_fields(conn: psycopg.Connection, constants: Sequence[Any]) -> Callable[[Rating], bytes]:
    """A rating and the run's constants as binary COPY fields, by psycopg's own dumpers."""
    transformer = Transformer(conn)
    transformer.set_dumper_types(
        [conn.adapters.types[t].oid for t in (*_RATING_TYPES, "uuid", "uuid")], Format.BINARY
    )
    formats = [PyFormat.BINARY] * (len(_RATING_TYPES) + len(constants))

    def encode(rating: Rating) -> bytes:
        dumped = transformer.dump_sequence((*rating, *constants), formats)
        return b"".join(_NULL if f is None else _LENGTH(len(f)) + f for f in dumped)

    return encode


def rate_through(
    conn: psycopg.Connection, book_id: uuid.UUID, through: date, part: int = 0, parts: int = 1
) -> RatingRun:
    """Rate the unrated CDRs that started before `through` and post their summary; with
    `parts` > 1, only those of the subscribers of part `part` (see `rate_in_parts`)."""
    if parts not in PARTS or not 0 <= part < parts:
        raise InvalidBillingRequest(f"parts: one of {', '.join(map(str, PARTS))}")
    # One run per subscriber at a time: two runs would rate the same CDRs twice and
    # consume an allowance twice. A run locks its subscribers' buckets, in one order.
    conn.execute(
        "select count(pg_advisory_xact_lock(hashtextextended("
        " 'cdr-rating:' || %s || ':' || b, 0)))"
        " from (select b from generate_series(%s::int, %s::int, %s::int) b order by b) s",
        (str(book_id), part, BUCKETS - 1, parts),
    )
    cutoff = datetime.combine(through, time(0), UTC)
    run_id = uuid.uuid4()
    # The queued CDRs that started before the cut-off, out of the queue (one DELETE ...
    # RETURNING into a table of the run's): a CDR imported while the run works is not in
    # its snapshot and stays queued for the next run. (Deleting by row address batch by
    # batch after reading the queue in key order cost three times as much.)
    mine = "book_id = %s and start < %s"
    params: tuple[Any, ...] = (book_id, cutoff)
    if parts > 1:
        mine += f" and {_BUCKET} %% %s = %s"
        params += (parts, part)
    conn.execute("drop table if exists pg_temp.cdr_run")
    conn.execute("create temp table cdr_run on commit drop as table cdr_rating_queue with no data")
    taken = conn.execute(
        f"with taken as (delete from cdr_rating_queue where {mine} returning *)"
        " insert into pg_temp.cdr_run select * from taken",
        params,
    ).rowcount
    pending = []
    if taken:
        pending = conn.execute(
            "select s.subscriber, s.customer_id, s.rate_plan, s.wallet_id, u.first"
            " from (select subscriber, min(start) as first from pg_temp.cdr_run"
            "   group by subscriber) u"
            " join telecom_subscribers s on s.book_id = %s and s.subscriber = u.subscriber",
            (book_id,),
        ).fetchall()
    if not pending:
        conn.execute("drop table pg_temp.cdr_run")
        conn.execute(
            "insert into cdr_rating_runs (book_id, id, through, rated, unrateable, entries)"
            " values (%s, %s, %s, 0, 0, 0)",
            (book_id, run_id, through),
        )
        return RatingRun(run_id, through, 0, 0, 0, {})
    first: datetime = min(r[4] for r in pending)
    subscribers: dict[str, tuple[uuid.UUID, str, uuid.UUID | None]] = {
        r[0]: (r[1], r[2], r[3]) for r in pending
    }
    windows = _allowance_windows(conn, book_id, list(subscribers))
    # Earlier runs of the months (periods) in play: from before the first one.
    since = first - timedelta(days=32)
    for window in windows.values():
        local = first.date() - timedelta(days=1)
        since = min(since, datetime.combine(window(local), time(0), UTC) - timedelta(days=1))
    prior = _prior_included(conn, book_id, list(subscribers), since)
    encode = _binary_fields(conn, (book_id, run_id))
    raters: dict[str, tuple[list[PlanVersion], PlanRater]] = {}
    for _, plan_name, _ in subscribers.values():
        if plan_name not in raters:
            versions = plan_versions(conn, book_id, plan_name)
            raters[plan_name] = (versions, PlanRater(versions, encode))
    ledger = AllowanceLedger()
    seeded: set[tuple[str, date]] = set()
    errors: list[tuple[str, str]] = []
    sums: dict[SummaryKey, Decimal] = defaultdict(Decimal)
    rated = 0
    # Sorting a run's CDRs in memory, planned for reading them all; only for the read
    # (the postings after it are planned as usual).
    with (
        set_based_read(conn, work_mem="256MB"),
        conn.cursor(name=f"cdr_rating_{run_id.hex}", binary=True) as cur,
    ):
        cur.execute(
            "select subscriber, cdr_id, event_type, start, quantity, destination, roaming"
            # Byte order (the columns' collation "C"): the order Python compares ids in
            # (rate_cdrs), and a sort that needs no locale.
            " from pg_temp.cdr_run order by subscriber, start, cdr_id"
        )
        while batch := cur.fetchmany(FETCH):
            lines: list[bytes] = [_COPY_SIGNATURE]
            line = lines.append
            for subscriber, group in groupby(batch, itemgetter(0)):
                customer_id, plan_name, wallet_id = subscribers[subscriber]
                versions, rater = raters[plan_name]
                window = windows.get(subscriber, _month)
                seed = partial(
                    _seed_once,
                    seeded,
                    subscriber,
                    versions,
                    ledger,
                    prior.get(subscriber, []),
                    window,
                )
                daily: dict[tuple[date, str], Decimal] = defaultdict(Decimal)
                for cdr_id, rating, fields, day in rater.rate_many(
                    ledger, subscriber, group, window, seed, errors
                ):
                    id_bytes = cdr_id.encode()
                    line(_ROW_HEAD(11, len(id_bytes)) + id_bytes + fields)
                    daily[(day, rating[7])] += rating[6]
                for (day, currency), total in daily.items():
                    sums[(day, plan_name, currency, customer_id, wallet_id)] += total
            rated += len(lines) - 1
            line(_COPY_TRAILER)
            with conn.cursor().copy(_COPY_RATINGS) as copy:
                copy.write(b"".join(lines))
    entries = entries_of_sums(run_id, sums)
    conn.execute(
        "insert into cdr_rating_runs (book_id, id, through, rated, unrateable, entries)"
        " values (%s, %s, %s, %s, %s, %s)",
        (book_id, run_id, through, rated, len(errors), len(entries)),
    )
    if errors:
        # Unrateable CDRs stay unrated: back in the queue, to be tried again.
        failed = [e[0] for e in errors]
        conn.execute(
            "insert into cdr_rating_queue select * from pg_temp.cdr_run where cdr_id = any(%s)",
            (failed,),
        )
        conn.execute(
            "update cdrs c set rating_error = u.reason from unnest(%s::text[], %s::text[])"
            " as u(id, reason) where c.book_id = %s and c.id = u.id",
            (failed, [e[1] for e in errors], book_id),
        )
    conn.execute("drop table pg_temp.cdr_run")
    for start in range(0, len(entries), 1000):
        post_entries(conn, book_id, entries[start : start + 1000])
    amounts: dict[str, Decimal] = defaultdict(Decimal)
    for key, total in sums.items():
        amounts[key[2]] += total
    return RatingRun(run_id, through, rated, len(errors), len(entries), dict(amounts))


def rate_in_parts(
    connect: Callable[[], AbstractContextManager[psycopg.Connection]],
    book_id: uuid.UUID,
    through: date,
    parts: int = 2,
) -> list[RatingRun]:
    """`rate_through` split over `parts` connections by subscriber, rated side by side:
    subscribers are independent (allowances are per subscriber, consumed in event-time
    order), so each part is a run of its own (its own ratings, summary entries and
    verify tie) and its own unit of work, committed as soon as it has rated. A part that
    fails rolls back alone, its CDRs stay queued for the next run, and its error is
    raised once the others are done. (Parts do not wait for each other to commit: one
    part holding its transaction open while another waits on a row it locked, an
    account's daily balance say, would never end.)"""
    if parts not in PARTS:
        raise InvalidBillingRequest(f"parts: one of {', '.join(map(str, PARTS))}")

    def one(part: int) -> RatingRun:
        with connect() as conn:
            try:
                run = rate_through(conn, book_id, through, part, parts)
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
            return run

    if parts == 1:
        return [one(0)]
    with ThreadPoolExecutor(parts, thread_name_prefix="cdr-rating") as pool:
        futures = [pool.submit(one, part) for part in range(parts)]
        wait(futures)
    for future in futures:
        if (failed := future.exception()) is not None:
            raise failed
    return [f.result() for f in futures]


def _seed_once(
    seeded: set[tuple[str, date]],
    subscriber: str,
    versions: Sequence[PlanVersion],
    ledger: AllowanceLedger,
    prior: list[tuple[str, datetime, Decimal]],
    window: Callable[[date], date],
    month: date,
) -> None:
    """Seed a subscriber's month (period) the first time the run meets it."""
    if (subscriber, month) not in seeded:
        seeded.add((subscriber, month))
        _seed(subscriber, versions, ledger, {month}, prior, window)


def summary_entries(
    run_id: uuid.UUID, rated: Iterable[tuple[RatedCdr, uuid.UUID, uuid.UUID | None]]
) -> list[JournalEntry]:
    """One entry per (local day, rate plan, currency, customer or wallet) with a nonzero sum."""
    sums: dict[SummaryKey, Decimal] = defaultdict(Decimal)
    for r, customer_id, wallet_id in rated:
        sums[(r.day, r.plan, r.currency, customer_id, wallet_id)] += r.amount
    return entries_of_sums(run_id, sums)


def entries_of_sums(run_id: uuid.UUID, sums: Mapping[SummaryKey, Decimal]) -> list[JournalEntry]:
    entries = []
    for (day, plan, currency, customer_id, wallet_id), total in sorted(
        sums.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2], str(kv[0][3]), str(kv[0][4]))
    ):
        if total == 0:
            continue
        money = Money(total, currency)
        debit = UNBILLED if wallet_id is None else wallet_account(wallet_id)
        dims = {"via": f"cdr_rating:{run_id}", "rate_plan": plan, "day": day.isoformat()}
        customer = str(customer_id)
        document = None if wallet_id is None else f"wallet:{wallet_id}"
        entries.append(
            build_entry(
                day,
                f"Rated usage {plan} {day.isoformat()}",
                [
                    Posting(debit, money, customer, document, dims),
                    Posting(USAGE, -money, customer, document, dims),
                ],
                idempotency_key=f"cdr_rating:{run_id}:{day}:{plan}:{currency}:{customer}:{wallet_id}",
            )
        )
    return entries


def usage_detail(
    conn: psycopg.Connection, book_id: uuid.UUID, subscriber: str | None = None
) -> list[dict[str, Any]]:
    """Rated CDRs (the itemized call detail)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "select c.id, c.subscriber, c.start, c.event_type, c.destination, r.zone, r.band,"
            " c.quantity, r.billed_quantity, r.included, r.amount, r.currency,"
            # An error of an earlier run is history once a later run rated the CDR.
            " case when r.cdr_id is null then c.rating_error end as rating_error"
            " from cdrs c left join cdr_ratings r on r.book_id = c.book_id and r.cdr_id = c.id"
            " where c.book_id = %s and (%s::text is null or c.subscriber = %s)"
            " order by c.start, c.id",
            (book_id, subscriber, subscriber),
        ).fetchall()
