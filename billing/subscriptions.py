"""Subscriptions as pure rules: which lines a subscription period produces.

A subscription bills its recurring items in advance, one invoice per billing
period `[start, end)` cut at the billing anchor (billing.periods). What each
command does, in dates:

- **Trial.** Nothing is charged before `trial_end`; the first paid period
  starts on `trial_end`. Without an explicit anchor the anchor *is*
  `trial_end` (so the paid periods are full ones); with one, the first paid
  period is a stub from `trial_end` to the next anchor date.
- **Stubs.** A period shorter than its cycle (a start between anchor dates,
  a resume, a cancellation date inside a period) is charged by day:
  `share(full, cycle_period, service)` = the full-period amount prorated
  (billing.proration) from the service start, minus the same from the
  service end. A credit for `[D, end)` is the exact negation of that share,
  so a charge followed by a credit always nets to the days used.
- **Change** of items at E inside the current period: for every item that
  changes, a credit of the old item's share of `[E, end)` and a charge of the
  new item's share (the golden case: 90.00 → 120.00 on Apr 21 of
  `[Apr 1, May 1)` gives −30.00 and +40.00). Unchanged items give no lines.
  Prorations are worked out on the catalog price (before coupons).
- **Cancel** at D: the used part is kept; the unused part `[D, end)` of a
  period already invoiced is credited; a period not yet invoiced is only
  billed up to D. `now` is D = today; `period_end` is the current period end.
- **Pause** stops invoicing from the pause date (the period already invoiced
  runs out, no credit). **Resume** continues on the same anchor: periods that
  fell wholly inside the pause are never billed, and the period in which the
  subscription resumes is billed as a stub from the resume date.
- **Status** is derived on read: canceled (on or after the cancel date),
  paused, trialing (before `trial_end`), past_due (an invoice of the
  subscription is overdue with an amount due, read from the ledger), active.
- **Coupons** (percent or amount; once, repeating N periods, forever) apply
  to the recurring lines of the first N paid periods, allocated over the
  lines by largest remainder (billing.discounts). Proration lines get none.
- **Credits are never negative invoices.** Proration lines that net to a
  credit (a downgrade, a cancellation) are issued as credit notes on the
  invoice lines they take back (`credit_parts` says which price gives how
  much); that holds for `next_invoice` too — a credit is owed now and never
  waits in a pending draft, so a period invoice can never net below zero.
- **Usage in arrears.** Items with a usage price (`Item.usage`) carry no
  quantity and give no line in advance, no proration and no credit: their
  usage is rated at period end (billing.usage) and handed to `period_lines`
  as `arrears`, lines for the *previous* period (their own service period),
  which the invoice carries after the in-advance lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from enum import StrEnum

from billing.discounts import AmountDiscount, Discount, PercentDiscount, allocate_discount
from billing.errors import InvalidBillingRequest
from billing.periods import Interval, Period, anchor_date, next_period_end
from billing.proration import prorate
from billing.rating import Charge, ChargeModel, FlatCharge, PerUnitCharge, rate
from billing.usage import UsagePrice
from ledger.money import Money, allocate

__all__ = [
    "Coupon",
    "CouponDuration",
    "CreditPart",
    "Item",
    "Line",
    "Plan",
    "ProrationMode",
    "SubscriptionStatus",
    "cancellation_credits",
    "change_lines",
    "check_items",
    "coupon_of",
    "credit_parts",
    "cycle_period",
    "due_periods",
    "item_amount",
    "nets_to_credit",
    "period_lines",
    "share",
    "status_on",
]


class SubscriptionStatus(StrEnum):
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    PAUSED = "paused"
    SUSPENDED = "suspended"  # by dunning (billing/dunning.py): no new periods billed
    CANCELED = "canceled"


class ProrationMode(StrEnum):
    INVOICE_NOW = "invoice_now"  # a separate invoice with the proration lines, finalized now
    NEXT_INVOICE = "next_invoice"  # the lines wait (in a pending draft) for the next period
    NONE = "none"


class CouponDuration(StrEnum):
    ONCE = "once"
    REPEATING = "repeating"
    FOREVER = "forever"


@dataclass(frozen=True, slots=True)
class Coupon:
    discount: Discount
    duration: CouponDuration
    periods: int | None = None  # for repeating: how many paid periods

    def applies_to(self, paid_index: int) -> bool:
        """Whether the `paid_index`-th paid period (0 = the first) gets the discount."""
        if self.duration is CouponDuration.FOREVER:
            return True
        if self.duration is CouponDuration.ONCE:
            return paid_index == 0
        return paid_index < (self.periods or 0)


@dataclass(frozen=True, slots=True)
class Item:
    """One priced item of a subscription version."""

    price_id: str
    description: str  # product name, shown on the invoice
    charge: Charge
    quantity: Decimal
    revenue_account: str = "Income:Subscriptions"
    usage: UsagePrice | None = None  # billed in arrears from usage events

    @property
    def key(self) -> tuple[str, Decimal]:
        return self.price_id, self.quantity


@dataclass(frozen=True, slots=True)
class Line:
    """An invoice line a subscription produces (before tax)."""

    kind: str  # subscription, proration, usage
    description: str
    quantity: Decimal
    unit_amount: Decimal
    amount: Money  # quantity * unit_amount, rounded to the minor unit
    service: Period
    revenue_account: str
    price_id: str | None = None
    discount: Money | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """The billing terms of a subscription, as far as dates go."""

    anchor: date
    interval: Interval
    count: int = 1
    cancel_at: date | None = None  # no service from this day on
    paused_on: date | None = None  # no invoicing of periods starting on or after this day
    items: tuple[Item, ...] = field(default=())

    def period_from(self, start: date) -> Period | None:
        """The billing period starting on `start`, cut at the cancel date; None if none."""
        if self.cancel_at is not None and start >= self.cancel_at:
            return None
        end = next_period_end(self.anchor, start, self.interval, self.count)
        if self.cancel_at is not None and self.cancel_at < end:
            end = self.cancel_at
        return Period(start, end)


def check_items(items: Sequence[Item], currency: str) -> None:
    """Items of one subscription: some, with non-negative quantities, in one currency."""
    if not items:
        raise InvalidBillingRequest("a subscription needs at least one item")
    for index, item in enumerate(items):
        if not item.quantity.is_finite() or item.quantity < 0:
            raise InvalidBillingRequest(
                f"items[{index}]: quantity must be zero or more, got {item.quantity}",
                item=index,
            )
        charge_currency = getattr(item.charge, "currency", currency)
        if charge_currency != currency:
            raise InvalidBillingRequest(
                f"items[{index}]: the price is in {charge_currency}, the customer bills in"
                f" {currency}",
                item=index,
            )
        if item.charge.model is ChargeModel.PERCENTAGE:
            raise InvalidBillingRequest(
                f"items[{index}]: a percentage price needs a base amount and cannot be a"
                " subscription item",
                item=index,
            )


def cycle_period(anchor: date, interval: Interval, count: int, day: date) -> Period:
    """The whole cycle `[boundary, next boundary)` containing `day`, ignoring stubs."""
    end = next_period_end(anchor, day, interval, count)
    if interval in (Interval.MONTH, Interval.YEAR):
        months = count * (12 if interval is Interval.YEAR else 1)
        n = ((end.year - anchor.year) * 12 + end.month - anchor.month) // months
    else:
        days = count * (7 if interval is Interval.WEEK else 1)
        n = (end - anchor).days // days
    return Period(anchor_date(anchor, interval, count, n - 1), end)


def item_amount(item: Item) -> Money:
    """The full-period amount of an item: its price rated for its quantity.

    A flat price is a fee per unit of the subscription item (a plan bought
    twice costs twice); every other model rates the quantity itself.
    """
    if isinstance(item.charge, FlatCharge):
        return rate(PerUnitCharge(item.charge.currency, item.charge.amount), item.quantity)
    return rate(item.charge, item.quantity)


def share(full: Money, cycle: Period, service: Period) -> Money:
    """What `service` (inside `cycle`) costs when `cycle` costs `full`, by day."""
    if service == cycle:
        return full
    if not (cycle.start <= service.start and service.end <= cycle.end):
        raise InvalidBillingRequest(f"service period {service} is outside its cycle {cycle}")
    amount = prorate(full, cycle, service.start)
    if service.end < cycle.end:
        amount = amount - prorate(full, cycle, service.end)
    return amount


def _line(kind: str, item: Item, amount: Money, full: bool, service: Period) -> Line:
    if full and isinstance(item.charge, PerUnitCharge):
        quantity, unit = item.quantity, item.charge.unit_amount
    elif full and isinstance(item.charge, FlatCharge):
        quantity, unit = item.quantity, item.charge.amount
    else:
        quantity, unit = Decimal(1), amount.amount
    label = item.description if item.quantity == 1 else f"{item.description} × {item.quantity}"
    if not full:
        label = f"{label} ({'unused time' if amount.amount < 0 else 'prorated'}, {service})"
    return Line(kind, label, quantity, unit, amount, service, item.revenue_account, item.price_id)


def period_lines(
    plan: Plan,
    period: Period,
    *,
    coupon: Coupon | None = None,
    paid_index: int = 0,
    arrears: Sequence[Line] = (),
) -> list[Line]:
    """The lines of the invoice for `period`: each item in advance, the coupon, then arrears."""
    cycle = cycle_period(plan.anchor, plan.interval, plan.count, period.start)
    lines: list[Line] = []
    for item in plan.items:
        if item.usage is not None:
            continue
        full = item_amount(item)
        amount = share(full, cycle, period)
        lines.append(_line("subscription", item, amount, period == cycle, period))
    if coupon is not None and coupon.applies_to(paid_index) and lines:
        allocation = allocate_discount(coupon.discount, [line.amount for line in lines])
        lines = [
            replace(line, discount=d) if not d.is_zero() else line
            for line, d in zip(lines, allocation.per_line, strict=True)
        ]
    return [*lines, *arrears]


def change_lines(plan: Plan, new_items: Sequence[Item], current: Period, on: date) -> list[Line]:
    """Proration of an item change on `on` inside the invoiced period `current`."""
    if not current.start <= on < current.end:
        raise InvalidBillingRequest(
            f"effective_date {on} is outside the current billing period {current}",
            effective_date=on.isoformat(),
            period_start=current.start.isoformat(),
            period_end=current.end.isoformat(),
        )
    cycle = cycle_period(plan.anchor, plan.interval, plan.count, on)
    rest = Period(on, current.end)
    kept = {i.key for i in plan.items} & {i.key for i in new_items}
    lines: list[Line] = []
    for item in plan.items:
        if item.key not in kept and item.usage is None:
            lines.append(
                _line("proration", item, -share(item_amount(item), cycle, rest), False, rest)
            )
    for item in new_items:
        if item.key not in kept and item.usage is None:
            lines.append(
                _line("proration", item, share(item_amount(item), cycle, rest), False, rest)
            )
    return lines


def cancellation_credits(plan: Plan, current: Period, on: date) -> list[Line]:
    """Credits for the unused part `[on, current.end)` of an invoiced period."""
    if not current.start <= on < current.end:
        return []
    cycle = cycle_period(plan.anchor, plan.interval, plan.count, on)
    rest = Period(on, current.end)
    return [
        _line("proration", item, -share(item_amount(item), cycle, rest), False, rest)
        for item in plan.items
        if item.usage is None and not item_amount(item).is_zero()
    ]


@dataclass(frozen=True, slots=True)
class CreditPart:
    """What a change that nets to a credit takes back from the invoiced line of one price."""

    price_id: str | None
    service: Period  # the span credited (the credit lines' service periods)
    amount: Money  # net of tax, > 0


def nets_to_credit(lines: Sequence[Line]) -> bool:
    return (
        bool(lines)
        and sum((line.amount for line in lines), Money.zero(lines[0].amount.currency)).amount < 0
    )


def credit_parts(lines: Sequence[Line]) -> list[CreditPart]:
    """How proration lines that net to a credit are credited.

    Lines of the same price net off first (a quantity change credits the old
    quantity and charges the new one). Each price left with a credit gives
    back its credit, less — pro rata, largest remainder — what the prices
    left with a charge cost, so the parts sum to the net credit.
    """
    if not nets_to_credit(lines):
        return []
    currency = lines[0].amount.currency
    zero = Money.zero(currency)
    by_price: dict[str | None, list[Line]] = {}
    for line in lines:
        by_price.setdefault(line.price_id, []).append(line)
    sums = {price: sum((x.amount for x in group), zero) for price, group in by_price.items()}
    credits = [price for price, total in sums.items() if total.amount < 0]
    charges = sum((t for t in sums.values() if t.amount > 0), zero)
    net = sum((-sums[p] for p in credits), zero) - charges
    parts = allocate(net, [-sums[p].amount for p in credits])
    out = []
    for price, part in zip(credits, parts, strict=True):
        spans = [x.service for x in by_price[price] if x.amount.amount < 0]
        service = Period(min(p.start for p in spans), max(p.end for p in spans))
        if not part.is_zero():
            out.append(CreditPart(price, service, part))
    return out


def due_periods(plan: Plan, next_start: date, as_of: date, limit: int = 1000) -> list[Period]:
    """Periods to invoice by `as_of` (in advance: every one starting on or before it)."""
    periods: list[Period] = []
    start = next_start
    while start <= as_of and len(periods) < limit:
        if plan.paused_on is not None and start >= plan.paused_on:
            break
        period = plan.period_from(start)
        if period is None:
            break
        periods.append(period)
        start = period.end
    return periods


def status_on(
    today: date,
    *,
    trial_end: date | None,
    cancel_at: date | None,
    paused_on: date | None,
    overdue: bool,
    suspended_on: date | None = None,
) -> SubscriptionStatus:
    """The status a subscription has on `today` (the book's date)."""
    if cancel_at is not None and today >= cancel_at:
        return SubscriptionStatus.CANCELED
    if paused_on is not None and today >= paused_on:
        return SubscriptionStatus.PAUSED
    if suspended_on is not None and today >= suspended_on:
        return SubscriptionStatus.SUSPENDED
    if trial_end is not None and today < trial_end:
        return SubscriptionStatus.TRIALING
    if overdue:
        return SubscriptionStatus.PAST_DUE
    return SubscriptionStatus.ACTIVE


def coupon_of(
    percent_off: Decimal | None,
    amount_off: Decimal | None,
    currency: str | None,
    duration: str,
    periods: int | None,
) -> Coupon:
    """A coupon from its stored form."""
    discount: Discount
    if percent_off is not None:
        discount = PercentDiscount(percent_off)
    elif amount_off is not None and currency is not None:
        discount = AmountDiscount(Money(amount_off, currency))
    else:
        raise InvalidBillingRequest("a coupon needs percent_off, or amount_off and currency")
    kind = CouponDuration(duration)
    if kind is CouponDuration.REPEATING and (periods is None or periods < 1):
        raise InvalidBillingRequest("a repeating coupon needs duration_in_periods ≥ 1")
    return Coupon(discount, kind, periods)
