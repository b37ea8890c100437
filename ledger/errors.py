"""The ledger's errors: one tree, each class with a stable machine code.

LedgerError                 base; never raised itself
├── InvalidMoney            an amount or currency that is not exact money
│   ├── UnknownCurrency     a code that is not an ISO 4217 currency we bill in
│   └── TooPrecise          more decimals than the currency's minor unit
├── CurrencyMismatch        arithmetic between two currencies
├── InvalidAccountName      not a Beancount-style account path
├── UnbalancedEntry         postings of an entry do not sum to zero per currency
├── InvalidEntry            an entry that is malformed in another way
├── NotFound                an account, entry or book that does not exist
├── AccountClosed           posting to a closed account
├── CurrencyNotAllowed      posting in a currency the account does not take
├── PeriodClosed            an effective date inside a closed period
├── DateNotAccepted         a date outside the book's accepted window (ledger.dates)
├── BalanceLimitExceeded    a posting that would take a guarded account below its minimum
├── IdempotencyConflict     an idempotency key reused with a different request
├── AlreadyReversed         reversing an entry twice
└── Conflict                any other state conflict (e.g. moving a clock backwards)

The HTTP adapter maps each `code` to an RFC 9457 problem type in one place.
"""

from __future__ import annotations

from typing import Any


class LedgerError(Exception):
    code = "ledger_error"
    status = 400

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields


class InvalidMoney(LedgerError):
    code = "invalid_amount"
    status = 422


class UnknownCurrency(InvalidMoney):
    code = "unknown_currency"


class TooPrecise(InvalidMoney):
    code = "amount_too_precise"


class CurrencyMismatch(LedgerError):
    code = "currency_mismatch"
    status = 422


class InvalidAccountName(LedgerError):
    code = "invalid_account_name"
    status = 422


class UnbalancedEntry(LedgerError):
    code = "unbalanced_entry"
    status = 422


class InvalidEntry(LedgerError):
    code = "invalid_entry"
    status = 422


class NotFound(LedgerError):
    code = "not_found"
    status = 404


class AccountClosed(LedgerError):
    code = "account_closed"
    status = 422


class CurrencyNotAllowed(LedgerError):
    code = "currency_not_allowed"
    status = 422


class PeriodClosed(LedgerError):
    code = "period_closed"
    status = 422


class DateNotAccepted(LedgerError):
    code = "date_not_accepted"
    status = 422


class BalanceLimitExceeded(LedgerError):
    code = "balance_limit_exceeded"
    status = 422


class IdempotencyConflict(LedgerError):
    code = "idempotency_conflict"
    status = 409


class AlreadyReversed(LedgerError):
    code = "already_reversed"
    status = 409


class Conflict(LedgerError):
    code = "conflict"
    status = 409
