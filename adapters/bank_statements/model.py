"""Immutable records every statement parser produces, and the one error type.

Amounts are signed from our side of the account: money in (a credit on the
bank's books) is positive, money out is negative. They are always Decimal.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from typing import Literal

ErrorCode = Literal[
    "malformed_xml",
    "unsafe_xml",
    "malformed_ofx",
    "malformed_csv",
    "malformed_mt940",
    "truncated_file",
    "unsupported_format",
    "unknown_format",
    "no_statements",
    "missing_field",
    "bad_date",
    "bad_amount",
    "bad_mapping",
    "missing_column",
    "currency_mismatch",
    "unbalanced_statement",
    "ofx_error_response",
    "too_deeply_nested",
    "nul_byte",
    "bad_archive",
]


class StatementError(ValueError):
    """A statement file that cannot be imported as it is.

    `code` is stable and meant for programs (API problem types, tests);
    the message is for the accountant and says what to fix. Codes:

    - malformed_xml: the XML is not well-formed (often a truncated download).
    - unsafe_xml: the XML declares a DTD or entities; statements never need them.
    - malformed_ofx: the OFX tags do not nest, or there is no <OFX> element.
    - malformed_mt940: an MT940 statement that breaks the SWIFT field layout.
    - malformed_csv: the CSV is not in the mapping's encoding or its quoting is broken.
    - truncated_file: the file ends inside an open element.
    - unsupported_format: a known format we deliberately do not import
      (camt.052 reports, camt.054 notifications, camt.053 outside versions 2-8).
    - unknown_format: neither the content nor the given name is a format we know.
    - no_statements: a well-formed file that holds no statement at all.
    - missing_field: a required element or value is absent.
    - bad_date / bad_amount: a date or a decimal that does not parse.
    - bad_mapping: a CSV column mapping that contradicts itself.
    - missing_column: a mapped CSV column is not in the file's header.
    - currency_mismatch: a balance or line in another currency than its statement.
    - unbalanced_statement: opening + lines != closing.
    - ofx_error_response: the bank answered the OFX request with an error status.
    - too_deeply_nested: elements nest deeper than any statement does (MAX_DEPTH).
    - nul_byte: a field holds a NUL character, which no statement text contains.
    - bad_archive: a ZIP of statements that is broken, empty or too large unpacked.
    """

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message

    def __repr__(self) -> str:
        return f"StatementError({self.code!r}, {self.message!r})"


@dataclass(frozen=True, slots=True)
class StatementLine:
    bank_reference: str
    booking_date: date
    value_date: date | None
    amount: Decimal
    currency: str
    end_to_end_id: str | None = None
    counterparty_name: str | None = None
    counterparty_account: str | None = None
    remittance_info: str | None = None
    bank_transaction_code: str | None = None

    def __post_init__(self) -> None:
        # A float here would mean a parser took a shortcut on a money path.
        if not isinstance(self.amount, Decimal):
            raise TypeError(f"amount must be a Decimal, not {type(self.amount).__name__}")


@dataclass(frozen=True, slots=True)
class Statement:
    format: str
    statement_id: str | None
    account_iban: str | None
    account_number: str | None
    currency: str
    opening_balance: Decimal | None
    closing_balance: Decimal | None
    opening_date: date | None
    closing_date: date | None
    lines: tuple[StatementLine, ...]

    @property
    def account(self) -> str | None:
        return self.account_iban or self.account_number


# Deeper than any real statement nests (OFX ~10 levels, camt.053 ~15); a limit
# keeps hostile files from costing recursion or quadratic work.
MAX_DEPTH = 64


def distinct_references(lines: Iterable[StatementLine]) -> tuple[StatementLine, ...]:
    """The lines with a reference each that no other line of the statement has.

    A reference is a line's identity for de-duplication across uploads, so two
    lines of one statement sharing one (a bank reusing an entry reference, a
    repeated FITID) would make the second look already imported. Repeats get
    an occurrence suffix instead: within one file no line is ever dropped.
    """
    result: list[StatementLine] = []
    seen: set[str] = set()
    # The last suffix given per reference: a file repeating one reference
    # many times costs one step per line, not a search from #2 each time.
    last: dict[str, int] = {}
    for line in lines:
        base = reference = line.bank_reference
        if reference in seen:
            count = last.get(base, 1)
            while reference in seen:
                count += 1
                reference = f"{base}#{count}"
            last[base] = count
            line = replace(line, bank_reference=reference)
        seen.add(reference)
        result.append(line)
    return tuple(result)


class ReferenceMinter:
    """Deterministic stand-in references for lines the bank gave no id.

    The reference hashes the line's content, so importing the same file twice
    yields the same references (reconciliation can stay idempotent). Identical
    lines in one statement (two equal card payments on one day) get an
    occurrence suffix so they do not collapse into one.
    """

    def __init__(self, account: str | None) -> None:
        self._account = account or ""
        self._seen: dict[str, int] = {}

    def mint(self, parts: Iterable[object]) -> str:
        canonical = "\x1f".join([self._account, *(_canonical(p) for p in parts)])
        digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]
        count = self._seen.get(digest, 0) + 1
        self._seen[digest] = count
        return f"sha256:{digest}" if count == 1 else f"sha256:{digest}#{count}"


def _canonical(part: object) -> str:
    if part is None:
        return ""
    if isinstance(part, Decimal):
        # 8.850 and 8.85 are the same amount and must hash the same.
        return format(part.normalize(), "f")
    return str(part)
