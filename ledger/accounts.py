"""Account types and Beancount-compatible account names."""

from __future__ import annotations

import re
from decimal import Decimal
from enum import StrEnum

from ledger.errors import InvalidAccountName


class AccountType(StrEnum):
    ASSET = "asset"
    LIABILITY = "liability"
    EQUITY = "equity"
    INCOME = "income"
    EXPENSE = "expense"

    @property
    def normal_sign(self) -> int:
        """+1 where a debit increases the account (assets, expenses), else -1."""
        return 1 if self in (AccountType.ASSET, AccountType.EXPENSE) else -1


ROOTS: dict[str, AccountType] = {
    "Assets": AccountType.ASSET,
    "Liabilities": AccountType.LIABILITY,
    "Equity": AccountType.EQUITY,
    "Income": AccountType.INCOME,
    "Expenses": AccountType.EXPENSE,
}

# Beancount: components start with an uppercase letter or a digit, then
# letters, digits and hyphens. (Beancount also admits non-ASCII capitals; we
# keep to ASCII so ERP exports can carry the names unchanged.)
_COMPONENT = re.compile(r"[A-Z0-9][A-Za-z0-9-]*")
NAME_PATTERN = r"^(Assets|Liabilities|Equity|Income|Expenses)(:[A-Z0-9][A-Za-z0-9-]*)+$"


# Names already validated (a posting names the same few accounts again and again),
# up to a bound so that hostile input cannot grow it without end.
_VALID: dict[str, AccountType] = {}
_MAX_VALID = 4096


def account_type_of(name: str) -> AccountType:
    """Validate a Beancount-style name and return the type its root implies."""
    known = _VALID.get(name) if type(name) is str else None
    if known is not None:
        return known
    found = _account_type_of(name)
    if len(_VALID) < _MAX_VALID and type(name) is str:
        _VALID[name] = found
    return found


def _account_type_of(name: str) -> AccountType:
    parts = name.split(":")
    if len(parts) < 2 or parts[0] not in ROOTS:
        raise InvalidAccountName(
            f"{name!r} is not an account name: it must start with one of "
            f"{', '.join(ROOTS)} followed by ':' and at least one component, "
            "e.g. 'Assets:Bank:Operating'",
            name=name,
        )
    for part in parts[1:]:
        if not _COMPONENT.fullmatch(part):
            raise InvalidAccountName(
                f"{name!r}: component {part!r} must start with a capital letter or a digit "
                "and contain only letters, digits and hyphens",
                name=name,
            )
    return ROOTS[parts[0]]


def check_type(name: str, declared: AccountType | None) -> AccountType:
    implied = account_type_of(name)
    if declared is not None and declared != implied:
        raise InvalidAccountName(
            f"{name!r} is under {name.split(':')[0]}, so its type is {implied}, not {declared}",
            name=name,
        )
    return implied


def below_minimum(balance: Decimal, account_type: AccountType, minimum: Decimal) -> bool:
    """True when the balance, read in the account's normal direction, is under `minimum`.

    A prepaid wallet (a liability) holds credits; its Beancount balance is
    negative, and "must not go below zero" means -balance >= 0.
    """
    return balance * account_type.normal_sign < minimum
