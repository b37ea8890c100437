"""Collections metrics over plain data: DSO by the countback method, the
collection effectiveness index, days late, share paid on time.

Rules:
- An invoice is settled on the effective date of the posting that brought its
  receivable to zero (payment, credit note or write-off); it is late by the
  days from its due date to then (zero when settled on or before it).
- DSO (countback): the receivable at the end of the period is matched against
  credit sales (receivable debits) walking back from the period's last day,
  month by month; each month fully covered counts its days, the last one its
  share of days in proportion to what is left (at most 24 months back).
- CEI = (opening AR + credit sales − closing AR) / (opening AR + credit sales
  − closing current AR), where current AR is what is not yet due.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, localcontext

RULES = (
    "An invoice is settled on the day its receivable reaches zero (payment, credit note or"
    " write-off); days late = settled on - due date, at least 0.",
    "DSO by countback: closing AR is matched against credit sales walking back month by month"
    " from the last day; full months count their days, the last one its share (24 months"
    " at most).",
    "CEI = (opening AR + credit sales - closing AR) / (opening AR + credit sales - closing"
    " current AR), as a fraction.",
    "Figures are per currency; nothing is converted.",
)

_PRECISION = 60
_PLACES = Decimal("0.01")
_RATE = Decimal("0.0001")
MAX_COUNTBACK = 24


@dataclass(frozen=True, slots=True)
class Settlement:
    invoice: str
    customer: str
    currency: str
    due_date: date
    settled_on: date

    @property
    def days_late(self) -> int:
        return max(0, (self.settled_on - self.due_date).days)


def dso_countback(closing_ar: Decimal, windows: Sequence[tuple[int, Decimal]]) -> Decimal:
    """Days of sales in `closing_ar`; `windows` are (days, credit sales), newest first."""
    remaining, days = closing_ar, Decimal(0)
    with localcontext(prec=_PRECISION):
        for length, sales in windows[:MAX_COUNTBACK]:
            if remaining <= 0:
                break
            if sales <= 0:
                days += length
                continue
            if remaining >= sales:
                days += length
                remaining -= sales
            else:
                days += length * remaining / sales
                remaining = Decimal(0)
        return days.quantize(_PLACES)


def cei(
    opening: Decimal, sales: Decimal, closing: Decimal, closing_current: Decimal
) -> Decimal | None:
    """Collection effectiveness: what was collectible and was collected, as a fraction."""
    collectible = opening + sales - closing_current
    if collectible <= 0:
        return None
    with localcontext(prec=_PRECISION):
        return ((opening + sales - closing) / collectible).quantize(_RATE)


def average_days_late(settlements: Iterable[Settlement]) -> dict[tuple[str, str], Decimal]:
    """Per (currency, customer): the mean days late of their settled invoices."""
    totals: dict[tuple[str, str], list[int]] = defaultdict(list)
    for s in settlements:
        totals[(s.currency, s.customer)].append(s.days_late)
    with localcontext(prec=_PRECISION):
        return {k: (Decimal(sum(v)) / len(v)).quantize(_PLACES) for k, v in totals.items()}


def on_time_share(settlements: Sequence[Settlement]) -> Decimal | None:
    if not settlements:
        return None
    on_time = sum(1 for s in settlements if s.days_late == 0)
    with localcontext(prec=_PRECISION):
        return (Decimal(on_time) / len(settlements)).quantize(_RATE)
