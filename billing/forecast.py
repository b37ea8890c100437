"""The cash-flow forecast over plain data: expected receipts by week, and its
back-test against what arrived.

Rules:
- Each receivable (an open invoice's amount due, or an invoice billing runs
  will issue) is expected on its due date shifted by its customer's average
  days late (rounded to whole days); a customer with no settled invoice yet
  takes the average of all settled invoices in its currency, and with none at
  all, pays on the due date.
- What is expected before the forecast's first day is expected on it (it is
  late already, but still expected).
- Week n covers the days first + 7n .. first + 7n + 6; what falls after the
  last week is reported as `beyond`.
- Expected failures are the gross receipts times the historical failure rate
  (failed payment amounts over all attempted payment amounts), per week.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

from ledger.money import Money

RULES = (
    "Each open invoice and each invoice billing runs will issue (with tax) is expected on its"
    " due date plus its customer's average days late (whole days).",
    "A customer with no settled invoice takes the average days late of all settled invoices in"
    " its currency; with none at all, the due date.",
    "What is expected before the first day is expected on it; week n covers first + 7n to"
    " first + 7n + 6; later receipts are 'beyond'.",
    "Expected failures = gross receipts x the historical failure rate (failed over attempted"
    " payment amounts).",
)

OPEN = "open_invoices"
SCHEDULED = "scheduled_billing"


@dataclass(frozen=True, slots=True)
class Receivable:
    source: str  # OPEN or SCHEDULED
    customer: str
    currency: str
    due: date
    amount: Decimal


@dataclass(slots=True)
class Week:
    start: date
    currency: str
    open_invoices: Decimal = Decimal(0)
    scheduled_billing: Decimal = Decimal(0)
    expected_failures: Decimal = Decimal(0)

    @property
    def end(self) -> date:
        return self.start + timedelta(days=6)

    @property
    def gross(self) -> Decimal:
        return self.open_invoices + self.scheduled_billing

    @property
    def net(self) -> Decimal:
        return self.gross - self.expected_failures


@dataclass(slots=True)
class Forecast:
    first: date
    weeks: list[Week]
    beyond: dict[str, Decimal] = field(default_factory=dict)
    failure_rate: dict[str, Decimal] = field(default_factory=dict)


def shift_days(days_late: Decimal) -> int:
    """The whole days a receipt is expected after its due date."""
    return int(days_late.to_integral_value(rounding=ROUND_HALF_EVEN))


class LatenessClasses:
    """The forecast reads a receivable's customer only for its days late, and of those
    only the whole days (shift_days). So receivables of the customers of a currency whose
    lateness rounds to the same days can be summed as one, named by the class (`self(
    customer, currency)`); `days_late()` is the map to forecast them with: the customers'
    own entries plus one per class. The weeks come out the same (exact Decimal sums)."""

    def __init__(
        self, days_late: Mapping[tuple[str, str], Decimal], fallback: Mapping[str, Decimal]
    ):
        self._late = days_late
        self._fallback = fallback
        self._classes: dict[tuple[str, str], int] = {}
        # Names worked out once: per customer with a history, and per currency for the rest.
        self._names = {key: self._name(key[0], days) for key, days in days_late.items()}
        self._new: dict[str, str] = {}

    def _name(self, currency: str, days: Decimal) -> str:
        shift = shift_days(days)
        name = f"~{shift} days late"  # never a customer id (a UUID)
        self._classes[(currency, name)] = shift
        return name

    def __call__(self, customer: str, currency: str) -> str:
        name = self._names.get((currency, customer))
        if name is None:
            name = self._new.get(currency)
            if name is None:
                days = self._fallback.get(currency, Decimal(0))
                name = self._new[currency] = self._name(currency, days)
        return name

    def days_late(self) -> dict[tuple[str, str], Decimal]:
        return {**self._late, **{k: Decimal(v) for k, v in self._classes.items()}}


def expected_on(due: date, days_late: Decimal, first: date) -> date:
    return max(first, due + timedelta(days=shift_days(days_late)))


def forecast(
    receivables: Sequence[Receivable],
    days_late: Mapping[tuple[str, str], Decimal],
    fallback: Mapping[str, Decimal],
    failure_rate: Mapping[str, Decimal],
    first: date,
    weeks: int,
) -> Forecast:
    """Receipts by week and currency from `first`, `weeks` weeks."""
    currencies = sorted({r.currency for r in receivables})
    table: dict[tuple[int, str], Week] = {
        (n, c): Week(first + timedelta(days=7 * n), c) for n in range(weeks) for c in currencies
    }
    beyond: dict[str, Decimal] = defaultdict(Decimal)
    for r in receivables:
        late = days_late.get((r.currency, r.customer), fallback.get(r.currency, Decimal(0)))
        n = (expected_on(r.due, late, first) - first).days // 7
        if n >= weeks:
            beyond[r.currency] += r.amount
            continue
        week = table[(n, r.currency)]
        if r.source == OPEN:
            week.open_invoices += r.amount
        else:
            week.scheduled_billing += r.amount
    for (_, currency), week in table.items():
        rate = failure_rate.get(currency, Decimal(0))
        with localcontext(prec=60):
            week.expected_failures = Money(week.gross * rate, currency).round_to_minor().amount
    ordered = [table[(n, c)] for n in range(weeks) for c in currencies]
    return Forecast(
        first,
        ordered,
        {c: beyond.get(c, Decimal(0)) for c in currencies},
        {c: failure_rate.get(c, Decimal(0)) for c in currencies},
    )


@dataclass(frozen=True, slots=True)
class WeekError:
    start: date
    currency: str
    forecast: Decimal
    actual: Decimal

    @property
    def error(self) -> Decimal:
        return self.forecast - self.actual


def backtest_errors(
    plan: Forecast, actual: Mapping[tuple[date, str], Decimal]
) -> tuple[list[WeekError], dict[str, dict[str, Decimal | None]]]:
    """Per week: forecast net vs what arrived; per currency overall: totals, mean
    absolute error and WAPE (sum of |error| / sum of actual)."""
    rows = [
        WeekError(w.start, w.currency, w.net, actual.get((w.start, w.currency), Decimal(0)))
        for w in plan.weeks
    ]
    overall: dict[str, dict[str, Decimal | None]] = {}
    for currency in sorted({r.currency for r in rows}):
        mine = [r for r in rows if r.currency == currency]
        total_forecast = sum((r.forecast for r in mine), Decimal(0))
        total_actual = sum((r.actual for r in mine), Decimal(0))
        absolute = sum((abs(r.error) for r in mine), Decimal(0))
        with localcontext(prec=60):
            mae = Money(absolute / len(mine), currency).round_to_minor().amount
            wape = (absolute / total_actual).quantize(Decimal("0.0001")) if total_actual else None
        overall[currency] = {
            "forecast": total_forecast,
            "actual": total_actual,
            "error": total_forecast - total_actual,
            "mean_absolute_error": mae,
            "wape": wape,
        }
    return rows, overall
