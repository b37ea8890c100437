"""CSV exports read through a column mapping the accountant saved once per bank.

Every bank lays out its CSV differently, so nothing is guessed: the mapping
names the columns, the date format and the decimal separator.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from itertools import pairwise

from .model import ReferenceMinter, Statement, StatementError, StatementLine
from .validation import collect_errors

_PLAIN_DECIMAL = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")


@dataclass(frozen=True, slots=True)
class CsvMapping:
    """Where each field lives in one bank's CSV export.

    Give `amount_column` (signed, money in positive) or `debit_column` and/or
    `credit_column` (unsigned, one filled per row; a zero in the other counts
    as empty); and `currency_column` or `fixed_currency`. `skip_rows` counts
    lines before the header row.

    `indicator_column` names a debit/credit mark beside an unsigned
    `amount_column` (values in `debit_indicators` / `credit_indicators`).
    `balance_column` holds the running balance after each row: the rows must
    chain (oldest or newest first), and give the statement its opening and
    closing balances. `invert_sign` is for exports that show money out as
    positive, as card statements do (a purchase raises what is owed).
    """

    date_column: str
    date_format: str = "%Y-%m-%d"
    amount_column: str | None = None
    debit_column: str | None = None
    credit_column: str | None = None
    decimal_separator: str = "."
    thousands_separator: str = ""
    reference_column: str | None = None
    description_column: str | None = None
    counterparty_column: str | None = None
    counterparty_account_column: str | None = None
    value_date_column: str | None = None
    currency_column: str | None = None
    fixed_currency: str | None = None
    delimiter: str = ","
    skip_rows: int = 0
    encoding: str = "utf-8-sig"
    account_number: str | None = None
    indicator_column: str | None = None
    debit_indicators: tuple[str, ...] = ("D", "DR", "DBIT", "DEBIT", "S", "SOLL")
    credit_indicators: tuple[str, ...] = ("C", "CR", "CRDT", "CREDIT", "H", "HABEN")
    balance_column: str | None = None
    invert_sign: bool = False

    def __post_init__(self) -> None:
        has_split = self.debit_column is not None or self.credit_column is not None
        if (self.amount_column is None) == (not has_split):
            raise StatementError(
                "bad_mapping",
                "map either one signed amount column or debit/credit columns, not both "
                "and not neither.",
            )
        if (self.currency_column is None) == (self.fixed_currency is None):
            raise StatementError(
                "bad_mapping", "map either a currency column or a fixed currency, exactly one."
            )
        if self.decimal_separator not in (".", ","):
            raise StatementError("bad_mapping", "the decimal separator must be '.' or ','.")
        if self.thousands_separator == self.decimal_separator:
            raise StatementError("bad_mapping", "the thousands and decimal separators must differ.")
        if self.skip_rows < 0:
            raise StatementError("bad_mapping", "skip_rows cannot be negative.")
        if self.indicator_column is not None and self.amount_column is None:
            raise StatementError(
                "bad_mapping", "an indicator_column marks the sign of an amount_column; map one."
            )
        marks = {m.upper() for m in self.debit_indicators} & {
            m.upper() for m in self.credit_indicators
        }
        if marks:
            raise StatementError(
                "bad_mapping", f"{', '.join(sorted(marks))} cannot mark both debits and credits."
            )

    def columns(self) -> list[str]:
        named = (
            self.date_column, self.amount_column, self.debit_column, self.credit_column,
            self.reference_column, self.description_column, self.counterparty_column,
            self.counterparty_account_column, self.value_date_column, self.currency_column,
            self.indicator_column, self.balance_column,
        )  # fmt: skip
        return [column for column in named if column is not None]


def parse_csv(data: bytes, mapping: CsvMapping) -> list[Statement]:
    """Parse and check; raise the first problem found."""
    statements, errors = read_csv(data, mapping)
    if errors:
        raise errors[0]
    return statements


def read_csv(data: bytes, mapping: CsvMapping) -> tuple[list[Statement], list[StatementError]]:
    """One statement per currency in the file; CSV exports carry no balances."""
    try:
        text = data.decode(mapping.encoding)
    except (LookupError, UnicodeDecodeError) as exc:
        raise StatementError(
            "malformed_csv",
            f"the file is not encoded as {mapping.encoding} ({exc}); set the mapping's "
            "encoding to the one the bank uses (often cp1252).",
        ) from exc
    try:
        by_currency = _read_rows(text, mapping)
    except csv.Error as exc:
        raise StatementError(
            "malformed_csv", f"the CSV cannot be split into fields ({exc}); check the delimiter."
        ) from exc
    if not by_currency:
        raise StatementError("no_statements", "the CSV file has a header but no rows.")
    statements = [_statement(currency, rows, mapping) for currency, rows in by_currency.items()]
    return statements, collect_errors(statements, [])


def _statement(
    currency: str, rows: list[tuple[StatementLine, Decimal | None]], mapping: CsvMapping
) -> Statement:
    lines = [line for line, _ in rows]
    opening = closing = None
    if mapping.balance_column is not None:
        lines, opening, closing = _chain(rows, currency)
    return Statement(
        format="csv",
        statement_id=None,
        account_iban=None,
        account_number=mapping.account_number,
        currency=currency,
        opening_balance=opening,
        closing_balance=closing,
        opening_date=min(line.booking_date for line in lines),
        closing_date=max(line.booking_date for line in lines),
        lines=tuple(lines),
    )


def _chain(
    rows: list[tuple[StatementLine, Decimal | None]], currency: str
) -> tuple[list[StatementLine], Decimal, Decimal]:
    """Lines oldest first, with the balances before the first and after the last.

    Each row's balance is the one after it, so consecutive rows must differ by
    the later row's amount. Exports list rows oldest or newest first; the
    balances tell which, and rows that fit neither order are refused.
    """
    balances = [balance for _, balance in rows]
    if any(balance is None for _, balance in rows):
        raise StatementError("missing_field", f"{currency}: a row has an empty balance column.")
    for ordered in (rows, rows[::-1]):
        pairs = [(line, balance) for line, balance in ordered if balance is not None]
        if all(b0 + line.amount == b1 for (_, b0), (line, b1) in pairwise(pairs)):
            first, after_first = pairs[0]
            return [line for line, _ in pairs], after_first - first.amount, pairs[-1][1]
    raise StatementError(
        "unbalanced_statement",
        f"CSV {currency} rows: the balance column does not follow from the amounts in "
        f"either row order (balances {', '.join(str(b) for b in balances[:5])}…); the "
        "export is missing rows or the mapping reads the wrong columns.",
    )


def _read_rows(
    text: str, mapping: CsvMapping
) -> dict[str, list[tuple[StatementLine, Decimal | None]]]:
    rows = io.StringIO(text, newline="")  # the csv module handles line endings itself
    for _ in range(mapping.skip_rows):
        rows.readline()
    reader = csv.DictReader(rows, delimiter=mapping.delimiter)
    header = [name.strip() for name in reader.fieldnames or []]
    reader.fieldnames = header
    missing = [column for column in mapping.columns() if column not in header]
    if missing:
        raise StatementError(
            "missing_column",
            f"the CSV header has no column {', '.join(map(repr, missing))} (found: "
            f"{', '.join(map(repr, header)) or 'no header'}); fix the saved mapping or "
            "check skip_rows and the delimiter.",
        )
    minter = ReferenceMinter(mapping.account_number)
    by_currency: dict[str, list[tuple[StatementLine, Decimal | None]]] = {}
    # Row numbers count from the header as line 1, as a spreadsheet shows them.
    for number, row in enumerate(reader, start=mapping.skip_rows + 2):
        if not any((value or "").strip() for value in row.values() if isinstance(value, str)):
            continue
        where = f"CSV row {number}"
        line = _line(row, mapping, where, minter)
        balance = _decimal(_cell(row, mapping.balance_column), mapping, f"{where}, balance")
        if balance is not None and mapping.invert_sign:
            balance = -balance
        by_currency.setdefault(line.currency, []).append((line, balance))
    return by_currency


def _line(
    row: Mapping[str, str | None], mapping: CsvMapping, where: str, minter: ReferenceMinter
) -> StatementLine:
    amount = _amount(row, mapping, where)
    booking = _date(_cell(row, mapping.date_column), mapping, f"{where}, {mapping.date_column}")
    if booking is None:
        raise StatementError("bad_date", f"{where}: the date column is empty.")
    value = _date(_cell(row, mapping.value_date_column), mapping, f"{where}, value date")
    currency = mapping.fixed_currency or _cell(row, mapping.currency_column)
    if currency is None or len(currency) != 3 or not currency.isalpha():
        raise StatementError(
            "missing_field", f"{where}: {currency!r} is not a three-letter currency code."
        )
    currency = currency.upper()
    name = _cell(row, mapping.counterparty_column)
    account = _cell(row, mapping.counterparty_account_column)
    description = _cell(row, mapping.description_column)
    reference = _cell(row, mapping.reference_column)
    content = (booking, value, amount, currency, name, account, description)
    return StatementLine(
        bank_reference=reference or minter.mint(content),
        booking_date=booking,
        value_date=value,
        amount=amount,
        currency=currency,
        counterparty_name=name,
        counterparty_account=account,
        remittance_info=description,
    )


def _amount(row: Mapping[str, str | None], mapping: CsvMapping, where: str) -> Decimal:
    amount = _unsigned_or_signed(row, mapping, where)
    return -amount if mapping.invert_sign else amount


def _unsigned_or_signed(row: Mapping[str, str | None], mapping: CsvMapping, where: str) -> Decimal:
    if mapping.amount_column is not None:
        amount = _decimal(_cell(row, mapping.amount_column), mapping, where)
        if amount is None:
            raise StatementError("bad_amount", f"{where}: the amount column is empty.")
        if mapping.indicator_column is None:
            return amount
        mark = (_cell(row, mapping.indicator_column) or "").upper()
        if mark in {m.upper() for m in mapping.debit_indicators}:
            return -abs(amount)
        if mark in {m.upper() for m in mapping.credit_indicators}:
            return abs(amount)
        raise StatementError(
            "bad_amount",
            f"{where}: the indicator column holds {mark!r}, which is neither a debit mark "
            f"({', '.join(mapping.debit_indicators)}) nor a credit mark "
            f"({', '.join(mapping.credit_indicators)}).",
        )
    debit = _decimal(_cell(row, mapping.debit_column), mapping, where)
    credit = _decimal(_cell(row, mapping.credit_column), mapping, where)
    # Many exports write 0,00 in the column a row does not use.
    debit = None if debit is not None and debit == 0 and credit else debit
    credit = None if credit is not None and credit == 0 and debit else credit
    if (debit is None) == (credit is None):
        raise StatementError(
            "bad_amount", f"{where}: exactly one of the debit and credit columns must be filled."
        )
    # Some banks sign their debit column and some do not; the column says the direction.
    return -abs(debit) if debit is not None else abs(credit or Decimal(0))


def _decimal(text: str | None, mapping: CsvMapping, where: str) -> Decimal | None:
    if text is None:
        return None
    normal = text.replace(" ", "")
    if mapping.thousands_separator:
        normal = normal.replace(mapping.thousands_separator, "")
    if mapping.decimal_separator == ",":
        if "." in normal:
            raise _bad_amount(text, where)
        normal = normal.replace(",", ".")
    # Decimal() alone would also take "1e3", "1_000" and "NaN".
    if not _PLAIN_DECIMAL.match(normal):
        raise _bad_amount(text, where)
    return Decimal(normal)


def _bad_amount(text: str, where: str) -> StatementError:
    return StatementError(
        "bad_amount",
        f"{where}: {text!r} is not an amount; check the mapping's decimal and thousands "
        "separators.",
    )


def _date(text: str | None, mapping: CsvMapping, where: str) -> date | None:
    if text is None:
        return None
    try:
        return datetime.strptime(text, mapping.date_format).date()
    except ValueError as exc:
        raise StatementError(
            "bad_date",
            f"{where}: {text!r} does not match the mapping's date format {mapping.date_format!r}.",
        ) from exc


def _cell(row: Mapping[str, str | None], column: str | None) -> str | None:
    if column is None:
        return None
    value = row.get(column)
    return value.strip() or None if isinstance(value, str) else None
