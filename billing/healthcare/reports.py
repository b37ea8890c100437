"""Revenue-cycle ratios as pure functions (the figures come from postings).

- denial rate: claims denied ÷ claims adjudicated (distinct claims with an 835 in
  the window); per CARC, claims with a denial posting of that (group, CARC) ÷ the
  same denominator.
- days in AR: open payer and patient AR ÷ average daily gross charges over the
  window (charges ÷ days), to one decimal.
- net collection rate: payments ÷ (gross charges − contractual adjustments), where
  payments are what payers paid on claims plus patient payments less patient refunds.
- expected vs actual: a claim's expected allowed amount is Σ contracted amount ×
  units over its lines (only when every line has one for the claim's payer); the
  payer's expected payment is that less the patient responsibility it stated.
All ratios rounded half-up: rates to 4 places (0.8333), days to 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal

RATE = Decimal("0.0001")
DAYS = Decimal("0.1")


def ratio(numerator: Decimal, denominator: Decimal, quantum: Decimal = RATE) -> Decimal | None:
    """numerator ÷ denominator rounded half-up; None when the denominator is zero."""
    if denominator == 0:
        return None
    return (numerator / denominator).quantize(quantum, rounding=ROUND_HALF_UP)


def days_in_ar(ar: Decimal, charges: Decimal, days: int) -> Decimal | None:
    """AR ÷ (charges ÷ days) = AR × days ÷ charges (one division: no early rounding)."""
    return ratio(ar * days, charges, DAYS)


def expected_allowed(
    lines: Sequence[tuple[str, str, Decimal]], contracted: Mapping[tuple[str, str], Decimal]
) -> Decimal | None:
    """Σ contracted × units over (code, modifiers, units) lines; None if a line has no
    contracted amount (modifiers first as billed, then the code alone)."""
    total = Decimal(0)
    for code, modifiers, units in lines:
        price = contracted.get((code, modifiers))
        if price is None:
            price = contracted.get((code, ""))
        if price is None:
            return None
        total += price * units
    return total
