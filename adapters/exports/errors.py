"""Errors of the exports, in the ledger's error tree (so HTTP and CLI map them)."""

from __future__ import annotations

from ledger.errors import LedgerError


class UnknownFormat(LedgerError):
    code = "unknown_format"
    status = 400


class InvalidRange(LedgerError):
    code = "invalid_range"
    status = 400


class InvalidCursor(LedgerError):
    code = "invalid_cursor"
    status = 400


class InvalidMapping(LedgerError):
    code = "invalid_mapping"
    status = 422


class UnsupportedCurrency(LedgerError):
    code = "unsupported_currency"
    status = 422


class MissingMapping(LedgerError):
    """A layout whose required mapping is missing, where blanks would be imported wrongly."""

    code = "missing_mapping"
    status = 422
