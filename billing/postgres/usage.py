"""Usage events and meters in PostgreSQL (rules: billing.usage).

Ingestion: a request body is decoded straight into typed events (`decode_batch`:
gc-untracked Structs, properties kept as their JSON text), a list of plain JSON
values is converted to them (`_checked`); a batch whose events are all good is
checked once per distinct value and becomes columns (`_columns_of`); any bad
event sends it down `parse_event`'s path, event by event, which names each
refusal. The batch's distinct customers (id or external_id) and metrics are
resolved by one small query each, then one `INSERT … SELECT FROM unnest(…)`
stores the events, sent as binary arrays, one per column (no per-event lookups):
a good batch first without ON CONFLICT (in a savepoint;
a stored id makes it go again with it), else `ON CONFLICT (book_id, id) DO
NOTHING`. Only when some were not inserted does a second
statement compare them with the stored event of their id (the same content: a
duplicate; other content: a `conflict`); being a new statement it also sees
an event a concurrent batch committed while the insert waited on it, so the
same batch sent twice at once stores each event once and answers the other
copy's events as duplicates.

A meter aggregates one metric's events per customer over `[from, to)` (UTC
midnights of the period's dates), in SQL; a usage price without a meter of its
own metric aggregates with the price's `aggregation`, unfiltered.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from functools import lru_cache
from typing import Any

import msgspec
import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from billing.errors import InvalidBillingRequest
from billing.usage import (
    MAX_BATCH,
    MAX_ID_LENGTH,
    Aggregation,
    Event,
    MeterSpec,
    Rejection,
    check_meter,
    event_moments,
    event_quantity,
    first_moment,
    latest_moment,
    metric_name,
    parse_event,
)
from ledger.errors import Conflict, LedgerError, NotFound
from ledger.postgres.books import book_window

__all__ = [
    "BatchTooLarge",
    "EventJson",
    "IngestResult",
    "Meter",
    "aggregate",
    "aggregate_many",
    "aggregate_many_query",
    "create_meter",
    "decode_batch",
    "ingest",
    "ingest_decoded",
    "list_meters",
    "meter_for",
]


class BatchTooLarge(LedgerError):
    code = "batch_too_large"
    status = 413


@dataclass(frozen=True, slots=True)
class IngestResult:
    accepted: int
    duplicates: list[str]
    rejected: list[Rejection]


@dataclass(frozen=True, slots=True)
class Meter:
    id: uuid.UUID | None  # None: the implicit meter of a usage price
    spec: MeterSpec
    created_at: datetime | None = None


def _utc_midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def _today(conn: psycopg.Connection, book_id: uuid.UUID) -> date:
    row = conn.execute(
        "select coalesce(clock_date, (now() at time zone 'UTC')::date) from books where id = %s",
        (book_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"book {book_id} does not exist")
    return row[0]  # type: ignore[no-any-return]


_CUSTOMERS = """
select c.id, c.external_id from customers c
 where c.book_id = %(book)s and (c.external_id = any(%(refs)s) or c.id = any(%(uuids)s))
"""

_KNOWN_METRICS = """
select m.metric from unnest(%(metrics)b::text[]) as m(metric)
 where exists (select 1 from meters where book_id = %(book)s and metric = m.metric)
    or exists (select 1 from prices where book_id = %(book)s and metric = m.metric)
"""

# The rows arrive as binary arrays (one per column), sorted by id: one lock
# order for every batch, so overlapping batches cannot deadlock. Quantities come
# as their decimal text (numeric's input reads it exactly; a Decimal's binary
# dump cost three times a string's), properties as JSON text.
_INSERT = """
insert into usage_events (book_id, id, customer_id, metric, quantity, occurred_at, properties)
select %(book)s, t.id, t.customer_id, t.metric, t.quantity::numeric, t.occurred_at,
       t.properties::jsonb
  from unnest(%(ids)b::text[], %(customers)b::uuid[], %(metrics)b::text[],
              %(quantities)b::text[], %(times)b::timestamptz[], %(properties)b::text[])
       as t(id, customer_id, metric, quantity, occurred_at, properties)
 order by t.id collate "C"  -- bytewise: the same order, without the locale's slow compare
on conflict (book_id, id) do nothing
returning id
"""

# A batch of new events (the usual case) goes in without ON CONFLICT: its
# speculative insertion (an extra WAL record per row) took a quarter of the
# statement. An id already stored, or being stored by a concurrent batch, fails it
# with a unique violation (at once when it sorts first, as a resent batch's does),
# and the batch goes in again by `_INSERT` — as one lock order, no deadlock either.
_INSERT_NEW = """
insert into usage_events (book_id, id, customer_id, metric, quantity, occurred_at, properties)
select %(book)s, t.id, t.customer_id, t.metric, t.quantity::numeric, t.occurred_at,
       t.properties::jsonb
  from unnest(%(ids)b::text[], %(customers)b::uuid[], %(metrics)b::text[],
              %(quantities)b::text[], %(times)b::timestamptz[], %(properties)b::text[])
       as t(id, customer_id, metric, quantity, occurred_at, properties)
 order by t.id collate "C"
"""

# Only the events not inserted are compared, by key, with what is stored: the
# same content is a duplicate, other content a conflict. A fresh statement,
# so an event a concurrent batch committed while this one waited is seen too.
_SAME = """
select t.id, e.customer_id = t.customer_id and e.metric = t.metric
       and e.quantity = t.quantity::numeric and e.occurred_at = t.occurred_at
       and e.properties = t.properties::jsonb
  from unnest(%(ids)b::text[], %(customers)b::uuid[], %(metrics)b::text[],
              %(quantities)b::text[], %(times)b::timestamptz[], %(properties)b::text[])
       as t(id, customer_id, metric, quantity, occurred_at, properties)
  join usage_events e on e.book_id = %(book)s and e.id = t.id
"""


@lru_cache(maxsize=4096)  # a batch names few customers, each many times
def _customer_uuid(ref: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(ref)
    except ValueError:
        return None


def _same(a: Event, b: Event) -> bool:
    return (a.customer, a.metric, a.quantity, a.occurred_at, a.properties) == (
        b.customer,
        b.metric,
        b.quantity,
        b.occurred_at,
        b.properties,
    )


def check_batch(raw: object) -> list[Any]:
    """The events of a request body: a JSON array, or `{"events": [...]}`."""
    if isinstance(raw, dict) and set(raw) == {"events"}:
        raw = raw["events"]
    if not isinstance(raw, list):
        raise InvalidBillingRequest('a batch is a JSON array of events, or {"events": [...]}')
    if len(raw) > MAX_BATCH:
        raise BatchTooLarge(
            f"a batch holds at most {MAX_BATCH} events, this one {len(raw)}; split it",
            limit=MAX_BATCH,
            size=len(raw),
        )
    return raw


def _customers(
    conn: psycopg.Connection, book_id: uuid.UUID, refs: set[str]
) -> dict[str, uuid.UUID]:
    """Each customer reference of the batch that names a customer: by id, else external_id."""
    uuids = {ref: u for ref in refs if (u := _customer_uuid(ref)) is not None}
    rows = conn.execute(
        _CUSTOMERS, {"book": book_id, "refs": list(refs), "uuids": list(set(uuids.values()))}
    ).fetchall()
    by_id = {row[0]: row[0] for row in rows}
    by_external = {row[1]: row[0] for row in rows if row[1] is not None}
    found: dict[str, uuid.UUID] = {}
    for ref in refs:
        u = uuids.get(ref)
        customer = by_id.get(u) if u is not None else None
        customer = customer or by_external.get(ref)
        if customer is not None:
            found[ref] = customer
    return found


def _columns(
    book_id: uuid.UUID, events: Sequence[Event], customers: dict[str, uuid.UUID]
) -> dict[str, Any]:
    """The events as one array per column (psycopg sends them in binary)."""
    encode = msgspec.json.encode
    return {
        "book": book_id,
        "ids": [e.id for e in events],
        "customers": [customers[e.customer] for e in events],
        "metrics": [e.metric for e in events],
        "quantities": [str(e.quantity) for e in events],
        "times": [e.occurred_at for e in events],
        "properties": [encode(e.properties).decode() for e in events],
    }


class _EventIn(msgspec.Struct, forbid_unknown_fields=True):
    """An event's JSON shape, checked in one C pass (msgspec.convert); what it cannot
    say (id and name rules, the quantity's digits, the timestamp) `_columns_of` says."""

    id: str
    customer: str
    metric: str
    timestamp: str
    quantity: str | int = "1"
    properties: dict[str, Any] = {}


_EVENTS = list[_EventIn]


class EventJson(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """`_EventIn` decoded straight from a request body: properties stay the JSON text
    they were sent as (no dict per event, nothing re-encoded), and the events are not
    tracked by the garbage collector (a batch's 10,000 tracked objects set off full
    collections of the whole server heap, 120 ms each, every third batch)."""

    id: str
    customer: str
    metric: str
    timestamp: str
    quantity: str | int = "1"
    properties: msgspec.Raw = msgspec.Raw(b"{}")


class _BatchJson(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    events: list[EventJson]


_BATCH_JSON = msgspec.json.Decoder(list[EventJson] | _BatchJson)


def decode_batch(body: bytes) -> list[EventJson] | None:
    """A request body's events when it is a batch (a JSON array or `{"events": [...]}`)
    of events of the right JSON shape, else None: the caller decodes it as before,
    and `parse_event` says what is wrong. More than MAX_BATCH events: BatchTooLarge."""
    try:
        decoded = _BATCH_JSON.decode(body)
    except msgspec.MsgspecError:
        return None
    events = decoded.events if isinstance(decoded, _BatchJson) else decoded
    check_batch(events)
    return events


@dataclass(slots=True)
class _Columns:
    """Good events, one list per column (what the insert sends)."""

    ids: list[str]
    customers: list[str]
    metrics: list[str]
    quantities: list[str]  # decimal text
    times: list[datetime]
    properties: list[str]  # JSON objects


def _checked(raw: list[Any], first_day: date, today: date) -> _Columns | None:
    """The batch as columns when every event is good and no id comes twice, else None:
    the caller then takes `parse_event`'s path, event by event, which says what is
    wrong with each (so a bad batch answers exactly as before, only a good one is
    faster)."""
    try:
        events = msgspec.convert(raw, _EVENTS)
    except msgspec.ValidationError:
        return None
    encode = msgspec.json.encode
    return _columns_of(events, first_day, today, [encode(e.properties).decode() for e in events])


# A number with a fraction or exponent, or an escape, in properties sent as JSON
# text (or a string that looks like one): rewritten as `_checked` writes a decoded
# object (1.10 and 1e2 as msgspec's floats 1.1 and 100.0; an escape checked), so
# what is stored does not depend on the way the batch took.
_REWRITE = re.compile(rb"[0-9][.eE]|\\")


def _object_text(text: bytes) -> str | None:
    """Properties sent as JSON text: their text when they are an object, else None."""
    if text[:1] != b"{":  # msgspec.Raw starts at the value's first character
        return None
    try:
        if _REWRITE.search(text) is not None:
            text = msgspec.json.encode(msgspec.json.decode(text))
        return text.decode()
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None


def checked_json(events: list[EventJson], first_day: date, today: date) -> _Columns | None:
    """`_checked` for events decoded by `decode_batch`."""
    raw = [bytes(e.properties) for e in events]
    text = {r: _object_text(r) for r in set(raw)}  # a batch repeats its properties often
    return _columns_of(events, first_day, today, [text[r] for r in raw])


def _columns_of(
    events: Sequence[_EventIn] | Sequence[EventJson],
    first_day: date,
    today: date,
    properties: list[str | None],
) -> _Columns | None:
    """The columns of events of the right shape, or None when one breaks a rule.
    The checks are `parse_event`'s, made once per distinct value: a batch names
    few customers, metrics, quantities and timestamps, each many times."""
    ids = [e.id for e in events]
    texts = [p for p in properties if p is not None]
    if (
        len(set(ids)) != len(ids)
        or max(map(len, ids), default=0) > MAX_ID_LENGTH
        or not all(map(str.strip, ids))
        or len(texts) < len(properties)
    ):
        return None
    customers = [e.customer for e in events]
    metrics = [e.metric for e in events]
    if not all(map(str.strip, set(customers))) or not all(map(metric_name, set(metrics))):
        return None
    # Each timestamp parsed (a meter's events rarely share one: the dict of distinct
    # ones cost more than it saved), in one C-speed pass.
    times = event_moments(
        [e.timestamp for e in events], first_moment(first_day), latest_moment(today)
    )
    amounts = {q: event_quantity(q) for q in {e.quantity for e in events}}
    quantity = {q: str(exact) for q, exact in amounts.items() if exact is not None}
    if times is None or len(quantity) < len(amounts):
        return None
    return _Columns(ids, customers, metrics, [quantity[e.quantity] for e in events], times, texts)


def _known_metrics(conn: psycopg.Connection, book_id: uuid.UUID, metrics: set[str]) -> set[str]:
    return {
        row[0] for row in conn.execute(_KNOWN_METRICS, {"book": book_id, "metrics": list(metrics)})
    }


def _ingest_checked(
    conn: psycopg.Connection, book_id: uuid.UUID, batch: _Columns
) -> IngestResult | None:
    """Store a batch of good events (`_checked`); None, having written nothing, when
    one names an unknown customer or metric (the event-by-event path says which)."""
    customers = _customers(conn, book_id, set(batch.customers))
    if len(customers) < len(set(batch.customers)):
        return None
    if len(_known_metrics(conn, book_id, set(batch.metrics))) < len(set(batch.metrics)):
        return None
    columns: dict[str, Any] = {
        "book": book_id,
        "ids": batch.ids,
        "customers": [customers[c] for c in batch.customers],
        "metrics": batch.metrics,
        "quantities": batch.quantities,
        "times": batch.times,
        "properties": batch.properties,
    }
    duplicates: list[str] = []
    rejected: list[Rejection] = []
    with conn.cursor(binary=True) as cur:
        try:
            with conn.transaction():  # a savepoint: a unique violation undoes only this
                cur.execute(_INSERT_NEW, columns)
            inserted = set(batch.ids)
        except psycopg.errors.UniqueViolation:
            inserted = {row[0] for row in cur.execute(_INSERT, columns)}
        if len(inserted) < len(batch.ids):  # stored before: the same (a duplicate) or not
            stored = [n for n, i in enumerate(batch.ids) if i not in inserted]
            again = {k: [v[n] for n in stored] for k, v in columns.items() if k != "book"}
            same: dict[str, bool] = dict(cur.execute(_SAME, {"book": book_id, **again}).fetchall())
            for n in stored:
                _answer(batch.ids[n], bool(same.get(batch.ids[n])), duplicates, rejected)
    return IngestResult(len(inserted), duplicates, rejected)


def ingest_decoded(
    conn: psycopg.Connection, book_id: uuid.UUID, events: list[EventJson]
) -> IngestResult | None:
    """Store a batch `decode_batch` decoded, in the caller's transaction, when every
    event is good and names a known customer and metric; else None, having written
    nothing: `ingest` of the same batch (decoded as plain JSON) then says which."""
    good = checked_json(events, book_window(conn, book_id).first, _today(conn, book_id))
    if good is None or not good.ids:
        return None
    return _ingest_checked(conn, book_id, good)


def ingest(conn: psycopg.Connection, book_id: uuid.UUID, raw: Sequence[object]) -> IngestResult:
    """Store a batch of events, in the caller's transaction."""
    raw = list(raw) if not isinstance(raw, list) else raw
    check_batch(raw)
    today = _today(conn, book_id)
    first_day = book_window(conn, book_id).first
    good = _checked(raw, first_day, today)
    if good is not None and good.ids:
        done = _ingest_checked(conn, book_id, good)
        if done is not None:
            return done
    rejected: list[Rejection] = []
    duplicates: list[str] = []
    seen: dict[str, Event] = {}
    for item in raw:
        parsed = parse_event(item, first_day, today)
        if isinstance(parsed, Rejection):
            rejected.append(parsed)
        elif parsed.id in seen:  # twice in one batch: the first one counts
            if _same(seen[parsed.id], parsed):
                duplicates.append(parsed.id)
            else:
                rejected.append(
                    Rejection(parsed.id, "conflict", "the batch holds this id twice, differently")
                )
        else:
            seen[parsed.id] = parsed
    events = list(seen.values())
    if not events:
        return IngestResult(0, duplicates, rejected)
    customers = _customers(conn, book_id, {e.customer for e in events})
    known = _known_metrics(conn, book_id, {e.metric for e in events})
    storable: list[Event] = []
    for event in events:  # in the batch's order, as the answer lists them
        if event.customer not in customers:
            rejected.append(
                Rejection(
                    event.id, "unknown_customer", f"customer {event.customer!r} does not exist"
                )
            )
        elif event.metric not in known:
            rejected.append(
                Rejection(
                    event.id,
                    "unknown_metric",
                    f"metric {event.metric!r} has no meter and no usage price in this book",
                )
            )
        else:
            storable.append(event)
    if not storable:
        return IngestResult(0, duplicates, rejected)
    with conn.cursor(binary=True) as cur:
        inserted = {row[0] for row in cur.execute(_INSERT, _columns(book_id, storable, customers))}
        stored = [e for e in storable if e.id not in inserted]
        if stored:  # stored before (or by a concurrent batch that committed first)
            same: dict[str, bool] = dict(
                cur.execute(_SAME, _columns(book_id, stored, customers)).fetchall()
            )
            for event in stored:
                _answer(event.id, bool(same.get(event.id)), duplicates, rejected)
    return IngestResult(len(inserted), duplicates, rejected)


def _answer(event_id: str, same: bool, duplicates: list[str], rejected: list[Rejection]) -> None:
    if same:
        duplicates.append(event_id)
    else:
        rejected.append(
            Rejection(event_id, "conflict", "an event with this id and other content exists")
        )


# --- meters --------------------------------------------------------------------------

_METER_COLUMNS = "id, metric, aggregation, property, filters, group_by, created_at"


def _meter(row: dict[str, Any]) -> Meter:
    spec = MeterSpec(
        row["metric"],
        Aggregation(row["aggregation"]),
        row["property"],
        {k: tuple(v) for k, v in row["filters"].items()},
        tuple(row["group_by"]),
    )
    return Meter(row["id"], spec, row["created_at"])


def create_meter(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    metric: object,
    aggregation: object,
    prop: object = None,
    filters: object = None,
    group_by: object = None,
) -> Meter:
    spec = check_meter(metric, aggregation, prop, filters, group_by)
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "insert into meters (book_id, id, metric, aggregation, property, filters, group_by)"
            " values (%s, %s, %s, %s, %s, %s, %s) on conflict (book_id, metric) do nothing"
            f" returning {_METER_COLUMNS}",
            (
                book_id,
                uuid.uuid4(),
                spec.metric,
                spec.aggregation.value,
                spec.property,
                Jsonb({k: list(v) for k, v in spec.filters.items()}),
                Jsonb(list(spec.group_by)),
            ),
        ).fetchone()
    if row is None:
        raise Conflict(f"a meter for metric {spec.metric!r} exists already", metric=spec.metric)
    return _meter(row)


def list_meters(conn: psycopg.Connection, book_id: uuid.UUID) -> list[Meter]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"select {_METER_COLUMNS} from meters where book_id = %s order by metric",
            (book_id,),
        ).fetchall()
    return [_meter(r) for r in rows]


def meter_for(
    conn: psycopg.Connection, book_id: uuid.UUID, metric: str, aggregation: str | None = None
) -> Meter:
    """The meter of a metric, or the implicit one of a usage price's aggregation."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"select {_METER_COLUMNS} from meters where book_id = %s and metric = %s",
            (book_id, metric),
        ).fetchone()
    if row is not None:
        return _meter(row)
    if aggregation is None:
        known = conn.execute(
            "select aggregation from prices where book_id = %s and metric = %s limit 1",
            (book_id, metric),
        ).fetchone()
        if known is None:
            raise NotFound(f"metric {metric!r} has no meter and no usage price in this book")
        aggregation = known[0]
    if aggregation == Aggregation.UNIQUE_COUNT:
        raise InvalidBillingRequest(
            f"metric {metric!r} counts unique values of a property: create its meter"
            " (POST /v1/meters with property)",
            metric=metric,
        )
    return Meter(None, MeterSpec(metric, Aggregation(str(aggregation))))


_AGGREGATES: dict[Aggregation, sql.Composable] = {
    Aggregation.SUM: sql.SQL("coalesce(sum(quantity), 0)"),
    Aggregation.COUNT: sql.SQL("count(*)"),
    Aggregation.MAX: sql.SQL("coalesce(max(quantity), 0)"),
    Aggregation.LAST: sql.SQL(
        "coalesce((array_agg(quantity order by occurred_at desc, id desc))[1], 0)"
    ),
}


def _meter_sql(
    meter: MeterSpec,
) -> tuple[list[sql.Composable], sql.Composable, list[sql.Composable], dict[str, Any]]:
    """The meter's group expressions, value, filter conditions and filter parameters."""
    value: sql.Composable
    if meter.aggregation is Aggregation.UNIQUE_COUNT:
        value = sql.SQL("count(distinct properties ->> {})").format(sql.Literal(meter.property))
    else:
        value = _AGGREGATES[meter.aggregation]
    groups: list[sql.Composable] = [
        sql.SQL("properties ->> {}").format(sql.Literal(name)) for name in meter.group_by
    ]
    where: list[sql.Composable] = []
    params: dict[str, Any] = {}
    for i, (name, values) in enumerate(sorted(meter.filters.items())):
        params[f"f{i}"] = list(values)
        where.append(
            sql.SQL("properties ->> {} = any({})").format(
                sql.Literal(name), sql.Placeholder(f"f{i}")
            )
        )
    return groups, value, where, params


def aggregate(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    customer_id: uuid.UUID,
    meter: MeterSpec,
    start: date,
    end: date,
) -> list[tuple[dict[str, str | None], Decimal]]:
    """The meter's quantity per group over `[start, end)`; without group_by one row
    (zero when nothing happened), with it one row per group seen, in group order."""
    groups, value, filters, params = _meter_sql(meter)
    where: list[sql.Composable] = [
        sql.SQL(
            "book_id = %(book)s and customer_id = %(customer)s and metric = %(metric)s"
            " and occurred_at >= %(start)s and occurred_at < %(end)s"
        ),
        *filters,
    ]
    params.update(
        {
            "book": book_id,
            "customer": customer_id,
            "metric": meter.metric,
            "start": _utc_midnight(start),
            "end": _utc_midnight(end),
        }
    )
    query = sql.SQL("select {} from usage_events where {}").format(
        sql.SQL(", ").join([*groups, value]), sql.SQL(" and ").join(where)
    )
    if groups:
        order = sql.SQL(", ").join(sql.SQL(str(i + 1)) for i in range(len(groups)))
        query = sql.SQL("{} group by {} order by {}").format(query, order, order)
    rows = conn.execute(query, params).fetchall()
    return [(dict(zip(meter.group_by, row[:-1], strict=True)), Decimal(row[-1])) for row in rows]


def aggregate_many_query(
    book_id: uuid.UUID,
    meter: MeterSpec,
    windows: Sequence[tuple[uuid.UUID, date, date]],
) -> tuple[sql.Composed, dict[str, Any]]:
    """`aggregate_many`'s statement and parameters (also for EXPLAIN)."""
    groups, value, filters, params = _meter_sql(meter)
    params.update(
        {
            "book": book_id,
            "metric": meter.metric,
            "customers": [w[0] for w in windows],
            "starts": [_utc_midnight(w[1]) for w in windows],
            "ends": [_utc_midnight(w[2]) for w in windows],
        }
    )
    # LATERAL: each window is `aggregate`'s own statement, an index range scan (a join
    # let the planner hash all the book's events of the metric, a scan per batch); an
    # aggregate without group-by answers one row also for no events, as `aggregate`.
    where = sql.SQL("").join(sql.SQL(" and {}").format(f) for f in filters)
    inner = sql.SQL(
        "select {} from usage_events where book_id = %(book)s and customer_id = t.customer"
        " and metric = %(metric)s and occurred_at >= t.lo and occurred_at < t.hi{}"
    ).format(sql.SQL(", ").join([*groups, value]), where)
    if groups:
        inner = sql.SQL("{} group by {}").format(
            inner, sql.SQL(", ").join(sql.SQL(str(i + 1)) for i in range(len(groups)))
        )
    order = sql.SQL(", ").join(sql.SQL(str(i + 1)) for i in range(len(groups) + 1))
    query = sql.SQL(
        "select t.i, a.* from unnest(%(customers)s::uuid[], %(starts)s::timestamptz[],"
        " %(ends)s::timestamptz[]) with ordinality as t(customer, lo, hi, i)"
        " cross join lateral ({}) as a order by {}"
    ).format(inner, order)
    return query, params


def aggregate_many(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    meter: MeterSpec,
    windows: Sequence[tuple[uuid.UUID, date, date]],
) -> list[list[tuple[dict[str, str | None], Decimal]]]:
    """`aggregate` of each (customer, start, end) window, in one statement: for each
    window the rows `aggregate` gives (without events: one zero row without group_by,
    none with it), in the same order."""
    if not windows:
        return []
    query, params = aggregate_many_query(book_id, meter, windows)
    out: list[list[tuple[dict[str, str | None], Decimal]]] = [[] for _ in windows]
    for row in conn.execute(query, params):
        out[row[0] - 1].append(
            (dict(zip(meter.group_by, row[1:-1], strict=True)), Decimal(row[-1]))
        )
    return out


def meters_json_filters(meter: MeterSpec) -> dict[str, list[str]]:
    return {k: list(v) for k, v in meter.filters.items()}


def iter_batches(items: Iterable[Any], size: int = MAX_BATCH) -> Iterable[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
