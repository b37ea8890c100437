"""Usage as pure rules: which events a book accepts, what a meter is, and how a
period's usage becomes invoice lines.

- **Events** carry the sender's `id`, a customer, a metric, a non-negative
  decimal `quantity`, a `timestamp` with its UTC offset and `properties` (a
  JSON object). An event dated more than `FUTURE_TOLERANCE` after the end of
  the book's today, or before the book's accepted window, is refused; so are
  negative or non-numeric quantities. A refusal is per event: the rest of the
  batch is stored. A batch holds at most `MAX_BATCH` events.
- **Meters** aggregate a metric's events over a period: `sum` and `max` of
  the quantities, `count` of the events, `unique_count` of the distinct
  values of one property, `last` quantity by timestamp. Filters keep the
  events whose property equals a value (or one of a list); `group_by` splits
  the result by property values.
- **Rating in arrears.** A usage price rates each group's quantity after the
  period's free units (consumed in group order) with its charge model
  (billing.rating). A period without usage bills nothing, not even a tier's
  flat amount or a package; a price with a minimum commitment bills the
  shortfall (minimum − rated usage) as its own line. Tiered lines say their
  tier breakdown.
- **Late usage** for a billed period is the difference between rating the
  period's whole quantity now and what its invoices billed: tiers stay right.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from enum import StrEnum
from functools import lru_cache
from typing import Any

from billing.errors import InvalidBillingRequest
from billing.periods import Period
from billing.rating import (
    Charge,
    GraduatedCharge,
    PackageCharge,
    PerUnitCharge,
    Tier,
    VolumeCharge,
    rate,
)
from ledger.money import Money

__all__ = [
    "FUTURE_TOLERANCE",
    "MAX_BATCH",
    "MAX_ID_LENGTH",
    "USAGE_ACCOUNT",
    "Aggregation",
    "Event",
    "MeterSpec",
    "RatedGroup",
    "Rejection",
    "UsageLine",
    "UsagePrice",
    "UsageTerms",
    "check_meter",
    "event_moment",
    "event_moments",
    "event_quantity",
    "first_moment",
    "group_label",
    "late_amount",
    "latest_moment",
    "metric_name",
    "parse_event",
    "rate_usage",
    "tier_breakdown",
    "usage_lines",
]

MAX_BATCH = 10_000
FUTURE_TOLERANCE = timedelta(days=1)  # past the end of the book's today (clock skew, zones)
USAGE_ACCOUNT = "Income:Usage"
MAX_ID_LENGTH = 255
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
_EVENT_KEYS = frozenset({"id", "customer", "metric", "quantity", "timestamp", "properties"})


class Aggregation(StrEnum):
    SUM = "sum"
    COUNT = "count"
    MAX = "max"
    UNIQUE_COUNT = "unique_count"
    LAST = "last"


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    customer: str  # id or external_id, as sent
    metric: str
    quantity: Decimal
    occurred_at: datetime  # aware
    properties: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Rejection:
    id: str | None
    reason: str  # a stable code: invalid_event, invalid_quantity, conflict, …
    message: str


def _reject(raw_id: object, reason: str, message: str) -> Rejection:
    return Rejection(raw_id if isinstance(raw_id, str) else None, reason, message)


def parse_event(raw: object, first_day: date, today: date) -> Event | Rejection:
    """An event from its JSON form, or why it is refused (`first_day`: the book's
    first accepted date; `today`: the book's today)."""
    # Runs once per event of a 10,000-event batch: the cheap checks come first
    # (a dict before the Mapping ABC, a key-view comparison before a set).
    if not isinstance(raw, dict) and not isinstance(raw, Mapping):
        return _reject(None, "invalid_event", "an event is a JSON object")
    event_id = raw.get("id")
    if not isinstance(event_id, str) or not event_id.strip() or len(event_id) > MAX_ID_LENGTH:
        return _reject(
            event_id, "invalid_event", f"id must be a non-empty string of at most {MAX_ID_LENGTH}"
        )
    if not raw.keys() <= _EVENT_KEYS:
        unknown = set(raw) - _EVENT_KEYS
        return _reject(event_id, "invalid_event", f"unknown field(s) {', '.join(sorted(unknown))}")
    customer, metric = raw.get("customer"), raw.get("metric")
    if not isinstance(customer, str) or not customer.strip():
        return _reject(event_id, "invalid_event", "customer must be a customer id or external_id")
    if not isinstance(metric, str) or not _metric_name(metric):
        return _reject(event_id, "invalid_event", "metric must be a name of 1-100 characters")
    quantity = _quantity(raw.get("quantity", "1"))
    if quantity is None:
        return _reject(
            event_id, "invalid_quantity", "quantity must be a decimal string, zero or more"
        )
    occurred = _timestamp(raw.get("timestamp"))
    if occurred is None:
        return _reject(
            event_id,
            "invalid_timestamp",
            "timestamp must be ISO 8601 with a UTC offset, e.g. 2026-03-01T12:00:00Z",
        )
    if occurred > _latest(today):
        return _reject(
            event_id,
            "timestamp_in_future",
            f"timestamp {raw.get('timestamp')} is more than {FUTURE_TOLERANCE.days} day after"
            f" the book's today ({today.isoformat()})",
        )
    if occurred < _first_moment(first_day):
        return _reject(
            event_id,
            "timestamp_not_accepted",
            f"timestamp {raw.get('timestamp')} is before the book's accepted dates"
            f" (from {first_day.isoformat()})",
        )
    properties = raw.get("properties") or {}
    if not isinstance(properties, dict):
        return _reject(event_id, "invalid_event", "properties must be a JSON object")
    return Event(event_id, customer, metric, quantity, occurred, properties)


@lru_cache(maxsize=256)  # a book uses few metric names, each in many events
def _metric_name(metric: str) -> bool:
    return _NAME.match(metric) is not None


@lru_cache(maxsize=16)
def _first_moment(first_day: date) -> datetime:
    """UTC midnight of the first accepted day: an event before it is refused."""
    return datetime.combine(first_day, time(), UTC)


@lru_cache(maxsize=16)
def _latest(today: date) -> datetime:
    """The last moment an event may be dated: the end of today plus the tolerance."""
    return datetime.combine(today + timedelta(days=1), time(), UTC) + FUTURE_TOLERANCE


def event_quantity(value: object) -> Decimal | None:
    """An event's quantity from its JSON value, or None when it is not one."""
    return _quantity(value)


def event_moment(value: object) -> datetime | None:
    """An event's timestamp from its JSON value (ISO 8601 with an offset), or None."""
    return _timestamp(value)


def event_moments(values: list[str], earliest: datetime, latest: datetime) -> list[datetime] | None:
    """`event_moment` of each timestamp text, when every one is a moment in
    `[earliest, latest]`; else None. At C speed: fromisoformat mapped over the list,
    and a naive one fails the comparisons (TypeError) as an unparsable one does."""
    try:
        moments = list(map(datetime.fromisoformat, values))
        if earliest <= min(moments) and max(moments) <= latest:
            return moments
    except (ValueError, TypeError):  # not ISO 8601, naive, or no timestamp at all
        pass
    return None


def metric_name(metric: str) -> bool:
    return _metric_name(metric)


def first_moment(first_day: date) -> datetime:
    """The earliest moment an event may be dated."""
    return _first_moment(first_day)


def latest_moment(today: date) -> datetime:
    """The latest moment an event may be dated."""
    return _latest(today)


def _quantity(value: object) -> Decimal | None:
    if type(value) is str:
        value = value.strip()
    elif isinstance(value, bool) or not isinstance(value, int):
        return None
    try:
        quantity = Decimal(value)
    except InvalidOperation:
        return None
    if not quantity.is_finite() or quantity < 0 or abs(quantity.as_tuple().exponent) > 12:  # type: ignore[arg-type]
        return None
    return quantity


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


# --- meters --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MeterSpec:
    metric: str
    aggregation: Aggregation
    property: str | None = None  # what unique_count counts
    filters: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    group_by: tuple[str, ...] = ()


def check_meter(
    metric: object,
    aggregation: object,
    prop: object = None,
    filters: object = None,
    group_by: object = None,
) -> MeterSpec:
    """A meter from its request form; filter values are compared as text."""
    if not isinstance(metric, str) or not _NAME.match(metric):
        raise InvalidBillingRequest(
            "metric must be a name of 1-100 letters, digits, _ . : -", field="metric"
        )
    try:
        kind = Aggregation(str(aggregation))
    except ValueError:
        raise InvalidBillingRequest(
            f"aggregation must be one of {', '.join(a.value for a in Aggregation)}",
            field="aggregation",
        ) from None
    if prop is not None and (not isinstance(prop, str) or not _NAME.match(prop)):
        raise InvalidBillingRequest("property must be a property name", field="property")
    if kind is Aggregation.UNIQUE_COUNT and prop is None:
        raise InvalidBillingRequest("unique_count needs the property it counts", field="property")
    parsed: dict[str, tuple[str, ...]] = {}
    if filters is not None:
        if not isinstance(filters, Mapping):
            raise InvalidBillingRequest(
                "filters is an object {property: value or [values]}", field="filters"
            )
        for key, value in filters.items():
            values = value if isinstance(value, list) else [value]
            if (
                not _NAME.match(str(key))
                or not values
                or not all(isinstance(v, str | int) and not isinstance(v, bool) for v in values)
            ):
                raise InvalidBillingRequest(
                    f"filters.{key}: a property name and a value or a non-empty list of values"
                    " (strings or whole numbers)",
                    field="filters",
                )
            parsed[str(key)] = tuple(str(v) for v in values)
    groups: tuple[str, ...] = ()
    if group_by is not None:
        if not isinstance(group_by, list) or not all(
            isinstance(g, str) and _NAME.match(g) for g in group_by
        ):
            raise InvalidBillingRequest("group_by is a list of property names", field="group_by")
        if len(set(group_by)) != len(group_by) or len(group_by) > 5:
            raise InvalidBillingRequest(
                "group_by names at most 5 distinct properties", field="group_by"
            )
        groups = tuple(group_by)
    return MeterSpec(metric, kind, prop, parsed, groups)


def group_label(group: Mapping[str, str | None]) -> str:
    return ", ".join(f"{k}={v if v is not None else '(none)'}" for k, v in group.items())


# --- rating --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UsageTerms:
    """A usage price's terms."""

    charge: Charge
    free_units: Decimal = Decimal(0)
    minimum: Decimal | None = None  # minimum commitment per period, in the price currency


@dataclass(frozen=True, slots=True)
class UsagePrice:
    """What makes a subscription item a usage item: its metric, the price's own
    aggregation (used when the metric has no meter) and its terms."""

    metric: str
    aggregation: str
    terms: UsageTerms


@dataclass(frozen=True, slots=True)
class RatedGroup:
    group: dict[str, str | None]
    quantity: Decimal  # metered
    billable: Decimal  # after free units
    amount: Money
    breakdown: str  # the tiers reached, for the line's description


def _fmt(value: Decimal) -> str:
    text = f"{value.normalize():f}" if value == value.to_integral_value() else f"{value:f}"
    return text


def tier_breakdown(charge: Charge, quantity: Decimal) -> list[str]:
    """Each tier reached: `first–last × unit_amount (+ flat)`."""
    if quantity <= 0:
        return []
    tiers: Sequence[Tier]
    if isinstance(charge, GraduatedCharge):
        tiers, out, floor = charge.tiers, [], Decimal(0)
        for tier in tiers:
            if quantity <= floor:
                break
            ceiling = quantity if tier.up_to is None else min(quantity, Decimal(tier.up_to))
            flat = f" + {_fmt(tier.flat_amount)}" if tier.flat_amount else ""
            out.append(
                f"{_fmt(floor + 1)}–{_fmt(ceiling)} @ {_fmt(tier.unit_amount)}{flat}"
                if ceiling > floor
                else ""
            )
            floor = ceiling
        return [x for x in out if x]
    if isinstance(charge, VolumeCharge):
        tier = next(t for t in charge.tiers if t.up_to is None or quantity <= t.up_to)
        flat = f" + {_fmt(tier.flat_amount)}" if tier.flat_amount else ""
        return [f"all {_fmt(quantity)} @ {_fmt(tier.unit_amount)}{flat}"]
    if isinstance(charge, PackageCharge):
        return [f"packages of {charge.package_size} @ {_fmt(charge.package_amount)}"]
    return []


def rate_usage(
    terms: UsageTerms, groups: Sequence[tuple[dict[str, str | None], Decimal]]
) -> tuple[list[RatedGroup], Money | None]:
    """Each group rated (free units consumed in the order given), and the minimum
    commitment's shortfall (None when there is no minimum or usage reaches it)."""
    currency = getattr(terms.charge, "currency", "")
    free = terms.free_units
    rated: list[RatedGroup] = []
    for group, quantity in groups:
        taken = min(free, quantity)
        free -= taken
        billable = quantity - taken
        amount = rate(terms.charge, billable) if billable > 0 else Money.zero(currency).quantized()
        rated.append(
            RatedGroup(
                dict(group),
                quantity,
                billable,
                amount,
                "; ".join(tier_breakdown(terms.charge, billable)),
            )
        )
    shortfall: Money | None = None
    if terms.minimum is not None:
        total = sum((r.amount.amount for r in rated), Decimal(0))
        if total < terms.minimum:
            shortfall = Money(terms.minimum - total, currency).quantized()
    return rated, shortfall


def _unit(amount: Money, quantity: Decimal, charge: Charge) -> tuple[Decimal, Decimal]:
    """The line's quantity and unit amount: the price's own for per-unit, else the
    average (12 places) so quantity × unit rounds to the amount."""
    if isinstance(charge, PerUnitCharge):
        return quantity, charge.unit_amount
    if quantity <= 0:
        return Decimal(1), amount.amount
    with localcontext(prec=60):
        return quantity, (amount.amount / quantity).quantize(
            Decimal("1e-12"), rounding=ROUND_HALF_UP
        ).normalize()


@dataclass(frozen=True, slots=True)
class UsageLine:
    """A usage line before it becomes an invoice line (billing.subscriptions.Line)."""

    description: str
    quantity: Decimal
    unit_amount: Decimal
    amount: Money
    service: Period
    group: dict[str, str | None]
    metered: Decimal  # the group's metered quantity (before free units)


def usage_lines(
    name: str,
    terms: UsageTerms,
    period: Period,
    rated: Sequence[RatedGroup],
    shortfall: Money | None,
) -> list[UsageLine]:
    """One line per group with billable usage, then the minimum's shortfall."""
    lines: list[UsageLine] = []
    for r in rated:
        if r.billable <= 0:
            continue
        label = f"{name} — {_fmt(r.billable)} units"
        if r.group:
            label += f" ({group_label(r.group)})"
        if r.quantity != r.billable:
            label += f", {_fmt(r.quantity - r.billable)} free"
        if r.breakdown:
            label += f" [{r.breakdown}]"
        quantity, unit = _unit(r.amount, r.billable, terms.charge)
        lines.append(
            UsageLine(f"{label}, {period}", quantity, unit, r.amount, period, r.group, r.quantity)
        )
    if shortfall is not None:
        lines.append(
            UsageLine(
                f"{name} — minimum commitment {terms.minimum}, {period}",
                Decimal(1),
                shortfall.amount,
                shortfall,
                period,
                {"minimum": "shortfall"},
                Decimal(0),
            )
        )
    return lines


def late_amount(rated: Sequence[RatedGroup], shortfall: Money | None, billed: Decimal) -> Decimal:
    """What late usage adds to a billed period: its whole usage rated now (with the
    minimum) less what was billed for it."""
    now = sum((r.amount.amount for r in rated), Decimal(0))
    if shortfall is not None:
        now += shortfall.amount
    return now - billed
