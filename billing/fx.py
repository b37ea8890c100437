"""Foreign exchange as pure rules: which rate is in force, conversion, and the
realized and unrealized gain or loss on foreign-currency receivables
(ACCOUNTING.md, "Foreign exchange").

A rate is units of `quote` per one `base` (EUR→USD 1.10: one euro is 1.10
dollars). The rate in force on a date is the latest rate on or before it.

Rule for a pair the table does not hold directly (tried in this order):

1. same currency: 1;
2. the pair as stored (latest on or before the date);
3. its inverse: 1 / (quote→base);
4. a cross through a pivot, EUR first (the ECB publishes EUR-based rates),
   then the book's functional currency: base→pivot × pivot→quote, each leg
   direct or inverse, each the latest on or before the date.

Derived rates (inverse, cross) are rounded half-up to 12 decimal places; a
pair with no rate by any of these ways is `MissingRate` (422).

Conversion rounds half-up to the target currency's minor unit, once, at the
end. Gain or loss on a receivable part of `amount` (foreign) carried at rate
`carried` and settled or revalued at rate `now` is
round(amount × now) − round(amount × carried), in the functional currency:
positive is a gain (credit Income:FX:…), negative a loss (debit).

How carrying amounts live in the ledger (each posting has one currency):
the receivable stays in its own currency in Assets:Receivable:Trade; the
functional-currency adjustments of foreign receivables go to
Assets:Receivable:FX-Translation (functional currency only). Translating
each foreign receivable posting at the rate of its own date, plus that
account, gives the receivables' functional carrying amount. A payment at
another rate than the invoice's posts Income:FX:Realized | FX-Translation
(loss) or the reverse (gain); a month-end revaluation posts FX-Translation |
Income:FX:Unrealized (gain) or the reverse, and its reversal on the first day
of the next month, so the carrying amount is back at the invoice date's rate
when the payment comes.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from billing.errors import InvalidBillingRequest
from billing.postings import invoice_doc
from ledger.entries import JournalEntry, Posting, build_entry, reversal_postings
from ledger.errors import LedgerError
from ledger.money import Money, check_currency

FX_TRANSLATION = "Assets:Receivable:FX-Translation"
FX_REALIZED = "Income:FX:Realized"
FX_UNREALIZED = "Income:FX:Unrealized"

PIVOT = "EUR"
DERIVED_PLACES = Decimal("1e-12")
MAX_RATE_PLACES = 12


class MissingRate(LedgerError):
    code = "missing_rate"
    status = 422


@dataclass(frozen=True, slots=True)
class FxRate:
    on: date
    base: str
    quote: str
    rate: Decimal


@dataclass(frozen=True, slots=True)
class ResolvedRate:
    base: str
    quote: str
    rate: Decimal
    on: date  # the date asked for
    how: str  # "identity", "direct", "inverse", "cross:EUR", …
    sources: tuple[FxRate, ...]


def parse_rate(value: object) -> Decimal:
    """A rate as a decimal string: finite, greater than zero, at most 12 places."""
    if not isinstance(value, str):
        raise InvalidBillingRequest('a rate is a decimal string such as "1.10"', rate=value)
    try:
        rate = Decimal(value.strip())
    except InvalidOperation:
        raise InvalidBillingRequest(f"{value!r} is not a decimal rate", rate=value) from None
    if not rate.is_finite() or rate <= 0:
        raise InvalidBillingRequest(f"a rate must be greater than zero, not {value!r}", rate=value)
    exponent = rate.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > MAX_RATE_PLACES:
        raise InvalidBillingRequest(
            f"a rate has at most {MAX_RATE_PLACES} decimal places: {value!r}", rate=value
        )
    return rate


def make_rate(on: date, base: str, quote: str, rate: Decimal) -> FxRate:
    base, quote = check_currency(base), check_currency(quote)
    if base == quote:
        raise InvalidBillingRequest(f"a rate needs two currencies, not {base} twice", base=base)
    return FxRate(on, base, quote, rate)


def latest_by_pair(rates: Iterable[FxRate], on: date) -> dict[tuple[str, str], FxRate]:
    """The rate in force on `on` for each stored pair (latest on or before it)."""
    out: dict[tuple[str, str], FxRate] = {}
    for r in rates:
        if r.on > on:
            continue
        known = out.get((r.base, r.quote))
        if known is None or r.on > known.on:
            out[(r.base, r.quote)] = r
    return out


def _derived(value: Decimal) -> Decimal:
    return value.quantize(DERIVED_PLACES, rounding=ROUND_HALF_UP)


def _leg(
    table: Mapping[tuple[str, str], FxRate], base: str, quote: str
) -> tuple[Decimal, str, tuple[FxRate, ...]] | None:
    direct = table.get((base, quote))
    if direct is not None:
        return direct.rate, "direct", (direct,)
    inverse = table.get((quote, base))
    if inverse is not None:
        return Decimal(1) / inverse.rate, "inverse", (inverse,)
    return None


def resolve_rate(
    rates: Iterable[FxRate], base: str, quote: str, on: date, functional: str | None = None
) -> ResolvedRate:
    """The rate in force for base→quote on `on` (rule in the module docstring)."""
    if base == quote:
        return ResolvedRate(base, quote, Decimal(1), on, "identity", ())
    table = latest_by_pair(rates, on)
    leg = _leg(table, base, quote)
    if leg is not None:
        value, how, sources = leg
        rate = value if how == "direct" else _derived(value)
        return ResolvedRate(base, quote, rate, on, how, sources)
    for pivot in dict.fromkeys(p for p in (PIVOT, functional) if p):
        if pivot in (base, quote):
            continue
        first, second = _leg(table, base, pivot), _leg(table, pivot, quote)
        if first is not None and second is not None:
            return ResolvedRate(
                base,
                quote,
                _derived(first[0] * second[0]),
                on,
                f"cross:{pivot}",
                first[2] + second[2],
            )
    raise MissingRate(
        f"no {base}/{quote} rate on or before {on.isoformat()}"
        " (neither direct, inverse nor across EUR or the functional currency)",
        base=base,
        quote=quote,
        date=on.isoformat(),
    )


def convert(amount: Money, rate: Decimal, to: str) -> Money:
    """`amount` at `rate` (units of `to` per one unit of amount's currency), rounded half-up."""
    if amount.currency == to:
        return amount
    return Money(amount.amount * rate, to).round_to_minor()


def gain(amount: Money, carried: Decimal, now: Decimal, functional: str) -> Money:
    """Gain (+) or loss (−) in the functional currency on `amount` carried at `carried`
    and settled or revalued at `now`: round(amount × now) − round(amount × carried)."""
    return convert(amount, now, functional) - convert(amount, carried, functional)


def month_end(on: date) -> date:
    return on.replace(day=calendar.monthrange(on.year, on.month)[1])


def reversal_date(as_of: date) -> date:
    """A revaluation is reversed on the first day of the month after `as_of`."""
    return month_end(as_of) + timedelta(days=1)


@dataclass(frozen=True, slots=True)
class OpenForeignReceivable:
    """An open invoice in a foreign currency, as a revaluation sees it."""

    invoice_id: str
    customer_id: str
    open_amount: Money  # in the invoice's currency
    carried_rate: Decimal  # invoice date's rate, invoice currency → functional
    rate_now: Decimal  # rate on the revaluation date


def revaluation_amounts(
    receivables: Sequence[OpenForeignReceivable], functional: str
) -> list[tuple[OpenForeignReceivable, Money]]:
    """Unrealized gain (+) or loss (−) per open foreign receivable; zeros left out."""
    out = []
    for r in receivables:
        amount = gain(r.open_amount, r.carried_rate, r.rate_now, functional)
        if not amount.is_zero():
            out.append((r, amount))
    return out


def _pair(account: str, amount: Money, customer: str, document: str, via: str) -> list[Posting]:
    """Gain (+): FX-Translation | account; loss (−): account | FX-Translation."""
    dims = {"via": via}
    return [
        Posting(FX_TRANSLATION, amount, customer, document, dims),
        Posting(account, -amount, customer, document, dims),
    ]


def realized_entry(
    payment_id: object,
    on: date,
    parts: Sequence[tuple[str, str, Money]],
) -> JournalEntry | None:
    """Realized gain or loss of a payment: parts are (invoice id, customer id, gain)."""
    via = f"fx-realized:{payment_id}"
    postings: list[Posting] = []
    for invoice_id, customer, amount in parts:
        if not amount.is_zero():
            postings.extend(_pair(FX_REALIZED, amount, customer, invoice_doc(invoice_id), via))
    if not postings:
        return None
    return build_entry(
        on,
        f"Realized exchange difference of payment {payment_id}",
        postings,
        metadata={"kind": "fx_realized", "payment": str(payment_id)},
        idempotency_key=f"payment:{payment_id}:fx",
    )


def revaluation_entries(
    run_id: object,
    as_of: date,
    amounts: Sequence[tuple[OpenForeignReceivable, Money]],
    rates: Mapping[str, Decimal],
) -> tuple[JournalEntry, JournalEntry] | None:
    """The revaluation on `as_of` and its reversal on the first of the next month."""
    via = f"fx-revaluation:{run_id}"
    postings: list[Posting] = []
    for r, amount in amounts:
        postings.extend(_pair(FX_UNREALIZED, amount, r.customer_id, invoice_doc(r.invoice_id), via))
    if not postings:
        return None
    metadata = {
        "kind": "fx_revaluation",
        "revaluation": str(run_id),
        "rates": {k: str(v) for k, v in sorted(rates.items())},
    }
    entry = build_entry(
        as_of,
        f"Revaluation of foreign-currency receivables as of {as_of.isoformat()}",
        postings,
        metadata=metadata,
        idempotency_key=f"fx-revaluation:{run_id}",
    )
    back = reversal_date(as_of)
    reversal = build_entry(
        back,
        f"Reversal of the revaluation as of {as_of.isoformat()}",
        reversal_postings(postings),
        metadata={**metadata, "kind": "fx_revaluation_reversal"},
        idempotency_key=f"fx-revaluation:{run_id}:reversal",
    )
    return entry, reversal
