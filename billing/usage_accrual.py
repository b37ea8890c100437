"""Usage accrued before it is invoiced, and relieved by the invoice (ACCOUNTING.md:
"usage rated (in arrears) before it is invoiced: Unbilled / Income:Usage";
"invoice for usage already accrued as unbilled: AR / Unbilled"), as pure rules.

- **Accrual.** At a month end, each (subscription, usage price, billing period)
  not yet invoiced is rated on its usage so far; the difference from what is
  already accrued for it is posted Unbilled / Income:Usage (negative: the
  reverse, e.g. a volume tier that lowered the price). A minimum commitment's
  shortfall is not accrued: it is only owed at the period's end. Re-running
  the same date finds no difference and posts nothing. Telecom CDRs of
  postpaid subscribers are accrued when they are rated (the rating run posts
  Unbilled / Income:Usage), so they need no second accrual.
- **Relief.** The invoice that bills a usage line credits Unbilled with what is
  still accrued for its (price, period) — allocated to that key's lines in
  order, each up to its amount, the last taking any excess — and Income:Usage
  with the rest of the line (a debit when less was billed than was accrued).
  A rated-CDR line was wholly accrued by rating: all of it relieves Unbilled.

Every posting to Unbilled made here carries the dimension `usage`
(`accrual` or `relief`), so `verify` can re-derive the usage part of Unbilled.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from ledger.entries import JournalEntry, Posting, build_entry
from ledger.money import Money

__all__ = [
    "UNBILLED",
    "USAGE",
    "ReliefLine",
    "accrual_entry",
    "relief_by_line",
    "relieve_unbilled",
]

UNBILLED = "Assets:Receivable:Unbilled"
USAGE = "Income:Usage"


@dataclass(frozen=True, slots=True)
class ReliefLine:
    line_no: int
    key: Hashable  # what was accrued for: (price, period start), or a CDR line's own key
    amount: Decimal  # the line's amount before discounts, as accrued


def relief_by_line(
    lines: Sequence[ReliefLine], accrued: Mapping[Hashable, Decimal]
) -> dict[int, Decimal]:
    """How much of each line comes out of Unbilled: per key, lines in order take up to
    their amount of what is accrued; the key's last line takes what is left over."""
    by_key: dict[Hashable, list[ReliefLine]] = {}
    for line in lines:
        by_key.setdefault(line.key, []).append(line)
    out: dict[int, Decimal] = {}
    for key, group in by_key.items():
        left = accrued.get(key, Decimal(0))
        if left == 0:
            continue
        for n, line in enumerate(group):
            take = left if n == len(group) - 1 else min(max(line.amount, Decimal(0)), left)
            if take != 0:
                out[line.line_no] = take
            left -= take
    return out


def relieve_unbilled(
    entry: JournalEntry, relief: Mapping[int, Decimal], *, usage_account: str = USAGE
) -> JournalEntry:
    """The finalization entry with `relief[line]` of each line's revenue credit moved to
    Unbilled (a line with a zero net, which has no revenue posting, gets one)."""
    if not relief:
        return entry
    seen: set[int] = set()
    postings: list[Posting] = []
    receivable = entry.postings[0]
    currency = receivable.currency
    for p in entry.postings:
        line = p.dimensions.get("line")
        if line is None or int(line) not in relief or p.account == UNBILLED:
            postings.append(p)
            continue
        n = int(line)
        seen.add(n)
        take = Money(relief[n], currency)
        dims = {**p.dimensions, "usage": "relief"}
        postings.append(Posting(UNBILLED, -take, p.customer, p.document, dims))
        rest = p.money + take
        if not rest.is_zero():
            postings.append(Posting(p.account, rest, p.customer, p.document, p.dimensions))
    for n, amount in sorted(relief.items()):
        if n in seen or amount == 0:
            continue
        take = Money(amount, currency)
        dims = {"line": str(n), "via": "finalization"}
        postings.append(
            Posting(
                UNBILLED,
                -take,
                receivable.customer,
                receivable.document,
                {**dims, "usage": "relief"},
            )
        )
        postings.append(
            Posting(usage_account, take, receivable.customer, receivable.document, dims)
        )
    return build_entry(
        entry.effective_date,
        entry.memo,
        postings,
        metadata=entry.metadata,
        idempotency_key=entry.idempotency_key,
        reverses=entry.reverses,
    )


def accrual_entry(
    as_of: date,
    customer: str,
    subscription: str,
    price: str,
    period_start: date,
    amount: Money,
    sequence: int,
) -> JournalEntry:
    """Unbilled / Income:Usage for `amount` (negative: the reverse), dated `as_of`."""
    dims = {
        "via": f"usage_accrual:{as_of.isoformat()}",
        "usage": "accrual",
        "subscription": subscription,
        "price": price,
        "period_start": period_start.isoformat(),
    }
    return build_entry(
        as_of,
        f"Usage accrued as of {as_of.isoformat()} (period from {period_start.isoformat()})",
        [
            Posting(UNBILLED, amount, customer, None, dims),
            Posting(USAGE, -amount, customer, None, dims),
        ],
        metadata={"kind": "usage_accrual", "subscription": subscription},
        idempotency_key=(
            f"usage_accrual:{subscription}:{price}:{period_start.isoformat()}:{sequence}"
        ),
    )
