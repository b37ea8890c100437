"""SWIFT MT940 customer statements, read with the kept `mt-940` parser.

A file holds one or more statements (`:20:` to `:62F:`/`:62M:`), bare or each in
a SWIFT FIN envelope (`{1:…}{2:…}{4: … -}`). The library reads a file as one
stream and keeps only the last statement's balances, so the file is cut at
each `:20:` and every statement is read on its own, to check its own balances.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import Any

import mt940

from .model import ReferenceMinter, Statement, StatementError, StatementLine, distinct_references
from .validation import collect_errors

_STATEMENT_START = re.compile(r"(?m)^(?=:20:)")
# A line of "-" (or the FIN envelope's "-}") ends a SWIFT text block.
_BLOCK_END = re.compile(r"(?m)^-(?:\}|[ \t]*$)")


def parse_mt940(data: bytes) -> list[Statement]:
    """Parse and check; raise the first problem found."""
    statements, errors = read_mt940(data)
    if errors:
        raise errors[0]
    return statements


def read_mt940(data: bytes) -> tuple[list[Statement], list[StatementError]]:
    """Parse, returning statements and every problem they show."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        # SWIFT's character set is ASCII; banks that stray use Latin-1.
        text = data.decode("latin-1")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    chunks = [_block(c) for c in _STATEMENT_START.split(text)[1:]]
    if not chunks:
        raise StatementError("no_statements", "the MT940 file holds no statement (no :20: field).")
    statements = [_statement(chunk, n) for n, chunk in enumerate(chunks, start=1)]
    return statements, collect_errors(statements, [])


def _block(chunk: str) -> str:
    end = _BLOCK_END.search(chunk)
    return chunk[: end.start()] if end else chunk


def _statement(chunk: str, number: int) -> Statement:
    where = f"MT940 statement {number}"
    transactions = mt940.models.Transactions()
    try:
        transactions.parse(chunk)
    except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StatementError(
            "malformed_mt940",
            f"{where} cannot be read: {str(exc).splitlines()[0][:300]}. The bank's file "
            "breaks the MT940 layout (for example a :61: customer reference longer "
            "than 16 characters); ask the bank for camt.053 instead.",
        ) from exc
    head: dict[str, Any] = transactions.data
    opening = head.get("final_opening_balance") or head.get("intermediate_opening_balance")
    closing = head.get("final_closing_balance") or head.get("intermediate_closing_balance")
    if opening is None or closing is None:
        raise StatementError(
            "missing_field", f"{where} has no opening (:60F:) or closing (:62F:) balance."
        )
    account = head.get("account_identification")
    reference = head.get("transaction_reference")
    sequence = "/".join(
        str(head[k]) for k in ("statement_number", "sequence_number") if head.get(k)
    )
    currency = str(opening.amount.currency)
    minter = ReferenceMinter(account)
    lines = distinct_references(
        _line(transaction.data, currency, minter) for transaction in transactions
    )
    return Statement(
        format="mt940",
        statement_id="/".join(part for part in (reference, sequence) if part) or None,
        account_iban=None,
        account_number=account,
        currency=currency,
        opening_balance=_decimal(opening.amount.amount),
        closing_balance=_decimal(closing.amount.amount),
        opening_date=_date(opening.date),
        closing_date=_date(closing.date),
        lines=lines,
    )


def _line(data: dict[str, Any], currency: str, minter: ReferenceMinter) -> StatementLine:
    amount = _decimal(data["amount"].amount)
    value = _date(data.get("date"))
    # The entry date (:61: MMDD) is the booking; without it the value date is.
    booking = _date(data.get("entry_date") or data.get("guessed_entry_date")) or value
    if booking is None:
        raise StatementError("bad_date", "an MT940 :61: line has no date.")
    customer = data.get("customer_reference")
    name = data.get("applicant_name") or data.get("recipient_name")
    account = data.get("applicant_iban") or data.get("gvc_applicant_iban")
    remittance = data.get("purpose") or data.get("transaction_details")
    code = data.get("id") or data.get("transaction_code")
    end_to_end = data.get("end_to_end_reference")
    content = (booking, value, amount, currency, customer, name, account, remittance, code)
    return StatementLine(
        # The bank's own reference (after //) identifies a booking; NONREF and
        # the customer's reference do not, so those lines get a content hash.
        bank_reference=data.get("bank_reference") or minter.mint(content),
        booking_date=booking,
        value_date=value,
        amount=amount,
        currency=str(data["amount"].currency or currency),
        end_to_end_id=end_to_end,
        counterparty_name=_clean(name),
        counterparty_account=_clean(account),
        remittance_info=_clean(remittance),
        bank_transaction_code=_clean(code),
    )


def _decimal(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _date(value: Any) -> date | None:
    return date(value.year, value.month, value.day) if value is not None else None


def _clean(text: Any) -> str | None:
    return " ".join(str(text).split()) or None if text is not None else None
