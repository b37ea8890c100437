"""The outbox: events written in the transaction of the change they describe.

`record_event` inserts one row into `events`; a rolled-back transaction takes
its events with it, so nothing is ever announced that did not happen. A
database trigger (migration 0010) queues a delivery for every enabled webhook
endpoint that wants the type, in the same transaction; the webhook worker
(adapters/webhooks) sends them after commit. Consumers may also poll
`GET /v1/events`, ordered by `sequence`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from billing.events import event_id, jsonable, object_json, previous_attributes
from ledger.errors import NotFound

T = TypeVar("T")


def record_event(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    type: str,
    obj: T,
    previous: object = None,
) -> T:
    """Write an event about `obj` (as it is now); `previous` is the object
    before an update, for `previous_attributes`. Returns `obj`, so a service
    can end with `return record_event(conn, book_id, "x.updated", thing)`."""
    conn.execute(_INSERT, _row(book_id, type, obj, previous))
    return obj


_INSERT = "insert into events (book_id, id, type, object_id, data) values (%s, %s, %s, %s, %s)"


def _row(book_id: uuid.UUID, type: str, obj: object, previous: object) -> tuple[Any, ...]:
    data: dict[str, Any] = {"object": object_json(type, obj)}
    if previous is not None:
        data["previous_attributes"] = previous_attributes(jsonable(previous), data["object"])
    object_id = data["object"].get("id")
    return (book_id, event_id(), type, None if object_id is None else str(object_id), Jsonb(data))


def record_events(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    type: str,
    objs: Sequence[object],
) -> None:
    """`record_event` for many objects in one COPY (billing runs): the rows get their
    `sequence` in the order of `objs`, and the row triggers (webhook and CRM fan-out)
    fire for each as they do for an INSERT."""
    if not objs:
        return
    with conn.cursor() as cur, cur.copy(_COPY) as copy:
        for obj in objs:
            copy.write_row(_row(book_id, type, obj, None))


_COPY = "copy events (book_id, id, type, object_id, data) from stdin"


def event_text(type: str, obj: object) -> tuple[str | None, str]:
    """The object id and `data` (as JSON text) of `record_event(…, type, obj)`'s row, to
    be written later by `record_event_texts` (a billing run renders them before it takes
    its invoice numbers, and puts the numbers in then)."""
    _, _, _, object_id, data = _row(uuid.UUID(int=0), type, obj, None)
    return object_id, json.dumps(data.obj)


def record_event_texts(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    type: str,
    texts: Sequence[tuple[str | None, str]],
) -> None:
    """`record_events` of rows made by `event_text`, in one COPY, in this order."""
    if not texts:
        return
    with conn.cursor() as cur, cur.copy(_COPY) as copy:
        for object_id, data in texts:
            copy.write_row((book_id, event_id(), type, object_id, data))


def has_event(conn: psycopg.Connection, book_id: uuid.UUID, type: str, object_id: str) -> bool:
    row = conn.execute(
        "select 1 from events where book_id = %s and object_id = %s and type = %s limit 1",
        (book_id, object_id, type),
    ).fetchone()
    return row is not None


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    sequence: int
    type: str
    object_id: str | None
    created_at: datetime
    data: dict[str, Any]

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "event",
            "type": self.type,
            "created": int(self.created_at.timestamp()),
            "sequence": self.sequence,
            "data": self.data,
        }


_COLUMNS = "id, sequence, type, object_id, created_at, data"


def get_event(conn: psycopg.Connection, book_id: uuid.UUID, ref: str) -> Event:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"select {_COLUMNS} from events where book_id = %s and id = %s", (book_id, ref)
        ).fetchone()
    if row is None:
        raise NotFound(f"event {ref!r} does not exist in this book", event=ref)
    return Event(**row)


def list_events(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    *,
    before: int | None,
    limit: int,
    types: list[str] | None = None,
    object_id: str | None = None,
) -> list[Event]:
    """Newest first (as Stripe lists them); `before` is the last sequence seen."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"select {_COLUMNS} from events where book_id = %s"
            " and (%s::bigint is null or sequence < %s)"
            " and (%s::text[] is null or type = any(%s))"
            " and (%s::text is null or object_id = %s)"
            " order by sequence desc limit %s",
            (book_id, before, before, types, types, object_id, object_id, limit),
        ).fetchall()
    return [Event(**r) for r in rows]
