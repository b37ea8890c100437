"""Events: what changed in a book, in Stripe's shape, as plain JSON values.

An event is `{"id": "evt_…", "object": "event", "type": "invoice.paid",
"created": <unix seconds>, "data": {"object": {...}, "previous_attributes":
{...}}}`. `data.object` is the billing object as it is after the change (its
fields as JSON: ids and decimals as strings, dates ISO 8601), with `object`
naming its kind (the type's first part); on updates `previous_attributes`
holds the old value of each field that changed, and nothing else.

Events are written in the transaction of the change they describe (the
outbox: billing/postgres/events.py) and delivered after commit.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

__all__ = [
    "EVENT_TYPES",
    "event_id",
    "jsonable",
    "object_json",
    "previous_attributes",
]

EVENT_TYPES = (
    "customer.created",
    "customer.updated",
    "subscription.created",
    "subscription.updated",
    "subscription.canceled",
    "subscription.paused",
    "subscription.resumed",
    "subscription.past_due",
    "subscription.suspended",
    "invoice.finalized",
    "invoice.paid",
    "invoice.voided",
    "invoice.marked_uncollectible",
    "invoice.overdue",  # a dunning run passing the book's past-due day
    "payment.succeeded",
    "payment.refunded",
    "payment.failed",  # a collected direct debit returned by the bank
    "dispute.created",
    "dispute.closed",
    "credit_note.created",
    "statement.imported",
    "period.closed",
    "wallet.low_balance",  # a prepaid wallet's available value fell below its threshold
)


def event_id() -> str:
    return f"evt_{uuid.uuid4().hex}"


# The types most values are, by exact type (a billing run's events hold tens of
# thousands of them): a set lookup instead of the isinstance chain of _jsonable.
_AS_IS: frozenset[type] = frozenset({type(None), bool, int, str})
_AS_STR: frozenset[type] = frozenset({Decimal, uuid.UUID})
_AS_ISO: frozenset[type] = frozenset({date, datetime})
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}  # a dataclass's field names, computed once


def jsonable(value: object) -> Any:
    """A value as JSON: dataclasses as objects, Decimals and ids as strings."""
    kind = type(value)
    if kind in _AS_IS:
        return value
    if kind in _AS_STR:
        return str(value)
    if kind in _AS_ISO:
        return value.isoformat()  # type: ignore[attr-defined]
    names = _FIELD_NAMES.get(kind)
    if names is not None:
        return {name: jsonable(getattr(value, name)) for name in names}
    if kind is tuple or kind is list:
        return [jsonable(v) for v in value]  # type: ignore[attr-defined]
    if kind is dict:
        return {str(k): jsonable(v) for k, v in value.items()}  # type: ignore[attr-defined]
    return _jsonable(value)


def _jsonable(value: object) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, Enum):
        return jsonable(value.value)
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = tuple(f.name for f in dataclasses.fields(value))
        _FIELD_NAMES[type(value)] = names
        return {name: jsonable(getattr(value, name)) for name in names}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    raise TypeError(f"an event cannot carry a {type(value).__name__}")


def object_json(event_type: str, obj: object) -> dict[str, Any]:
    """`data.object` of an event: the object's fields, `object` naming its kind
    (a dataclass's name in snake case, CreditNote: credit_note; for a mapping
    the event type's first part, unless it names its own)."""
    fields = jsonable(obj)
    if not isinstance(fields, dict):
        raise TypeError(f"{event_type}: data.object must be an object")
    if dataclasses.is_dataclass(obj):
        kind = re.sub(r"(?<!^)(?=[A-Z])", "_", type(obj).__name__).lower()
    else:
        kind = fields.pop("object", None) or event_type.rsplit(".", 1)[0]
    return {"object": kind, **fields}


def previous_attributes(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """The old value of every field that changed (both as JSON)."""
    return {name: value for name, value in before.items() if after.get(name) != value}
