"""Payment methods and gateway charges, as pure rules.

- **No card numbers.** The service holds a card only as a gateway token plus
  brand, last four digits and expiry. A request carrying anything that looks
  like a full card number — 13 to 19 digits (spaces or dashes between them
  allowed) passing the Luhn check, in any field at any depth — is refused
  whole, so a PAN is never stored, not even in metadata.
- **US bank accounts**: the routing number is 9 digits with the ABA checksum
  (3·(d1+d4+d7) + 7·(d2+d5+d8) + (d3+d6+d9) ≡ 0 mod 10). The account number
  is shown as its last four digits and a SHA-256 of the full number: enough
  to show it and to recognise the same account again. The full number, which a
  NACHA file must carry, is kept apart (table ach_account_numbers) and never
  returned by the API.
- **SEPA mandates**: sequence FRST for the first debit of a mandate, RCUR
  after; a mandate is `active` until revoked or returned.
- **Gateway fee** (ACCOUNTING.md): percent of the charge plus a fixed part,
  rounded half-up to the currency's minor unit once: 108.00 at 2.9 % + 0.30
  is 3.132 + 0.30 = 3.432 → 3.43.
- **Business days**: a payout arrives N business days (Monday–Friday) after
  the capture day.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from billing.errors import InvalidBillingRequest
from ledger.money import Money

__all__ = [
    "ACCOUNT_TYPES",
    "HOLDER_TYPES",
    "SEQUENCES",
    "TYPES",
    "GatewayFee",
    "aba_valid",
    "account_fingerprint",
    "add_business_days",
    "contains_card_number",
    "gateway_fee",
    "luhn_valid",
    "refuse_card_numbers",
]

TYPES = ("card", "sepa_debit", "us_bank_account")
SEQUENCES = ("FRST", "RCUR")
MANDATE_STATUSES = ("active", "revoked", "returned")
ACCOUNT_TYPES = ("checking", "savings")
HOLDER_TYPES = ("individual", "company")

# Digit runs of 13-19 digits, allowing single spaces or dashes between digits.
_DIGIT_RUN = re.compile(r"\d(?:[ -]?\d){12,}")


def luhn_valid(digits: str) -> bool:
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


# Bank account identifiers have long digit runs of their own, each checked by
# its own rule (IBAN mod 97, the account itself is not a card): about one in
# ten 13-17 digit account numbers passes Luhn by chance.
BANK_FIELDS = frozenset({"iban", "account_number"})


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, int) and not isinstance(value, bool):
        yield str(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            if key not in BANK_FIELDS:
                yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def contains_card_number(value: object) -> bool:
    """Whether any string or number in `value` is or holds a Luhn-valid run of
    13-19 digits (the `iban` and `account_number` fields excepted, see BANK_FIELDS)."""
    for text in _strings(value):
        for match in _DIGIT_RUN.finditer(text):
            digits = re.sub(r"[ -]", "", match.group())
            if len(digits) <= 19 and luhn_valid(digits):
                return True
    return False


def refuse_card_numbers(body: object) -> None:
    if contains_card_number(body):
        raise InvalidBillingRequest(
            "this request carries what looks like a full card number; the service never"
            " takes card numbers: tokenize the card with the gateway and send its token",
            field="card_number",
        )


def card_expired(exp_month: int | None, exp_year: int | None, on: date) -> bool:
    """A card is good through the last day of its expiry month; unknown expiry: good."""
    if exp_month is None or exp_year is None:
        return False
    return (on.year, on.month) > (exp_year, exp_month)


def aba_valid(routing_number: str) -> bool:
    if len(routing_number) != 9 or not routing_number.isdigit():
        return False
    d = [int(c) for c in routing_number]
    total = 3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + (d[2] + d[5] + d[8])
    return total % 10 == 0


def account_fingerprint(routing_number: str, account_number: str) -> str:
    """SHA-256 of routing and account number: the same account is recognised again."""
    return hashlib.sha256(f"{routing_number}:{account_number}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class GatewayFee:
    percent: Decimal
    fixed: Decimal


DEFAULT_FAKE_FEE = GatewayFee(Decimal("2.9"), Decimal("0.30"))


def gateway_fee(amount: Money, fee: GatewayFee) -> Money:
    """percent % of the amount plus the fixed part, rounded half-up once (3.43 on 108.00)."""
    raw = amount.amount * fee.percent / 100 + fee.fixed
    return Money(raw, amount.currency).round_to_minor()


def add_business_days(day: date, count: int) -> date:
    """`count` Monday-Friday days after `day` (a Friday capture + 2 arrives Tuesday)."""
    while count > 0:
        day += timedelta(days=1)
        if day.weekday() < 5:
            count -= 1
    return day
