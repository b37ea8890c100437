"""Folding postings into balances, and the trial balance built from them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class TrialBalanceLine:
    account: str
    currency: str
    balance: Decimal  # signed, debit positive

    @property
    def debit(self) -> Decimal:
        return self.balance if self.balance > 0 else _zero_like(self.balance)

    @property
    def credit(self) -> Decimal:
        return -self.balance if self.balance < 0 else _zero_like(self.balance)


def _zero_like(amount: Decimal) -> Decimal:
    """Zero written with the amount's decimal places ("0.00" beside "60.00", not "0")."""
    return Decimal(0).quantize(amount)


def fold(amounts: Iterable[tuple[str, str, Decimal]]) -> dict[tuple[str, str], Decimal]:
    """Sum (account, currency, amount) triples per account and currency."""
    totals: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for account, currency, amount in amounts:
        totals[(account, currency)] += amount
    return dict(totals)


def trial_balance(totals: dict[tuple[str, str], Decimal]) -> list[TrialBalanceLine]:
    """Lines sorted by account then currency; accounts at zero are kept out."""
    return [
        TrialBalanceLine(account, currency, balance)
        for (account, currency), balance in sorted(totals.items())
        if balance != 0
    ]


def totals_by_currency(lines: Iterable[TrialBalanceLine]) -> dict[str, tuple[Decimal, Decimal]]:
    """Debit and credit totals per currency; equal in a balanced ledger."""
    out: dict[str, tuple[Decimal, Decimal]] = {}
    for line in lines:
        debit, credit = out.get(line.currency, (Decimal(0), Decimal(0)))
        out[line.currency] = (debit + line.debit, credit + line.credit)
    return out
