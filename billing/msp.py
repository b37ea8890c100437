"""Services (MSP) as pure rules: rates, rounding per entry, contract terms,
retainer draw-down, carry-over and expiry (ACCOUNTING.md, "MSP").

Hours are kept as whole minutes (raw and rounded); money is computed from
minutes once per entry, rounded to the currency's minor unit (HALF_UP).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation

from billing.errors import InvalidBillingRequest
from billing.proration import fraction_of
from ledger.money import Money

__all__ = [
    "AGE_BUCKETS",
    "BILLABLE_KINDS",
    "CONTRACT_TYPES",
    "COUNT_KINDS",
    "ROLLOVERS",
    "ContractTerms",
    "RateSources",
    "RetainerClose",
    "RoundingRule",
    "age_bucket",
    "close_retainer_period",
    "contract_position",
    "draw_down",
    "entry_amount",
    "expense_billable_amount",
    "hours_text",
    "is_after_hours",
    "minutes_value",
    "overlaps",
    "recognized_to_date",
    "resolve_rate",
    "round_minutes",
]

CONTRACT_TYPES = ("time_and_materials", "retainer", "fixed_fee", "managed_services")
BILLABLE_KINDS = ("billable", "no_charge", "do_not_bill")
ROLLOVERS = ("none", "carry_over", "expire")
COUNT_KINDS = ("device", "user")
INCREMENTS = (1, 6, 15, 30)
ROUNDING_MODES = ("up", "nearest")


@dataclass(frozen=True, slots=True)
class RoundingRule:
    """Per-entry rounding: to `increment_minutes`, up or to the nearest (a half
    rounds up), then at least `minimum_minutes` for any non-zero entry."""

    increment_minutes: int = 1
    mode: str = "up"
    minimum_minutes: int = 0

    def __post_init__(self) -> None:
        if self.increment_minutes not in INCREMENTS:
            raise InvalidBillingRequest(
                f"rounding.increment_minutes must be one of {', '.join(map(str, INCREMENTS))}",
                field="rounding.increment_minutes",
            )
        if self.mode not in ROUNDING_MODES:
            raise InvalidBillingRequest(
                "rounding.mode must be up or nearest", field="rounding.mode"
            )
        if isinstance(self.minimum_minutes, bool) or not 0 <= self.minimum_minutes <= 1440:
            raise InvalidBillingRequest(
                "rounding.minimum_minutes must be between 0 and 1440",
                field="rounding.minimum_minutes",
            )


def round_minutes(raw: int, rule: RoundingRule) -> int:
    """37 minutes at 15-minute increments rounded up → 45 (0.75 h)."""
    if raw < 0:
        raise InvalidBillingRequest("minutes cannot be negative", field="minutes")
    if raw == 0:
        return 0
    step = rule.increment_minutes
    up = -(-raw // step) * step
    rounded = up if rule.mode == "up" else ((2 * raw + step) // (2 * step)) * step
    return max(rounded, rule.minimum_minutes)


def minutes_value(minutes: int, hourly: Decimal, currency: str) -> Money:
    """What `minutes` are worth at `hourly`, rounded once to the minor unit."""
    return fraction_of(Money(hourly, currency), minutes, 60)


def hours_text(minutes: int) -> str:
    """Minutes as hours for people: 45 → "0.75", 20 → "0.33" (two places)."""
    return str((Decimal(minutes) / 60).quantize(Decimal("0.01")))


def entry_amount(
    rounded: int, rate: Decimal, currency: str, multiplier: Decimal = Decimal(1)
) -> Money:
    return minutes_value(rounded, rate * multiplier, currency)


@dataclass(frozen=True, slots=True)
class RateSources:
    """Where a rate may come from, most specific first (ACCOUNTING.md: contract →
    role → default): the contract's per-role rates, the contract's hourly rate,
    the client's rate card (by role, then its default), the book's rate card."""

    contract_roles: Mapping[str, Decimal] = field(default_factory=dict)
    contract_rate: Decimal | None = None
    client_roles: Mapping[str, Decimal] = field(default_factory=dict)
    client_default: Decimal | None = None
    book_roles: Mapping[str, Decimal] = field(default_factory=dict)
    book_default: Decimal | None = None


def resolve_rate(role: str, sources: RateSources) -> tuple[Decimal, str]:
    """The hourly rate for `role` and where it came from."""
    candidates: Sequence[tuple[Decimal | None, str]] = (
        (sources.contract_roles.get(role), "contract_role"),
        (sources.contract_rate, "contract"),
        (sources.client_roles.get(role), "client_role"),
        (sources.book_roles.get(role), "role"),
        (sources.client_default, "client_default"),
        (sources.book_default, "default"),
    )
    for rate, source in candidates:
        if rate is not None:
            return rate, source
    raise InvalidBillingRequest(
        f"no rate for role {role!r}: give the contract an hourly_rate or create a rate card"
        " (POST /v1/rate-cards) with that role or a default",
        field="role",
    )


def _decimal(value: object, name: str, *, allow_none: bool = True) -> Decimal | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidBillingRequest(f"{name} must be a decimal string", field=name)
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise InvalidBillingRequest(f"{name} must be a decimal string", field=name) from None
    if not number.is_finite() or number < 0:
        raise InvalidBillingRequest(f"{name} must be a non-negative number", field=name)
    return number


@dataclass(frozen=True, slots=True)
class Milestone:
    name: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class ContractTerms:
    """A contract's terms, checked against its type."""

    type: str
    hourly_rate: Decimal | None = None
    rates: Mapping[str, Decimal] = field(default_factory=dict)
    rounding: RoundingRule = RoundingRule()
    after_hours_multiplier: Decimal = Decimal(1)
    # [start, end) minutes of the day; time outside it is after hours (is_after_hours)
    business_hours: tuple[int, int] | None = None
    cap: Decimal | None = None
    included_hours: Decimal | None = None
    overage_rate: Decimal | None = None
    rollover: str = "expire"
    rollover_max_hours: Decimal | None = None
    monthly_fee: Decimal | None = None
    unit_price: Decimal | None = None  # per device (kept: `unit_prices` {"device": …})
    unit_prices: Mapping[str, Decimal] = field(default_factory=dict)
    proration: str = "none"
    milestones: tuple[Milestone, ...] = ()
    fee: Decimal | None = None  # a fixed_fee contract recognized by percent complete

    @property
    def retainer_fee(self) -> Decimal:
        """The period's fee: `monthly_fee` when given, else included hours × hourly rate."""
        if self.monthly_fee is not None:
            return self.monthly_fee
        assert self.included_hours is not None and self.hourly_rate is not None
        return self.included_hours * self.hourly_rate

    @property
    def prices_by_kind(self) -> dict[str, Decimal]:
        """A managed-services contract's unit price per counted kind, devices first:
        `unit_price` alone is the device price, as before `unit_prices` existed."""
        prices = dict(self.unit_prices)
        if self.unit_price is not None:
            prices["device"] = self.unit_price
        return {k: prices[k] for k in COUNT_KINDS if k in prices}

    @property
    def included_minutes(self) -> int:
        return int((self.included_hours or Decimal(0)) * 60)

    @property
    def carry_max_minutes(self) -> int:
        return int((self.rollover_max_hours or Decimal(0)) * 60)

    def hourly_value(self) -> Decimal:
        """What one prepaid hour is worth: fee ÷ included hours (unrounded)."""
        return self.retainer_fee / (self.included_hours or Decimal(1))


def parse_terms(kind: str, raw: Mapping[str, object]) -> ContractTerms:
    """A contract's terms from its request fields; refuses what its type cannot use."""
    if kind not in CONTRACT_TYPES:
        raise InvalidBillingRequest(
            f"type must be one of {', '.join(CONTRACT_TYPES)}", field="type"
        )
    rounding_raw = raw.get("rounding") or {}
    if not isinstance(rounding_raw, Mapping):
        raise InvalidBillingRequest("rounding must be an object", field="rounding")
    try:
        rounding = RoundingRule(
            int(rounding_raw.get("increment_minutes", 1)),
            str(rounding_raw.get("mode", "up")),
            int(rounding_raw.get("minimum_minutes", 0)),
        )
    except (TypeError, ValueError):
        raise InvalidBillingRequest("rounding fields must be numbers", field="rounding") from None
    rates_raw = raw.get("rates") or {}
    if not isinstance(rates_raw, Mapping):
        raise InvalidBillingRequest("rates must be an object of role → rate", field="rates")
    rates = {str(k): _decimal(v, f"rates.{k}", allow_none=False) for k, v in rates_raw.items()}
    milestones_raw = raw.get("milestones") or []
    if not isinstance(milestones_raw, Sequence):
        raise InvalidBillingRequest("milestones must be a list", field="milestones")
    milestones: list[Milestone] = []
    for i, m in enumerate(milestones_raw):
        if not isinstance(m, Mapping) or not str(m.get("name") or "").strip():
            raise InvalidBillingRequest(
                f"milestones[{i}] needs a name and an amount", field=f"milestones[{i}]"
            )
        amount = _decimal(m.get("amount"), f"milestones[{i}].amount", allow_none=False)
        assert amount is not None
        milestones.append(Milestone(str(m["name"]).strip(), amount))
    if len({m.name for m in milestones}) != len(milestones):
        raise InvalidBillingRequest("milestone names must be unique", field="milestones")
    rollover = str(raw.get("rollover") or "expire")
    if rollover not in ROLLOVERS:
        raise InvalidBillingRequest(
            f"rollover must be one of {', '.join(ROLLOVERS)}", field="rollover"
        )
    proration = str(raw.get("proration") or "none")
    if proration not in ("none", "daily"):
        raise InvalidBillingRequest("proration must be none or daily", field="proration")
    multiplier = _decimal(raw.get("after_hours_multiplier"), "after_hours_multiplier")
    business_hours = _window(raw.get("business_hours"))
    prices_raw = raw.get("unit_prices") or {}
    if not isinstance(prices_raw, Mapping) or not set(prices_raw) <= set(COUNT_KINDS):
        raise InvalidBillingRequest(
            f"unit_prices must be an object of kind ({', '.join(COUNT_KINDS)}) → price",
            field="unit_prices",
        )
    if "device" in prices_raw and raw.get("unit_price") is not None:
        raise InvalidBillingRequest(
            "give the device price once: unit_price or unit_prices.device", field="unit_prices"
        )
    unit_prices = {
        str(k): _decimal(v, f"unit_prices.{k}", allow_none=False) for k, v in prices_raw.items()
    }
    terms = ContractTerms(
        type=kind,
        hourly_rate=_decimal(raw.get("hourly_rate"), "hourly_rate"),
        rates={k: v for k, v in rates.items() if v is not None},
        rounding=rounding,
        after_hours_multiplier=multiplier if multiplier is not None else Decimal(1),
        business_hours=business_hours,
        cap=_decimal(raw.get("cap"), "cap"),
        included_hours=_decimal(raw.get("included_hours"), "included_hours"),
        overage_rate=_decimal(raw.get("overage_rate"), "overage_rate"),
        rollover=rollover,
        rollover_max_hours=_decimal(raw.get("rollover_max_hours"), "rollover_max_hours"),
        monthly_fee=_decimal(raw.get("monthly_fee"), "monthly_fee"),
        unit_price=_decimal(raw.get("unit_price"), "unit_price"),
        unit_prices={k: v for k, v in unit_prices.items() if v is not None},
        proration=proration,
        milestones=tuple(milestones),
        fee=_decimal(raw.get("fee"), "fee"),
    )
    _check_type(terms)
    return terms


def _day_minute(value: object, name: str) -> int:
    text = str(value) if isinstance(value, str) else ""
    hh, sep, mm = text.partition(":")
    if not sep or not hh.isdigit() or not mm.isdigit() or int(mm) > 59:
        raise InvalidBillingRequest(f"{name} must be HH:MM", field=name)
    minute = int(hh) * 60 + int(mm)
    if minute > 1440:
        raise InvalidBillingRequest(f"{name} must be within the day", field=name)
    return minute


def _window(raw: object) -> tuple[int, int] | None:
    """`business_hours` {"start": "08:00", "end": "18:00"} as [start, end) minutes."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or set(raw) != {"start", "end"}:
        raise InvalidBillingRequest(
            'business_hours must be {"start": "HH:MM", "end": "HH:MM"}', field="business_hours"
        )
    start = _day_minute(raw["start"], "business_hours.start")
    end = _day_minute(raw["end"], "business_hours.end")
    if end <= start:
        raise InvalidBillingRequest(
            "business_hours.end must be after its start", field="business_hours.end"
        )
    return start, end


def is_after_hours(
    start: int | None, end: int | None, window: tuple[int, int] | None, flag: bool
) -> bool:
    """Whether an entry bills at the after-hours multiplier. With a business-hours
    window and the entry's clock times, the times decide: an entry with any minute
    outside [window start, window end) is after hours as a whole (split it into two
    entries to bill the parts apart). Without either, the entry's explicit flag."""
    if window is None or start is None or end is None:
        return flag
    return start < window[0] or end > window[1]


def _need(terms: ContractTerms, *names: str) -> None:
    for name in names:
        if getattr(terms, name) is None:
            raise InvalidBillingRequest(f"a {terms.type} contract needs {name}", field=name)


def _check_type(terms: ContractTerms) -> None:
    if terms.type == "retainer":
        _need(terms, "included_hours", "overage_rate")
        if terms.included_hours is not None and terms.included_hours <= 0:
            raise InvalidBillingRequest("included_hours must be positive", field="included_hours")
        if terms.monthly_fee is None:
            _need(terms, "hourly_rate")
        if terms.included_minutes != (terms.included_hours or 0) * 60:
            raise InvalidBillingRequest(
                "included_hours must be whole minutes", field="included_hours"
            )
        if terms.rollover == "carry_over":
            _need(terms, "rollover_max_hours")
    elif terms.type == "fixed_fee":
        if bool(terms.milestones) == (terms.fee is not None):
            raise InvalidBillingRequest(
                "a fixed_fee contract needs milestones, or a fee recognized by percent complete"
                " (not both)",
                field="milestones",
            )
    elif terms.type == "managed_services":
        _need(terms, "monthly_fee")
        if not terms.prices_by_kind:
            raise InvalidBillingRequest(
                "a managed_services contract needs unit_price (per device) or unit_prices",
                field="unit_price",
            )
    elif terms.cap is not None and terms.cap <= 0:
        raise InvalidBillingRequest("cap must be positive", field="cap")


@dataclass(frozen=True, slots=True)
class Draw:
    drawn_minutes: int
    overage_minutes: int


def draw_down(entry_minutes: int, available_minutes: int) -> Draw:
    """An approved entry's rounded minutes drawn from the retainer's hours left in
    its period; what does not fit is overage (billed on the next invoice)."""
    drawn = max(0, min(entry_minutes, available_minutes))
    return Draw(drawn, entry_minutes - drawn)


@dataclass(frozen=True, slots=True)
class RetainerClose:
    unused_minutes: int
    carried_minutes: int
    expired_minutes: int


def close_retainer_period(
    included_minutes: int, carried_in: int, drawn: int, rollover: str, carry_max: int
) -> RetainerClose:
    """At period end: unused hours carry over (up to the maximum) or expire.

    `none` and `expire` both let every unused hour expire to breakage; only
    `carry_over` keeps some (the carried hours are drawn first next period by
    simply adding to its available hours; their value stays in Prepaid-Hours).
    """
    unused = max(0, included_minutes + carried_in - drawn)
    carried = min(unused, carry_max) if rollover == "carry_over" else 0
    return RetainerClose(unused, carried, unused - carried)


def overlaps(
    a_start: int | None, a_end: int | None, b_start: int | None, b_end: int | None
) -> bool:
    """Two same-day entries overlap when both have clock times and the times cross."""
    if None in (a_start, a_end, b_start, b_end):
        return False
    assert a_start is not None and a_end is not None and b_start is not None and b_end is not None
    return a_start < b_end and b_start < a_end


def prorated_units(
    counts: Sequence[tuple[date, int]], start: date, end: date, proration: str
) -> tuple[int, int, int]:
    """Units to bill for `[start, end)` from quantity snapshots (date, quantity).

    `none`: the snapshot at cut-off (the last one before `end`) for the whole
    period. `daily`: each day billed at the quantity in force that day, so 40
    devices then 47 from day 16 of a 30-day month is 40 × 15/30 + 47 × 15/30.
    Returns (unit-days, days in the period, the cut-off quantity): the amount is
    unit price × unit-days ÷ days, rounded once.
    """
    days = (end - start).days
    ordered = sorted(c for c in counts if c[0] < end)
    if not ordered:
        return 0, days, 0
    cutoff = ordered[-1][1]
    if proration != "daily":
        return cutoff * days, days, cutoff
    total = 0
    for i, (day, quantity) in enumerate(ordered):
        seg_start = max(day, start)
        seg_end = ordered[i + 1][0] if i + 1 < len(ordered) else end
        seg_end = min(seg_end, end)
        if seg_end > seg_start:
            total += quantity * (seg_end - seg_start).days
    return total, days, cutoff


def working_days(start: date, end: date) -> int:
    """Monday to Friday in `[start, end)`."""
    days = (end - start).days
    full, rest = divmod(max(days, 0), 7)
    count = full * 5
    for offset in range(rest):
        if (start.toordinal() + full * 7 + offset) % 7 not in (0, 6):  # ordinal 0 mod 7: Sunday
            count += 1
    return count


def ratio(part: Decimal, whole: Decimal) -> Decimal | None:
    """part ÷ whole to four places (0.8125 = 81.25 %); None over nothing."""
    if whole == 0:
        return None
    return (part / whole).quantize(Decimal("0.0001"))


@dataclass(frozen=True, slots=True)
class Utilization:
    person: str
    billable_minutes: int
    non_billable_minutes: int
    available_minutes: int

    @property
    def utilization(self) -> Decimal | None:
        return ratio(Decimal(self.billable_minutes), Decimal(self.available_minutes))


def utilization(rows: Sequence[tuple[str, str, int]], available_minutes: int) -> list[Utilization]:
    """Per person: billable ÷ available hours, from (person, billable kind, rounded minutes)."""
    billable: dict[str, int] = {}
    other: dict[str, int] = {}
    for person, kind, minutes in rows:
        target = billable if kind == "billable" else other
        target[person] = target.get(person, 0) + minutes
        billable.setdefault(person, 0)
        other.setdefault(person, 0)
    return [Utilization(p, billable[p], other[p], available_minutes) for p in sorted(billable)]


# --- expenses, percent complete, WIP ageing -----------------------------------------


def expense_billable_amount(
    cost: Decimal, markup_percent: Decimal | None, currency: str
) -> Decimal:
    """What an expense bills: cost × (1 + markup ÷ 100), rounded half-up once to
    the minor unit (42.50 at 10 % → 46.75; 19.99 at 15 % → 22.99)."""
    factor = Decimal(1) + (markup_percent or Decimal(0)) / 100
    return Money(cost * factor, currency).round_to_minor().amount


def recognized_to_date(fee: Decimal, percent: Decimal, currency: str) -> Decimal:
    """Revenue earned at `percent` complete: round(fee × percent ÷ 100), cumulative,
    so the updates' differences always add up to the rounded total."""
    return Money(fee * percent / 100, currency).round_to_minor().amount


def contract_position(earned: Decimal, billed: Decimal) -> tuple[Decimal, Decimal]:
    """(Unbilled, Deferred-Revenue) balances of a contract: earned beyond billed is a
    contract asset (Unbilled), billed beyond earned a contract liability (Deferred)."""
    net = earned - billed
    return max(net, Decimal(0)), max(-net, Decimal(0))


AGE_BUCKETS = ("0-30", "31-60", "61-90", "90+")


def age_bucket(days: int) -> str:
    """Age from the entry date: 0–30, 31–60, 61–90, over 90 days."""
    if days <= 30:
        return AGE_BUCKETS[0]
    if days <= 60:
        return AGE_BUCKETS[1]
    if days <= 90:
        return AGE_BUCKETS[2]
    return AGE_BUCKETS[3]
