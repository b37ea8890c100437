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

from .model import ReferenceMinter, Statement, StatementError, StatementLine
from .validation import collect_errors

_PLAIN_DECIMAL = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")


@dataclass(frozen=True, slots=True)
class CsvMapping:
    """Where each field lives in one bank's CSV export.

    Give `amount_column` (signed, money in positive) or `debit_column` and/or
    `credit_column` (unsigned, one filled per row); and `currency_column` or
    `fixed_currency`. `skip_rows` counts lines before the header row.
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

    def columns(self) -> list[str]:
        named = (
            self.date_column, self.amount_column, self.debit_column, self.credit_column,
            self.reference_column, self.description_column, self.counterparty_column,
            self.counterparty_account_column, self.value_date_column, self.currency_column,
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
    statements = [
        Statement(
            format="csv",
            statement_id=None,
            account_iban=None,
            account_number=mapping.account_number,
            currency=currency,
            opening_balance=None,
            closing_balance=None,
            opening_date=min(line.booking_date for line in lines),
            closing_date=max(line.booking_date for line in lines),
            lines=tuple(lines),
        )
        for currency, lines in by_currency.items()
    ]
    return statements, collect_errors(statements, [])


def _read_rows(text: str, mapping: CsvMapping) -> dict[str, list[StatementLine]]:
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
    by_currency: dict[str, list[StatementLine]] = {}
    # Row numbers count from the header as line 1, as a spreadsheet shows them.
    for number, row in enumerate(reader, start=mapping.skip_rows + 2):
        if not any((value or "").strip() for value in row.values() if isinstance(value, str)):
            continue
        line = _line(row, mapping, f"CSV row {number}", minter)
        by_currency.setdefault(line.currency, []).append(line)
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
    if mapping.amount_column is not None:
        amount = _decimal(_cell(row, mapping.amount_column), mapping, where)
        if amount is None:
            raise StatementError("bad_amount", f"{where}: the amount column is empty.")
        return amount
    debit = _decimal(_cell(row, mapping.debit_column), mapping, where)
    credit = _decimal(_cell(row, mapping.credit_column), mapping, where)
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
