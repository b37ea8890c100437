"""Recurring-revenue metrics over plain data: MRR and its movements, churn,
retention, ARPA, cohorts and LTV (ACCOUNTING.md, "MRR").

Rules:
- A month's MRR is the monthly value of the subscriptions in service on its
  last day. In service on day D: started on or before D, not canceled by D
  (`cancel_at` is the first day out of service), not paused on D, and not in
  a trial on D (`trial_end` is the first paid day).
- The value of a subscription is its item versions in force on D, each rated
  for its quantity as a billing period would be, normalized to a month: a
  cycle of N months is divided by N, a year by 12 × N, a week times 52 / 12
  / N, a day times 365 / 12 / N (1,200.00 a year → 100.00).
- Recurring discounts reduce it: a `forever` coupon always, a `repeating`
  one while the period that contains D is among its first N paid periods; a
  `once` coupon is not recurring and does not.
- Trials, one-off charges and tax are excluded (they are not subscription
  items, or not in service).
- Usage counts at its trailing three-month average (`usage_mrr`); usage
  prices cannot yet be subscription items in this service, so the usage part
  is zero for every customer today.
- Each customer's MRR is rounded to the currency's minor unit once; the
  movements are differences of those rounded figures, so start + new +
  expansion + contraction + churn + reactivation = end exactly.
- Every figure is per currency. When the book holds FX rates, each month
  also gets a total in the functional currency (`converted_totals`): each
  currency's end and movements at the rate in force on the month's last day
  (the latest rate on or before it, resolved as billing.fx.resolve_rate
  does), rounded half-up to the functional currency's minor unit per
  currency; start is the previous month's converted end (at the previous
  month-end's rate), and `fx_effect` is the change of rate on that start, so
  start + movements + fx_effect = end exactly in the functional currency too.
- Movements per customer between two month ends: from zero to more is new
  (first time) or reactivation (the customer had MRR before); from more to
  zero is churn; up is expansion, down is contraction. Contraction and churn
  are negative.
"""

from __future__ import annotations

import bisect
import calendar
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext
from functools import lru_cache
from typing import Any

from billing.discounts import PercentDiscount
from billing.fx import convert
from billing.periods import Interval, _index_after
from billing.rating import Charge
from billing.subscriptions import Coupon, CouponDuration, Item, item_amount
from ledger.money import Money, quantum

RULES = (
    "A month's MRR is that of the subscriptions in service on its last day"
    " (cancel_at is the first day out of service; paused and trialing"
    " subscriptions are out of service).",
    "Cycles are normalized to a month: N months / N, a year / 12, a week x 52 / 12,"
    " a day x 365 / 12 (1,200.00 a year is 100.00).",
    "Recurring discounts (forever, and repeating while within its periods) reduce MRR;"
    " once-only coupons, trials, one-off charges and tax are excluded.",
    "Usage counts at its trailing three-month average; usage prices are not subscription"
    " items in this service, so usage adds 0.",
    "Each customer's MRR is rounded to the minor unit, so start + movements = end exactly.",
    "Figures are per currency. With FX rates, `totals` adds each month in the functional"
    " currency: end and movements at the rate in force on the month's last day, start at"
    " the previous month-end's rate, fx_effect = the difference, so start + movements +"
    " fx_effect = end.",
    "ARR = 12 x MRR at month end.",
)

LTV_FORMULA = "LTV = ARPA / average monthly revenue churn rate (gross margin taken as 100%)"
MOVEMENTS = ("new", "expansion", "contraction", "churn", "reactivation")
_PRECISION = 60
_RATE = Decimal("0.0001")


@dataclass(frozen=True, slots=True)
class ItemVersion:
    charge: Charge
    quantity: Decimal
    effective_from: date
    effective_to: date | None  # first day no longer in force

    def in_force(self, day: date) -> bool:
        return self.effective_from <= day and (self.effective_to is None or day < self.effective_to)


@dataclass(frozen=True, slots=True)
class SubscriptionFacts:
    customer: str
    currency: str
    start: date
    anchor: date
    interval: Interval
    interval_count: int
    items: tuple[ItemVersion, ...]
    trial_end: date | None = None
    cancel_at: date | None = None
    paused_on: date | None = None
    coupon: Coupon | None = None


def month_end(month: date) -> date:
    return month.replace(day=calendar.monthrange(month.year, month.month)[1])


MAX_MONTHS = 120


def month_range(first: str, last: str) -> tuple[date, date]:
    """`YYYY-MM`..`YYYY-MM` as first days of months; ValueError says what is wrong."""
    months: list[date] = []
    for what, text in (("from", first), ("to", last)):
        parts = text.split("-")
        if (
            len(parts) != 2
            or len(parts[0]) != 4
            or len(parts[1]) != 2
            or not (text.isascii() and (parts[0] + parts[1]).isdigit())
        ):
            raise ValueError(f"{what} must be a month, YYYY-MM; got {text!r}")
        try:
            months.append(date(int(parts[0]), int(parts[1]), 1))
        except ValueError:
            raise ValueError(f"{what} must be a month, YYYY-MM; got {text!r}") from None
    start, end = months
    if end < start:
        raise ValueError(f"the range ends ({last}) before it starts ({first})")
    if (end.year - start.year) * 12 + end.month - start.month >= MAX_MONTHS:
        raise ValueError(f"a range may span at most {MAX_MONTHS} months")
    return start, end


def months_between(first: date, last: date) -> list[date]:
    """First days of the months from `first`'s through `last`'s."""
    out: list[date] = []
    year, month = first.year, first.month
    while (year, month) <= (last.year, last.month):
        out.append(date(year, month, 1))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def in_service(sub: SubscriptionFacts, day: date) -> bool:
    if sub.start > day:
        return False
    if sub.cancel_at is not None and sub.cancel_at <= day:
        return False
    if sub.paused_on is not None and sub.paused_on <= day:
        return False
    return sub.trial_end is None or sub.trial_end <= day


def to_month(amount: Decimal, interval: Interval, count: int) -> Decimal:
    """A cycle's amount as a month's (exact, unrounded)."""
    with localcontext(prec=_PRECISION):
        if interval is Interval.MONTH:
            return amount / count
        if interval is Interval.YEAR:
            return amount / (12 * count)
        if interval is Interval.WEEK:
            return amount * 52 / (12 * count)
        return amount * 365 / (12 * count)


def usage_mrr(last_three_months: Sequence[Decimal]) -> Decimal:
    """Usage's monthly value: the trailing three months' billed usage, averaged
    (a month without usage counts as zero)."""
    with localcontext(prec=_PRECISION):
        return sum(last_three_months[-3:], Decimal(0)) / 3


def _paid_index(sub: SubscriptionFacts, day: date) -> int:
    """Which paid period (0 = the first) contains `day`."""
    first_paid = sub.trial_end or sub.start
    return _index_after(sub.anchor, day, sub.interval, sub.interval_count) - _index_after(
        sub.anchor, first_paid, sub.interval, sub.interval_count
    )


@lru_cache(maxsize=65536)
def _rated(charge: Charge, quantity: Decimal) -> Decimal:
    """An item's full-period amount (as billing rates it); many items share a shape."""
    return item_amount(Item("", "", charge, quantity)).amount


def subscription_mrr(sub: SubscriptionFacts, day: date) -> Decimal:
    """The subscription's monthly value on `day` (exact; zero when out of service)."""
    if not in_service(sub, day):
        return Decimal(0)
    period = sum((_rated(v.charge, v.quantity) for v in sub.items if v.in_force(day)), Decimal(0))
    coupon = sub.coupon
    if (
        coupon is not None
        and coupon.duration is not CouponDuration.ONCE
        and coupon.applies_to(_paid_index(sub, day))
    ):
        if isinstance(coupon.discount, PercentDiscount):
            with localcontext(prec=_PRECISION):
                period -= period * coupon.discount.percent / 100
        else:
            period = max(Decimal(0), period - coupon.discount.amount.amount)
    return _to_month(period, sub.interval, sub.interval_count)


@lru_cache(maxsize=65536)
def _to_month(amount: Decimal, interval: Interval, count: int) -> Decimal:
    """to_month, once per period amount and cycle (a book has few of them)."""
    return to_month(amount, interval, count)


def ratio(numerator: Decimal, denominator: Decimal) -> Decimal | None:
    """numerator / denominator to four places; None when there is nothing to divide by."""
    if not denominator:
        return None
    with localcontext(prec=_PRECISION):
        return (numerator / denominator).quantize(_RATE)


Key = tuple[str, str]  # (currency, customer)


def customer_mrr(subs: Iterable[SubscriptionFacts], day: date) -> dict[Key, Decimal]:
    """Each customer's MRR on `day`, per currency, rounded to the minor unit."""
    exact: dict[Key, Decimal] = defaultdict(Decimal)
    for sub in subs:
        value = subscription_mrr(sub, day)
        if value:
            exact[(sub.currency, sub.customer)] += value
    return _rounded(exact)


def change_days(sub: SubscriptionFacts) -> list[date] | None:
    """The days on which the subscription's value can change (sorted), or None when
    it may change with every period (a forever or repeating coupon: its applying
    depends on the paid period). Every test in subscription_mrr is `x <= day` for
    one of these days, so the value is constant from one to the next."""
    if sub.coupon is not None and sub.coupon.duration is not CouponDuration.ONCE:
        return None
    days = {sub.start}
    days.update(d for d in (sub.trial_end, sub.cancel_at, sub.paused_on) if d is not None)
    for version in sub.items:
        days.add(version.effective_from)
        if version.effective_to is not None:
            days.add(version.effective_to)
    return sorted(days)


def customer_mrr_on(
    subs: Iterable[SubscriptionFacts], days: Sequence[date]
) -> list[dict[Key, Decimal]]:
    """`customer_mrr(subs, day)` for each of the ascending `days`, rating a
    subscription again only when one of its change days has been reached."""
    exact: list[dict[Key, Decimal]] = [defaultdict(Decimal) for _ in days]
    for sub in subs:
        changes = change_days(sub)
        key = (sub.currency, sub.customer)
        value, seen = Decimal(0), -1  # seen: how many change days are <= the last day rated
        for n, day in enumerate(days):
            if changes is None:
                value = subscription_mrr(sub, day)
            else:
                reached = bisect.bisect_right(changes, day)
                if reached != seen:
                    value, seen = subscription_mrr(sub, day), reached
            if value:
                exact[n][key] += value
    return [_rounded(e) for e in exact]


def _rounded(exact: Mapping[Key, Decimal]) -> dict[Key, Decimal]:
    out: dict[Key, Decimal] = {}
    for (currency, customer), value in exact.items():
        rounded = Money(value, currency).round_to_minor().amount
        if rounded:
            out[(currency, customer)] = rounded
    return out


@dataclass(slots=True)
class MonthMrr:
    month: date
    currency: str
    start: Decimal = Decimal(0)
    new: Decimal = Decimal(0)
    expansion: Decimal = Decimal(0)
    contraction: Decimal = Decimal(0)
    churn: Decimal = Decimal(0)
    reactivation: Decimal = Decimal(0)
    end: Decimal = Decimal(0)
    customers_start: int = 0
    customers: int = 0
    churned_customers: int = 0

    @property
    def arr(self) -> Decimal:
        return self.end * 12

    @property
    def logo_churn_rate(self) -> Decimal | None:
        return ratio(Decimal(self.churned_customers), Decimal(self.customers_start))

    @property
    def revenue_churn_rate(self) -> Decimal | None:
        return ratio(-(self.churn + self.contraction), self.start)

    @property
    def nrr(self) -> Decimal | None:
        return ratio(self.start + self.expansion + self.contraction + self.churn, self.start)

    @property
    def grr(self) -> Decimal | None:
        return ratio(self.start + self.contraction + self.churn, self.start)

    @property
    def arpa(self) -> Decimal | None:
        if not self.customers:
            return None
        return Money(self.end / self.customers, self.currency).round_to_minor().amount


@dataclass(slots=True)
class Cohort:
    month: date  # the month the customers first had MRR
    currency: str
    customers: set[str] = field(default_factory=set)
    start_mrr: Decimal = Decimal(0)
    # month -> (customers still with MRR, their MRR)
    retained: dict[date, tuple[int, Decimal]] = field(default_factory=dict)


@dataclass(slots=True)
class MrrReport:
    months: list[MonthMrr]
    cohorts: list[Cohort]

    def ltv(self) -> dict[str, dict[str, Decimal | None]]:
        """Per currency: ARPA at the last month, average revenue churn rate, LTV."""
        out: dict[str, dict[str, Decimal | None]] = {}
        by_currency: dict[str, list[MonthMrr]] = defaultdict(list)
        for m in self.months:
            by_currency[m.currency].append(m)
        for currency, months in by_currency.items():
            rates = [r for r in (m.revenue_churn_rate for m in months) if r is not None]
            arpa = months[-1].arpa
            with localcontext(prec=_PRECISION):
                churn = (sum(rates, Decimal(0)) / len(rates)).quantize(_RATE) if rates else None
                value = (
                    Money(arpa / churn, currency).round_to_minor().amount
                    if arpa is not None and churn
                    else None
                )
            out[currency] = {"arpa": arpa, "revenue_churn_rate": churn, "ltv": value}
        return out


def movements(
    month: date,
    before: Mapping[Key, Decimal],
    after: Mapping[Key, Decimal],
    seen: set[Key],
) -> dict[str, MonthMrr]:
    """The movements from `before` to `after` per currency; `seen` holds the
    customers who had MRR at any earlier month end (and is updated)."""
    out: dict[str, MonthMrr] = {}

    def row(currency: str) -> MonthMrr:
        return out.setdefault(currency, MonthMrr(month, currency))

    for key in before.keys() | after.keys():
        currency = key[0]
        was, now = before.get(key, Decimal(0)), after.get(key, Decimal(0))
        m = row(currency)
        m.start += was
        m.end += now
        m.customers_start += 1 if was else 0
        m.customers += 1 if now else 0
        if not was and now:
            if key in seen:
                m.reactivation += now
            else:
                m.new += now
        elif was and not now:
            m.churn -= was
            m.churned_customers += 1
        elif now > was:
            m.expansion += now - was
        elif now < was:
            m.contraction += now - was
    seen.update(after.keys())
    return out


def _breaks(sub: SubscriptionFacts, days: Sequence[date]) -> list[int]:
    """The indices of `days` at which the subscription's value may differ from the day
    before (always 0): the first day on or after each change day (change_days)."""
    changes = change_days(sub)
    if changes is None:
        return list(range(len(days)))
    found = {0}
    for day in changes:
        n = bisect.bisect_left(days, day)
        if n < len(days):
            found.add(n)
    return sorted(found)


def customer_changes(
    subs: Iterable[SubscriptionFacts], days: Sequence[date]
) -> dict[Key, list[tuple[int, Decimal]]]:
    """Per customer and currency, the steps of its rounded MRR over the ascending
    `days`: (index, value) wherever it differs from the day before (zero before the
    first day). The figures are customer_mrr_on's — each customer's subscriptions summed
    in the same order, then rounded once — worked out only on the days a subscription
    of theirs can change, so the cost follows the changes, not customers × days."""
    by_key: dict[Key, list[SubscriptionFacts]] = defaultdict(list)
    for sub in subs:
        by_key[(sub.currency, sub.customer)].append(sub)
    # Subscriptions alike but for their customer (same plan, dates and items) have the
    # same values on the same days: each shape is rated once. Items are told apart by
    # identity, which is cheap to hash: subscription_facts shares one tuple among the
    # subscriptions with the same versions, and equal tuples that are not shared only
    # cost a second rating (every sub, and so its tuple, lives through the call).
    shapes: dict[tuple[Any, ...], int] = {}
    rated: list[tuple[list[int], list[Decimal]]] = []  # per shape: its breaks and values

    def shape_of(sub: SubscriptionFacts) -> int:
        shape = (
            sub.currency,
            sub.start,
            sub.anchor,
            sub.interval,
            sub.interval_count,
            id(sub.items),
            sub.trial_end,
            sub.cancel_at,
            sub.paused_on,
            sub.coupon,
        )
        found = shapes.get(shape)
        if found is None:
            breaks = _breaks(sub, days)
            rated.append((breaks, [subscription_mrr(sub, days[n]) for n in breaks]))
            found = shapes[shape] = len(rated) - 1
        return found

    # Customers whose subscriptions have the same shapes, in the same order, have the
    # same steps: each combination is summed and rounded once.
    done: dict[tuple[int, ...], list[tuple[int, Decimal]]] = {}
    out: dict[Key, list[tuple[int, Decimal]]] = {}
    for key, group in by_key.items():
        combination = tuple(shape_of(sub) for sub in group)
        steps = done.get(combination)
        if steps is None:
            steps = done[combination] = _steps([rated[i] for i in combination], quantum(key[0]))
        if steps:
            out[key] = steps
    return out


def shape_changes(
    shapes: Sequence[SubscriptionFacts],
    holders: Iterable[tuple[Key, Sequence[int]]],
    days: Sequence[date],
) -> dict[Key, list[tuple[int, Decimal]]]:
    """customer_changes given the subscriptions' distinct shapes (each a subscription
    but for its customer) and, per customer and currency, the shapes of its
    subscriptions (indices into `shapes`, one per subscription): each shape is rated
    once, each combination of shapes summed and rounded once."""
    rated: list[tuple[list[int], list[Decimal]] | None] = [None] * len(shapes)
    done: dict[tuple[int, ...], list[tuple[int, Decimal]]] = {}
    out: dict[Key, list[tuple[int, Decimal]]] = {}
    for key, held in holders:
        combination = tuple(held)
        steps = done.get(combination)
        if steps is None:
            each: list[tuple[list[int], list[Decimal]]] = []
            for i in combination:
                found = rated[i]
                if found is None:
                    sub = shapes[i]
                    breaks = _breaks(sub, days)
                    found = rated[i] = (breaks, [subscription_mrr(sub, days[n]) for n in breaks])
                each.append(found)
            steps = done[combination] = _steps(each, quantum(key[0]))
        if steps:
            out[key] = steps
    return out


def _steps(
    each: Sequence[tuple[list[int], list[Decimal]]], unit: Decimal
) -> list[tuple[int, Decimal]]:
    """One customer's steps from their subscriptions' breaks and values: at every break
    of any of them, the values in force added as customer_mrr_on adds them (from
    Decimal(0), in the subscriptions' order, skipping zeros), rounded half up to the
    minor unit as Money.round_to_minor does; kept where the rounded figure changes."""
    at = [dict(zip(breaks, values, strict=True)) for breaks, values in each]
    merged = each[0][0] if len(each) == 1 else sorted(set().union(*(b for b, _ in each)))
    current = [Decimal(0)] * len(each)
    steps: list[tuple[int, Decimal]] = []
    previous = Decimal(0)
    for n in merged:
        exact: Decimal | None = None
        for i, values_at in enumerate(at):
            if n in values_at:
                current[i] = values_at[n]
            if current[i]:
                exact = (Decimal(0) if exact is None else exact) + current[i]
        rounded = exact.quantize(unit, ROUND_HALF_UP) if exact is not None else Decimal(0)
        if rounded != previous:
            steps.append((n, rounded))
            previous = rounded
    return steps


def mrr_report(subs: Sequence[SubscriptionFacts], first: date, last: date) -> MrrReport:
    """Months `first`..`last` (first days of months), every currency that has
    MRR in them or in the month before; history before `first` decides new vs
    reactivation and the cohorts.

    The same figures as taking every customer's MRR at every month end and comparing
    consecutive month ends (`movements`), but worked from the changes only: a month's
    start and end are running totals per currency, its movements come from the
    customers whose MRR changed in it, and each cohort keeps a running count and sum."""
    earliest = min([*(s.start for s in subs), first])
    history = months_between(earliest, last)
    changes = customer_changes(subs, [month_end(m) for m in history])
    return report_from_changes(changes, earliest, first, last)


def report_from_changes(
    changes: Mapping[Key, Sequence[tuple[int, Decimal]]], earliest: date, first: date, last: date
) -> MrrReport:
    """mrr_report from each customer's steps (customer_changes) over the month ends of
    `earliest`..`last`, `earliest` being the first month of the book's history (the
    earliest subscription start, or `first` when that is earlier)."""
    history = months_between(earliest, last)
    # Customers with the same steps in the same currency move alike (the same movement
    # and cohort every month): each such group is walked once and counts for each of its
    # customers — its figures times their number, which for amounts in minor units is
    # exactly the sum of theirs.
    alike: dict[tuple[str, tuple[tuple[int, Decimal], ...]], list[str]] = defaultdict(list)
    for (currency, customer), steps in changes.items():
        alike[(currency, tuple(steps))].append(customer)
    # per month: (group, currency, its customers, was, now, had MRR at an earlier month end)
    events: list[list[tuple[int, str, list[str], Decimal, Decimal, bool]]] = [[] for _ in history]
    for g, ((currency, steps), group) in enumerate(alike.items()):
        was, had = Decimal(0), False
        for n, now in steps:
            events[n].append((g, currency, group, was, now, had))
            had = had or bool(now)
            was = now
    total: dict[str, Decimal] = defaultdict(Decimal)  # per currency: MRR at the last month end
    count: dict[str, int] = defaultdict(int)  # per currency: customers with MRR then
    member: dict[int, tuple[date, str]] = {}  # per group: its cohort (first month with MRR)
    cohorts: dict[tuple[date, str], Cohort] = {}
    kept: dict[tuple[date, str], list[Any]] = {}  # per cohort: [customers with MRR now, MRR]
    out: list[MonthMrr] = []
    for n, month in enumerate(history):
        moved: dict[str, MonthMrr] = {}

        def row(currency: str) -> MonthMrr:
            """The currency's row of this month, opened at last month's end."""
            m = moved.get(currency)  # noqa: B023 (called in this iteration only)
            if m is None:
                m = moved[currency] = MonthMrr(month, currency)  # noqa: B023
                m.start, m.customers_start = total[currency], count[currency]
            return m

        for currency, customers in count.items():
            if customers:
                row(currency)
        for g, currency, names, was, now, had in events[n]:
            k = len(names)
            m = row(currency)
            if not was and now:
                if had:
                    m.reactivation += now * k
                else:
                    m.new += now * k
            elif was and not now:
                m.churn -= was * k
                m.churned_customers += k
            elif now > was:
                m.expansion += (now - was) * k
            elif now < was:
                m.contraction += (now - was) * k
            total[currency] += (now - was) * k
            count[currency] += ((1 if now else 0) - (1 if was else 0)) * k
            if now and not had:  # their first MRR: they join this month's cohort
                cohort_key = (month, currency)
                cohort = cohorts.get(cohort_key)
                if cohort is None:
                    cohort = cohorts[cohort_key] = Cohort(month, currency)
                    kept[cohort_key] = [0, Decimal(0)]
                cohort.customers.update(names)
                cohort.start_mrr += now * k
                member[g] = cohort_key
            if g in member:
                state = kept[member[g]]
                state[0] += ((1 if now else 0) - (1 if was else 0)) * k
                state[1] += (now - was) * k
        for currency, m in moved.items():
            m.end, m.customers = total[currency], count[currency]
        if month >= first:
            out.extend(moved[c] for c in sorted(moved))
            for cohort_key, cohort in cohorts.items():
                if cohort.month >= first:
                    customers, value = kept[cohort_key]
                    cohort.retained[month] = (customers, value)
    return MrrReport(
        out,
        [c for (m, cur), c in sorted(cohorts.items()) if m >= first],
    )


@dataclass(slots=True)
class MonthTotal:
    """One month in the functional currency: start + movements + fx_effect = end."""

    month: date
    currency: str  # the functional currency
    rates: dict[str, Decimal]  # currency -> rate in force on the month's last day
    start: Decimal = Decimal(0)
    new: Decimal = Decimal(0)
    expansion: Decimal = Decimal(0)
    contraction: Decimal = Decimal(0)
    churn: Decimal = Decimal(0)
    reactivation: Decimal = Decimal(0)
    fx_effect: Decimal = Decimal(0)
    end: Decimal = Decimal(0)
    customers: int = 0

    @property
    def arr(self) -> Decimal:
        return self.end * 12


def previous_month_end(month: date) -> date:
    return month.replace(day=1) - timedelta(days=1)


def converted_totals(
    months: Sequence[MonthMrr],
    functional: str,
    rate: Callable[[str, date], Decimal | None],
) -> tuple[list[MonthTotal], list[tuple[date, str]]]:
    """Each month's figures summed over currencies in `functional` (rule in the
    module docstring). `rate(currency, day)` is the rate in force on `day`, or
    None when there is none; a month lacking a rate it needs has no total and is
    reported as (month, currency) in the second list."""
    by_month: dict[date, list[MonthMrr]] = defaultdict(list)
    for m in months:
        by_month[m.month].append(m)
    totals: list[MonthTotal] = []
    missing: list[tuple[date, str]] = []

    def at(amount: Decimal, currency: str, value: Decimal) -> Decimal:
        return convert(Money(amount, currency), value, functional).amount

    for month in sorted(by_month):
        rows = by_month[month]
        end_day, start_day = month_end(month), previous_month_end(month)
        now = {m.currency: rate(m.currency, end_day) for m in rows}
        then = {m.currency: rate(m.currency, start_day) if m.start else Decimal(1) for m in rows}
        lacking = sorted(c for c in now if now[c] is None or then[c] is None)
        if lacking:
            missing.extend((month, c) for c in lacking)
            continue
        rates = {c: r for c, r in now.items() if r is not None}
        total = MonthTotal(month, functional, rates)
        for m in rows:
            r_now, r_then = rates[m.currency], then[m.currency]
            assert r_then is not None
            total.start += at(m.start, m.currency, r_then)
            for name in MOVEMENTS:
                value = getattr(total, name) + at(getattr(m, name), m.currency, r_now)
                setattr(total, name, value)
            total.end += at(m.end, m.currency, r_now)
            total.customers += m.customers
        moved = sum((getattr(total, name) for name in MOVEMENTS), Decimal(0))
        total.fx_effect = total.end - total.start - moved
        totals.append(total)
    return totals, missing
