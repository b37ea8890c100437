"""The default chart of accounts a new book starts with (ACCOUNTING.md)."""

from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple


class DefaultAccount(NamedTuple):
    code: str
    name: str
    min_balance: Decimal | None = None


DEFAULT_CHART: tuple[DefaultAccount, ...] = (
    DefaultAccount("1000", "Assets:Bank:Operating"),
    DefaultAccount("1010", "Assets:Clearing:Manual"),
    DefaultAccount("1020", "Assets:Disputed-Funds"),
    DefaultAccount("1100", "Assets:Receivable:Trade"),
    DefaultAccount("1105", "Assets:Receivable:Payer"),
    DefaultAccount("1106", "Assets:Receivable:Patient"),
    DefaultAccount("1110", "Assets:Receivable:Allowance"),
    DefaultAccount("1115", "Assets:Receivable:FX-Translation"),
    DefaultAccount("1120", "Assets:Receivable:Unbilled"),
    DefaultAccount("2000", "Liabilities:Deferred-Revenue"),
    DefaultAccount("2010", "Liabilities:Customer-Credit"),
    DefaultAccount("2020", "Liabilities:Prepaid-Wallet", Decimal(0)),
    DefaultAccount("2030", "Liabilities:Prepaid-Hours"),
    DefaultAccount("2100", "Liabilities:Tax-Payable"),
    DefaultAccount("2110", "Liabilities:Refunds-Payable"),
    DefaultAccount("3000", "Equity:Opening-Balances"),
    DefaultAccount("4000", "Income:Subscriptions"),
    DefaultAccount("4010", "Income:Usage"),
    DefaultAccount("4020", "Income:Services"),
    DefaultAccount("4030", "Income:Breakage"),
    DefaultAccount("4100", "Income:Patient-Services"),
    DefaultAccount("4900", "Income:Contra:Refunds"),
    DefaultAccount("4910", "Income:Contra:Disputes"),
    DefaultAccount("4920", "Income:Contra:Credit-Notes"),
    DefaultAccount("4930", "Income:Contra:Contractual-Adjustments"),
    DefaultAccount("4940", "Income:Contra:Denials"),
    DefaultAccount("6000", "Expenses:Payment-Fees"),
    DefaultAccount("6010", "Expenses:Dispute-Fees"),
    DefaultAccount("6100", "Expenses:Credit-Losses"),
    DefaultAccount("7000", "Income:FX:Realized"),
    DefaultAccount("7010", "Income:FX:Unrealized"),
    DefaultAccount("7900", "Expenses:Rounding"),
)
