"""Checks a parsed statement against itself; errors are returned, not raised.

Returning every problem at once lets an import screen show the accountant the
whole list, the way a ledger validator reports all errors of a batch.
"""

from __future__ import annotations

from dataclasses import fields
from decimal import Decimal

from .model import Statement, StatementError, StatementLine

_TEXT_FIELDS = [f.name for f in fields(StatementLine) if f.type in ("str", "str | None")]


def validate_statement(statement: Statement) -> list[StatementError]:
    errors: list[StatementError] = []
    name = describe(statement)
    for field in ("statement_id", "account_iban", "account_number", "currency"):
        if "\x00" in (getattr(statement, field) or ""):
            errors.append(_nul(f"{name}: the statement's {field}"))
    for index, line in enumerate(statement.lines, start=1):
        for field in _TEXT_FIELDS:
            if "\x00" in (getattr(line, field) or ""):
                errors.append(_nul(f"{name}: line {index}, {field}"))
        if line.currency != statement.currency:
            errors.append(
                StatementError(
                    "currency_mismatch",
                    f"{name}: line {index} ({line.bank_reference}) is in {line.currency} "
                    f"but the statement is in {statement.currency}; a statement covers one "
                    "currency account, so split the file per currency.",
                )
            )
    opening, closing = statement.opening_balance, statement.closing_balance
    if opening is not None and closing is not None:
        credits = sum((x.amount for x in statement.lines if x.amount > 0), Decimal(0))
        debits = -sum((x.amount for x in statement.lines if x.amount < 0), Decimal(0))
        expected = opening + credits - debits
        if expected != closing:
            errors.append(
                StatementError(
                    "unbalanced_statement",
                    f"{name}: opening balance {opening} + credits {credits} - debits {debits} "
                    f"= {expected}, but the closing balance is {closing} "
                    f"(difference {closing - expected}). The file is missing entries or "
                    "was altered; ask the bank for the complete statement.",
                )
            )
    return errors


def _nul(where: str) -> StatementError:
    # PostgreSQL text cannot hold NUL, and no bank writes one on purpose.
    return StatementError("nul_byte", f"{where} holds a NUL character; export the statement again.")


def collect_errors(
    statements: list[Statement], parse_errors: list[StatementError]
) -> list[StatementError]:
    """Problems found while parsing, then each statement's own checks."""
    return [*parse_errors, *(e for s in statements for e in validate_statement(s))]


def describe(statement: Statement) -> str:
    label = statement.statement_id or statement.account or "unnamed account"
    return f"{statement.format} statement {label}"
