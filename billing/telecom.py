"""Telecom rating (ACCOUNTING.md, "Telecom / ISP"; API.md, "Usage and telecom"),
as pure functions: a rate plan version and CDRs in, rated CDRs out.

- **Version**: each CDR is rated by the version of its plan in force at its
  start (the latest `effective_from` on or before the start's local date).
- **Zone**: the longest `prefix` the destination starts with (`+`, spaces and
  dashes ignored); a rate without `zone` applies to any zone (data, SMS to
  anywhere), one naming the zone wins over it.
- **Band**: the first band (in the plan's order) whose days (1 = Monday … 7 =
  Sunday) and `[from, to)` local time hold the call's START, in the plan's time
  zone; `to` of "24:00" is midnight, and `to` before `from` wraps past
  midnight. A rate without `band` applies to any band; no band and no such
  rate makes the CDR unrateable (reported, not guessed).
- **Units**: voice in seconds, `increment` "a/b" — the first a seconds, then
  steps of b (61 s at 60/60 → 120 s, at 60/1 → 61 s, at 30/6 → 66 s);
  `unit_amount` is per minute, charged per increment as a share of a minute.
  SMS per message (increment ignored). Data in bytes with the same "a/b" form
  (`1000/1000` per started KB, `1000000/1000000` per started MB, default
  `1/1`); `unit_amount` per MB of 1,000,000 bytes.
- **Allowances** (`{"event_type", "quantity"}` per calendar month in the plan's
  time zone, or per billing period for a subscriber on a subscription) are
  consumed in event-time order by the *billed* quantity; a CDR that exhausts
  one part-way is split: the included part is free, the rest billed at the
  rate. Changing version mid-month keeps what was used: the new
  version's allowance less what the month already consumed.
- **Setup** `setup_amount` once per CDR with a billed quantity above zero.
- **Roaming**: `roaming_uplift_percent` of the plan is added to a roaming
  CDR's amount (setup included).
- The amount is rounded once, per CDR, to the currency's minor unit (half up).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from billing.errors import InvalidBillingRequest
from ledger.errors import LedgerError
from ledger.money import check_currency, parse_amount, quantum

EVENT_TYPES = ("voice", "sms", "data")
SECONDS_PER_MINUTE = Decimal(60)
BYTES_PER_MB = Decimal(1_000_000)
MIDNIGHT = time(0, 0)
_INCREMENT = re.compile(r"([1-9][0-9]{0,8})/([1-9][0-9]{0,8})")
_CLOCK = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])|24:00")


class RatingError(InvalidBillingRequest):
    """A CDR (or a plan) that cannot be rated; the message says why."""


@dataclass(frozen=True, slots=True)
class Band:
    name: str
    days: frozenset[int]
    start: time
    end: time | None  # None: midnight at the end of the day ("24:00")

    def holds(self, moment: datetime) -> bool:
        if moment.isoweekday() not in self.days:
            return False
        t = moment.timetz().replace(tzinfo=None)
        if self.end is None:
            return t >= self.start
        if self.end > self.start:
            return self.start <= t < self.end
        return t >= self.start or t < self.end  # wraps past midnight


@dataclass(frozen=True, slots=True)
class Zone:
    name: str
    prefix: str


@dataclass(frozen=True, slots=True)
class Increment:
    first: int
    step: int

    def billed(self, quantity: Decimal) -> Decimal:
        """The quantity after the increments (0 stays 0)."""
        if quantity <= 0:
            return Decimal(0)
        if quantity <= self.first:
            return Decimal(self.first)
        rest = quantity - self.first
        # Decimal's // truncates towards zero, so the ceiling is asked for by name.
        steps = (rest / self.step).to_integral_value(rounding=ROUND_CEILING)
        return Decimal(self.first) + steps * self.step

    def text(self) -> str:
        return f"{self.first}/{self.step}"


@dataclass(frozen=True, slots=True)
class Rate:
    zone: str | None
    event_type: str
    band: str | None
    unit_amount: Decimal
    increment: Increment
    setup_amount: Decimal


@dataclass(frozen=True, slots=True)
class Allowance:
    event_type: str
    quantity: Decimal
    zones: frozenset[str] | None = None  # None: any zone

    def covers(self, event_type: str, zone: str | None) -> bool:
        if event_type != self.event_type:
            return False
        return self.zones is None or zone in self.zones


@dataclass(frozen=True, slots=True)
class PlanVersion:
    name: str
    effective_from: date
    currency: str
    time_zone: str
    bands: tuple[Band, ...]
    zones: tuple[Zone, ...]
    rates: tuple[Rate, ...]
    allowances: tuple[Allowance, ...] = ()
    roaming_uplift_percent: Decimal = Decimal(0)
    # (event_type, zone, band) -> rate, filled as CDRs are rated (a plan has few).
    best_rates: dict[tuple[str, str | None, str | None], Rate] = field(
        default_factory=dict, compare=False, repr=False
    )

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


@dataclass(frozen=True, slots=True)
class Cdr:
    id: str
    subscriber: str
    event_type: str
    start: datetime  # aware
    quantity: Decimal  # seconds, messages or bytes
    destination: str = ""
    roaming: bool = False


@dataclass(frozen=True, slots=True)
class RatedCdr:
    cdr: Cdr
    plan: str
    version: date
    zone: str | None
    band: str | None
    billed_quantity: Decimal  # after increments
    included: Decimal  # of billed_quantity, covered by an allowance
    amount: Decimal
    currency: str
    day: date  # the start's date in the plan's time zone (the summary's day)


# --- plans from their API form ---------------------------------------------------------


def _text(item: Mapping[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value.strip():
        raise RatingError(f"{where}: {key} must be a non-empty string")
    return value


def _decimal(value: Any, where: str, *, minimum: Decimal = Decimal(0)) -> Decimal:
    try:
        number = parse_amount(value)
    except LedgerError as exc:
        raise RatingError(f"{where}: {exc.message}") from None
    if number < minimum:
        raise RatingError(f"{where}: must be at least {minimum}, not {number}")
    return number


def _clock(value: Any, where: str) -> time | None:
    if not isinstance(value, str) or not _CLOCK.fullmatch(value):
        raise RatingError(f"{where}: {value!r} is not a time of day HH:MM (00:00 to 24:00)")
    if value == "24:00":
        return None
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def parse_increment(value: Any, where: str = "increment") -> Increment:
    if not isinstance(value, str) or not _INCREMENT.fullmatch(value):
        raise RatingError(f"{where}: {value!r} is not an increment like 60/60, 60/1 or 30/6")
    first, step = value.split("/")
    return Increment(int(first), int(step))


def _band(item: Mapping[str, Any], i: int) -> Band:
    where = f"bands[{i}]"
    days = item.get("days")
    if (
        not isinstance(days, list)
        or not days
        or any(not isinstance(d, int) or isinstance(d, bool) or not 1 <= d <= 7 for d in days)
    ):
        raise RatingError(f"{where}: days must be a list of 1 (Monday) to 7 (Sunday)")
    start = _clock(item.get("from"), f"{where}.from")
    if start is None:
        raise RatingError(f"{where}.from: a band cannot start at 24:00")
    end = _clock(item.get("to"), f"{where}.to")
    if end == start:
        raise RatingError(f"{where}: from and to are the same time")
    return Band(_text(item, "name", where), frozenset(days), start, end)


def parse_plan(body: Mapping[str, Any]) -> PlanVersion:
    """A plan version from its API form (POST /v1/rate-plans); every error names its field."""
    name = _text(body, "name", "plan")
    try:
        effective_from = date.fromisoformat(_text(body, "effective_from", "plan"))
    except ValueError:
        raise RatingError(f"effective_from: {body.get('effective_from')!r} is not a date") from None
    try:
        currency = check_currency(body.get("currency"))
    except LedgerError:
        raise RatingError(f"currency: {body.get('currency')!r} is not an ISO 4217 code") from None
    time_zone = _text(body, "time_zone", "plan")
    try:
        ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise RatingError(f"time_zone: {time_zone!r} is not an IANA time zone") from None
    bands = tuple(_band(b, i) for i, b in enumerate(_items(body, "bands")))
    zones = tuple(
        Zone(_text(z, "name", f"zones[{i}]"), _prefix(_text(z, "prefix", f"zones[{i}]")))
        for i, z in enumerate(_items(body, "zones"))
    )
    zone_names = {z.name for z in zones}
    band_names = {b.name for b in bands}
    rates = []
    for i, r in enumerate(_items(body, "rates")):
        where = f"rates[{i}]"
        event_type = _event_type(r.get("event_type"), where)
        zone = r.get("zone")
        if zone is not None and zone not in zone_names:
            raise RatingError(f"{where}.zone: {zone!r} is not one of the plan's zones")
        band = r.get("band")
        if band is not None and band not in band_names:
            raise RatingError(f"{where}.band: {band!r} is not one of the plan's bands")
        default = "60/60" if event_type == "voice" else "1/1"
        rates.append(
            Rate(
                zone,
                event_type,
                band,
                _decimal(r.get("unit_amount"), f"{where}.unit_amount"),
                parse_increment(r.get("increment", default), f"{where}.increment"),
                _decimal(r.get("setup_amount", "0"), f"{where}.setup_amount"),
            )
        )
    if not rates:
        raise RatingError("rates: a plan needs at least one rate")
    allowances = []
    for i, a in enumerate(_items(body, "allowances")):
        where = f"allowances[{i}]"
        zones_of = a.get("zones")
        if zones_of is not None and (
            not isinstance(zones_of, list) or not set(zones_of) <= zone_names
        ):
            raise RatingError(f"{where}.zones: must list zones of the plan")
        allowances.append(
            Allowance(
                _event_type(a.get("event_type"), where),
                _decimal(a.get("quantity"), f"{where}.quantity"),
                None if zones_of is None else frozenset(zones_of),
            )
        )
    uplift = _decimal(body.get("roaming_uplift_percent", "0"), "roaming_uplift_percent")
    return PlanVersion(
        name,
        effective_from,
        currency,
        time_zone,
        bands,
        zones,
        tuple(rates),
        tuple(allowances),
        uplift,
    )


def _items(body: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = body.get(key, [])
    if not isinstance(value, list) or any(not isinstance(v, Mapping) for v in value):
        raise RatingError(f"{key}: must be a list of objects")
    return value


def _event_type(value: Any, where: str) -> str:
    if value not in EVENT_TYPES:
        raise RatingError(f"{where}.event_type: {value!r} is not one of {', '.join(EVENT_TYPES)}")
    return str(value)


def _prefix(text: str) -> str:
    digits = normalized_number(text)
    if not digits.isdigit():
        raise RatingError(f"prefix {text!r} is not a number prefix")
    return digits


_PUNCTUATION = str.maketrans("", "", " \t+-()")


def normalized_number(destination: str) -> str:
    return destination.translate(_PUNCTUATION)


# --- rating ---------------------------------------------------------------------------


def zone_of(plan: PlanVersion, destination: str) -> str | None:
    """The zone with the longest prefix of `destination`; None when none matches."""
    number = normalized_number(destination)
    best: Zone | None = None
    for zone in plan.zones:
        if number.startswith(zone.prefix) and (best is None or len(zone.prefix) > len(best.prefix)):
            best = zone
    return None if best is None else best.name


def band_of(plan: PlanVersion, start: datetime) -> str | None:
    """The band of a moment, read in the plan's time zone."""
    local = start.astimezone(plan.tz)
    for band in plan.bands:
        if band.holds(local):
            return band.name
    return None


def rate_for(plan: PlanVersion, event_type: str, zone: str | None, band: str | None) -> Rate:
    """The most specific rate: exact zone over any zone, then exact band over any band."""
    key = (event_type, zone, band)
    cached = plan.best_rates.get(key)
    if cached is not None:
        return cached
    best: tuple[int, Rate] | None = None
    for rate in plan.rates:
        if rate.event_type != event_type:
            continue
        if rate.zone is not None and rate.zone != zone:
            continue
        if rate.band is not None and rate.band != band:
            continue
        score = (2 if rate.zone is not None else 0) + (1 if rate.band is not None else 0)
        if best is None or score > best[0]:
            best = (score, rate)
    if best is None:
        raise RatingError(
            f"the plan has no {event_type} rate for zone {zone or '(none)'}"
            f" in band {band or '(none)'}"
        )
    plan.best_rates[key] = best[1]
    return best[1]


def version_at(versions: Sequence[PlanVersion], start: datetime) -> PlanVersion:
    """The version in force at `start`: the latest effective on or before its local date."""
    found: PlanVersion | None = None
    for version in versions:
        if version.effective_from <= start.astimezone(version.tz).date() and (
            found is None or version.effective_from > found.effective_from
        ):
            found = version
    if found is None:
        raise RatingError(f"no version of the plan is in force at {start.isoformat()}")
    return found


def _usage(rate: Rate, chargeable: Decimal, event_type: str) -> Decimal:
    if event_type == "voice":
        return chargeable / SECONDS_PER_MINUTE * rate.unit_amount
    if event_type == "data":
        return chargeable / BYTES_PER_MB * rate.unit_amount
    return chargeable * rate.unit_amount


def charge(
    plan: PlanVersion,
    rate: Rate,
    event_type: str,
    billed: Decimal,
    included: Decimal,
    roaming: bool,
) -> Decimal:
    """A CDR's amount: usage of what the allowance left, setup, roaming uplift, rounded once."""
    usage = _usage(rate, billed - included, event_type)
    total = usage + (rate.setup_amount if billed > 0 else Decimal(0))
    if roaming:
        total += total * plan.roaming_uplift_percent / 100
    return total.quantize(quantum(plan.currency), rounding=ROUND_HALF_UP)


def check_cdr(cdr: Cdr) -> None:
    if cdr.event_type not in EVENT_TYPES:
        raise RatingError(f"event_type {cdr.event_type!r} is not one of {', '.join(EVENT_TYPES)}")
    if cdr.start.tzinfo is None:
        raise RatingError("start needs a UTC offset (ISO 8601, e.g. 2026-03-02T08:15:00+01:00)")
    if not cdr.quantity.is_finite() or cdr.quantity < 0:
        raise RatingError("the duration, bytes or count must be zero or more")
    if cdr.event_type != "data" and cdr.quantity != cdr.quantity.to_integral_value():
        raise RatingError(f"a {cdr.event_type} quantity is a whole number")


@dataclass
class AllowanceLedger:
    """What each subscriber has used of each allowance, per local month."""

    used: dict[tuple[str, str, date, int], Decimal] = field(
        default_factory=lambda: defaultdict(Decimal)
    )

    def take(
        self, plan: PlanVersion, cdr: Cdr, zone: str | None, billed: Decimal, month: date
    ) -> Decimal:
        """What of `billed` the allowances of `month` (its first day, local) still cover."""
        return self.take_for(plan, cdr.subscriber, cdr.event_type, zone, billed, month)

    def take_for(
        self,
        plan: PlanVersion,
        subscriber: str,
        event_type: str,
        zone: str | None,
        billed: Decimal,
        month: date,
    ) -> Decimal:
        if not plan.allowances:
            return Decimal(0)
        for index, allowance in enumerate(plan.allowances):
            if not allowance.covers(event_type, zone):
                continue
            key = (subscriber, event_type, month, index)
            left = allowance.quantity - self.used[key]
            if left <= 0:
                continue
            included = min(left, billed)
            self.used[key] += included
            return included
        return Decimal(0)


def rate_cdr(
    plan: PlanVersion,
    cdr: Cdr,
    allowances: AllowanceLedger,
    window: Callable[[date], date] | None = None,
) -> RatedCdr:
    """`window`: the first day of the allowance period holding a local day (default the
    calendar month; a subscription's billing period for a subscriber on one)."""
    check_cdr(cdr)
    zone = zone_of(plan, cdr.destination) if cdr.event_type != "data" else None
    local = cdr.start.astimezone(plan.tz)
    band = band_of(plan, local)
    rate = rate_for(plan, cdr.event_type, zone, band)
    billed = cdr.quantity if cdr.event_type == "sms" else rate.increment.billed(cdr.quantity)
    day = local.date()
    included = allowances.take(
        plan, cdr, zone, billed, window(day) if window is not None else day.replace(day=1)
    )
    amount = charge(plan, rate, cdr.event_type, billed, included, cdr.roaming)
    return RatedCdr(
        cdr,
        plan.name,
        plan.effective_from,
        zone,
        band,
        billed,
        included,
        amount,
        plan.currency,
        day,
    )


def rate_cdrs(
    versions: Sequence[PlanVersion],
    cdrs: Iterable[Cdr],
    allowances: AllowanceLedger | None = None,
) -> list[RatedCdr]:
    """Rate CDRs of one plan in event-time order (allowances are consumed in that order)."""
    ledger = allowances if allowances is not None else AllowanceLedger()
    ordered = sorted(cdrs, key=lambda c: (c.start, c.id))
    return [rate_cdr(version_at(versions, c.start), c, ledger) for c in ordered]


# --- CDR rows --------------------------------------------------------------------------

QUANTITY_FIELDS = ("duration_seconds", "bytes", "count")


def parse_cdr(row: Mapping[str, Any]) -> Cdr:
    """A CDR from a CSV row or a JSON object (API.md names); errors name the field."""
    record_id = row.get("id")
    if not isinstance(record_id, str) or not record_id.strip() or len(record_id) > 200:
        raise RatingError("id: a record id (1 to 200 characters) is required")
    subscriber = row.get("subscriber")
    if not isinstance(subscriber, str) or not subscriber.strip() or len(subscriber) > 100:
        raise RatingError("subscriber: required (1 to 100 characters)")
    event_type = _event_type(row.get("event_type"), "cdr")
    start_text = row.get("start")
    try:
        start = datetime.fromisoformat(str(start_text))
    except ValueError:
        raise RatingError(f"start: {start_text!r} is not an ISO 8601 date-time") from None
    given = [f for f in QUANTITY_FIELDS if row.get(f) is not None and str(row.get(f)).strip() != ""]
    if len(given) != 1:
        raise RatingError("give exactly one of duration_seconds, bytes or count")
    try:
        quantity = Decimal(str(row[given[0]]).strip())
    except InvalidOperation:
        raise RatingError(f"{given[0]}: {row[given[0]]!r} is not a number") from None
    roaming = row.get("roaming", False)
    if isinstance(roaming, str):
        text = roaming.strip().lower()
        if text not in ("", "true", "false", "1", "0", "yes", "no"):
            raise RatingError(f"roaming: {roaming!r} is not true or false")
        roaming = text in ("true", "1", "yes")
    if not isinstance(roaming, bool):
        raise RatingError("roaming: must be true or false")
    destination = row.get("destination") or ""
    if not isinstance(destination, str) or len(destination) > 100:
        raise RatingError("destination: at most 100 characters")
    cdr = Cdr(
        record_id.strip(), subscriber.strip(), event_type, start, quantity, destination, roaming
    )
    check_cdr(cdr)
    return cdr


# --- many CDRs of one plan ------------------------------------------------------------

# A CDR as a rating run reads it: subscriber, id, event_type, start, quantity,
# destination, roaming.
CdrRow = tuple[str, str, str, datetime, Decimal, str, bool]
# A CDR's rating as a rating run writes it: plan, version, zone, band, billed quantity,
# included, amount, currency. CDRs rated alike share one (cached) tuple.
Rating = tuple[str, date, str | None, str | None, Decimal, Decimal, Decimal, str]
# What `PlanRater.rate_many` gives per CDR: its id, its rating, the rating as the
# caller's `encode` wrote it (cached with the rating) and the local day.
RatedRow = tuple[str, Rating, Any, date]

_MINUTES_PER_DAY = 1440
_CACHE_LIMIT = 100_000  # per rate: data rated per byte would otherwise keep every quantity
_MISSING = object()
_NONE = Decimal(0)


def band_table(plan: PlanVersion) -> tuple[str | None, ...]:
    """`band_of` for every minute of the week, at (isoweekday - 1) * 1440 + minute of the
    day: bands are given to the minute, so the band of a moment is its minute's."""
    out: list[str | None] = []
    for day in range(1, 8):  # 2024-01-01 is a Monday
        for minute in range(_MINUTES_PER_DAY):
            moment = datetime(2024, 1, day, minute // 60, minute % 60)
            out.append(next((b.name for b in plan.bands if b.holds(moment)), None))
    return tuple(out)


class _RateCache:
    """A rate with what its CDRs repeat: billed quantities, and ratings (with their
    encoding) by (billed, included, roaming): `charge` is exact, so the same inputs give
    the same amount, and the rest of a rating is the zone's, band's and version's."""

    __slots__ = ("billed", "rate", "ratings", "zone")

    def __init__(self, rate: Rate, zone: str | None) -> None:
        self.rate = rate
        self.zone = zone
        self.billed: dict[Decimal, Decimal] = {}
        self.ratings: dict[tuple[Decimal, Decimal, bool], tuple[Rating, Any]] = {}


class _Compiled:
    __slots__ = ("bands", "plan", "rates")

    def __init__(self, plan: PlanVersion) -> None:
        self.plan = plan
        self.bands = band_table(plan)
        # (event_type, destination, band) -> the zone's rate or why there is none: one
        # look-up for zone_of and rate_for together.
        self.rates: dict[tuple[str, str, str | None], _RateCache | str] = {}


class PlanRater:
    """`rate_cdr` for many CDRs of one plan (all its versions) in a tight loop: each
    version's bands are a table of the week's minutes, zones, rates, billed quantities
    and amounts are looked up once, and the version in force once per local day. The
    rules are rate_cdr's own functions (`zone_of`, `rate_for`, `Increment.billed`,
    `AllowanceLedger.take_for`, `charge`); a CDR out of the common path (a plan whose
    versions have different time zones, a quantity rate_cdr refuses, no version in force)
    is rated by `rate_cdr` itself."""

    def __init__(
        self, versions: Sequence[PlanVersion], encode: Callable[[Rating], Any] = tuple
    ) -> None:
        """`encode`: what the caller makes of a rating (the run: its COPY text), computed
        once per distinct rating and handed out with it."""
        self.versions = list(versions)
        self.encode = encode
        self.seed_tz = self.versions[-1].tz  # the zone months are counted in (rate_through)
        single = len({v.time_zone for v in self.versions}) == 1
        self.tz: ZoneInfo | None = self.seed_tz if single else None
        self._by_day: dict[date, _Compiled | None] = {}
        self._compiled: dict[date, _Compiled] = {}

    def _on(self, day: date) -> _Compiled | None:
        """version_at's rule for a local day (all versions in one time zone)."""
        found = self._by_day.get(day, _MISSING)
        if found is not _MISSING:
            return found  # type: ignore[return-value]
        version: PlanVersion | None = None
        for v in self.versions:
            if v.effective_from <= day and (
                version is None or v.effective_from > version.effective_from
            ):
                version = v
        compiled = None
        if version is not None:
            compiled = self._compiled.get(version.effective_from)
            if compiled is None:
                compiled = self._compiled[version.effective_from] = _Compiled(version)
        self._by_day[day] = compiled
        return compiled

    def _one(
        self,
        ledger: AllowanceLedger,
        subscriber: str,
        row: CdrRow,
        window: Callable[[date], date],
    ) -> RatedRow:
        cdr = Cdr(row[1], subscriber, row[2], row[3], row[4], row[5], row[6])
        r = rate_cdr(version_at(self.versions, cdr.start), cdr, ledger, window)
        rating: Rating = (
            r.plan,
            r.version,
            r.zone,
            r.band,
            r.billed_quantity,
            r.included,
            r.amount,
            r.currency,
        )
        return (r.cdr.id, rating, self.encode(rating), r.day)

    def rate_many(
        self,
        ledger: AllowanceLedger,
        subscriber: str,
        rows: Iterable[CdrRow],
        window: Callable[[date], date],
        on_month: Callable[[date], None],
        errors: list[tuple[str, str]],
    ) -> Iterator[RatedRow]:
        """Rate one subscriber's CDRs (`rows`, all of `subscriber`) in event-time order.
        `on_month(first day)` is called
        before the first CDR of each allowance period (to seed what earlier runs used);
        unrateable CDRs go to `errors` as (id, reason)."""
        tz = self.tz
        # Per local day: its allowance period and the version in force (None: rate_cdr's).
        days: dict[date, tuple[date, _Compiled | None]] = {}
        seen: set[date] = set()
        # (version, event_type, zone, period) whose allowances are used up: `take_for`
        # would give 0 (what is used only grows), so it is not asked again.
        spent: set[tuple[date, str, str | None, date]] = set()
        for row in rows:
            _, cdr_id, event_type, start, quantity, destination, roaming = row
            local = start.astimezone(self.seed_tz if tz is None else tz)
            day = local.date()
            known = days.get(day)
            if known is None:
                month = window(day)
                if month not in seen:
                    seen.add(month)
                    on_month(month)
                known = days[day] = (month, None if tz is None else self._on(day))
            month, compiled = known
            if (
                compiled is None
                or start.tzinfo is None
                or event_type not in EVENT_TYPES
                or not quantity.is_finite()
                or quantity < 0
                or (event_type != "data" and quantity != quantity.to_integral_value())
            ):
                try:
                    yield self._one(ledger, subscriber, row, window)
                except RatingError as exc:
                    errors.append((cdr_id, exc.message))
                continue
            plan = compiled.plan
            band = compiled.bands[
                (local.isoweekday() - 1) * _MINUTES_PER_DAY + local.hour * 60 + local.minute
            ]
            key = (event_type, "" if event_type == "data" else destination, band)
            cache = compiled.rates.get(key)
            if cache is None:
                zone = zone_of(plan, destination) if event_type != "data" else None
                try:
                    cache = _RateCache(rate_for(plan, event_type, zone, band), zone)
                except RatingError as exc:
                    cache = exc.message
                compiled.rates[key] = cache
            if isinstance(cache, str):
                errors.append((cdr_id, cache))
                continue
            if event_type == "sms":
                billed = quantity
            else:
                known_billed = cache.billed.get(quantity)
                if known_billed is None:
                    if len(cache.billed) >= _CACHE_LIMIT:
                        cache.billed.clear()
                    # Increment.billed's result has exponent 0 whatever the quantity's
                    # exponent, so a cached value is the very one it would give.
                    known_billed = cache.billed[quantity] = cache.rate.increment.billed(quantity)
                billed = known_billed
            included = _NONE
            if plan.allowances:
                used_up = (plan.effective_from, event_type, cache.zone, month)
                if used_up not in spent:
                    included = ledger.take_for(
                        plan, subscriber, event_type, cache.zone, billed, month
                    )
                    if not included and billed:
                        spent.add(used_up)
            rating_key = (billed, included, roaming)
            found = cache.ratings.get(rating_key)
            if found is None:
                if len(cache.ratings) >= _CACHE_LIMIT:
                    cache.ratings.clear()
                # Quantized to the currency: equal inputs give the same digits.
                amount = charge(plan, cache.rate, event_type, billed, included, roaming)
                rating: Rating = (
                    plan.name,
                    plan.effective_from,
                    cache.zone,
                    band,
                    billed,
                    included,
                    amount,
                    plan.currency,
                )
                found = cache.ratings[rating_key] = (rating, self.encode(rating))
            yield (cdr_id, found[0], found[1], day)
