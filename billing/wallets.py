"""Prepaid wallets (ACCOUNTING.md, telecom): the rules, as pure functions.

Each wallet is its own sub-account of `Liabilities:Prepaid-Wallet`, created
with a minimum balance of 0: the ledger keeps a running balance per guarded
account under its row lock, so PostgreSQL itself refuses a posting that would
take *that wallet* below zero. A dimension on the shared account could not do
that (the guard is per account, and one shared balance would let one wallet
spend another's money).

Reservations hold value for sessions in progress; `available` is the balance
less the holds still open. Entries (debit positive):

- top-up:      Bank / Clearing        | Prepaid-Wallet:W<id>, Tax-Payable (the customer's rate)
- consumption: Prepaid-Wallet:W<id>   | Income:Usage      (a capture, or rated CDRs)
- expiry:      Prepaid-Wallet:W<id>   | Income:Breakage

Validity, as a telecom recharge has it: a top-up may say its value is good for
`valid_days`; the wallet's `valid_until` becomes the later of what it was and
the top-up's own last day, so a recharge extends the whole balance (a wallet
whose validity already lapsed loses that value first). After `valid_until` the
available value lapses to Breakage, dated the day after; value held for a
session in progress lapses when the session lets it go.
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from decimal import Decimal

from billing.errors import InsufficientFunds, InvalidBillingRequest
from billing.postings import TAX
from billing.tax import TaxRate, exclusive_tax
from ledger.entries import JournalEntry, Posting, build_entry
from ledger.money import Money

WALLET = "Liabilities:Prepaid-Wallet"
USAGE = "Income:Usage"
BREAKAGE = "Income:Breakage"

MAX_TTL_SECONDS = 7 * 24 * 3600
MAX_VALID_DAYS = 3660  # ten years: beyond that a validity is a typo


def wallet_account(wallet_id: uuid.UUID) -> str:
    """The wallet's own ledger account (account components start upper-case)."""
    return f"{WALLET}:W{wallet_id.hex.upper()}"


def wallet_doc(wallet_id: uuid.UUID) -> str:
    return f"wallet:{wallet_id}"


def grant(requested: Money, available: Decimal, partial: bool) -> Money:
    """What a hold of `requested` gets: all of it, or (when `partial`) what is
    available; a shortfall otherwise is refused. Never more than available."""
    if requested.amount <= 0:
        raise InvalidBillingRequest("a reservation amount must be greater than zero")
    if requested.amount <= available:
        return requested
    if partial and available > 0:
        return Money(available, requested.currency)
    raise InsufficientFunds(
        f"the wallet has {available} {requested.currency} available,"
        f" less than the {requested.amount} asked for",
        available=str(available),
        requested=str(requested.amount),
    )


def check_ttl(ttl_seconds: int) -> int:
    if not 1 <= ttl_seconds <= MAX_TTL_SECONDS:
        raise InvalidBillingRequest(
            f"ttl_seconds must be between 1 and {MAX_TTL_SECONDS}, not {ttl_seconds}"
        )
    return ttl_seconds


def check_capture(amount: Money, held: Decimal) -> Money:
    if amount.amount < 0:
        raise InvalidBillingRequest("a capture amount cannot be negative")
    if amount.amount > held:
        raise InvalidBillingRequest(
            f"cannot capture {amount.amount}: the reservation holds {held}",
        )
    return amount


def extended_validity(current: date | None, on: date, valid_days: int | None) -> date | None:
    """The wallet's `valid_until` after a top-up on `on` good for `valid_days` (that
    day counts as the first): the later of the two. No `valid_days` leaves it as is."""
    if valid_days is None:
        return current
    if not 1 <= valid_days <= MAX_VALID_DAYS:
        raise InvalidBillingRequest(
            f"valid_days must be between 1 and {MAX_VALID_DAYS}, not {valid_days}"
        )
    last_day = on + timedelta(days=valid_days - 1)
    return last_day if current is None or current < last_day else current


def lapses_on(valid_until: date | None, today: date) -> date | None:
    """The day the wallet's value lapsed (the day after `valid_until`), when that
    is today or earlier; None while it is still valid or has no validity."""
    if valid_until is None or valid_until >= today:
        return None
    return valid_until + timedelta(days=1)


def falls_low(available: Decimal, threshold: Decimal | None, already_low: bool) -> bool:
    """True when this change takes the wallet below its threshold (one event per crossing)."""
    return threshold is not None and available < threshold and not already_low


def _postings(
    wallet_id: uuid.UUID, customer: str, money: Money, other: str, via: str
) -> list[Posting]:
    doc = wallet_doc(wallet_id)
    dims = {"via": via}
    return [
        Posting(wallet_account(wallet_id), money, customer, doc, dims),
        Posting(other, -money, customer, doc, dims),
    ]


def top_up_tax(money: Money, rate: TaxRate | None) -> Money:
    """Tax on a top-up of `money` of wallet value, charged on top of it at the
    customer's rate (prepaid value is taxed when it is sold, not when it is used:
    consumption and breakage then post net). Exempt, reverse-charge and 0 %: none."""
    if rate is None or not rate.charges_tax:
        return Money(Decimal(0), money.currency).quantized()
    return exclusive_tax(money, rate.percent)


def top_up_entry(
    on: date,
    wallet_id: uuid.UUID,
    customer: str,
    money: Money,
    cash_account: str,
    rate: TaxRate | None = None,
) -> JournalEntry:
    """Cash (value + tax) / Prepaid-Wallet:W (value) and Tax-Payable (tax)."""
    if money.amount <= 0:
        raise InvalidBillingRequest("a top-up amount must be greater than zero")
    tax = top_up_tax(money, rate)
    postings = _postings(wallet_id, customer, -money, cash_account, "top_up")
    if tax.amount:
        assert rate is not None
        doc = wallet_doc(wallet_id)
        postings[1] = Posting(cash_account, money + tax, customer, doc, {"via": "top_up"})
        postings.append(Posting(TAX, -tax, customer, doc, {"tax": rate.code, "via": "top_up"}))
    return build_entry(on, f"Wallet top-up {wallet_id}", postings)


def consumption_entry(
    on: date, wallet_id: uuid.UUID, customer: str, money: Money, via: str
) -> JournalEntry:
    return build_entry(
        on, f"Wallet usage {wallet_id}", _postings(wallet_id, customer, money, USAGE, via)
    )


def breakage_entry(on: date, wallet_id: uuid.UUID, customer: str, money: Money) -> JournalEntry:
    if money.amount <= 0:
        raise InvalidBillingRequest("nothing to expire: the amount must be greater than zero")
    return build_entry(
        on,
        f"Wallet value expired {wallet_id}",
        _postings(wallet_id, customer, money, BREAKAGE, "breakage"),
    )
