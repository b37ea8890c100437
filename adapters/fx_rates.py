"""Rate files: the ECB's euro reference-rate CSV files (daily eurofxref.csv and history
eurofxref-hist.csv) read as rates EUR→currency (billing.fx.FxRate).

Columns are read by header name (they come and go over the years); each line
ends with a trailing comma; the daily file writes `13 April 2026` with a
space after each comma, the history ISO dates and `N/A` where there is no
rate. Columns for codes that are no longer ISO 4217 currencies (CYP, ROL,
…) are skipped and named in `skipped`; a cell that is neither `N/A`, empty
nor a rate greater than zero is an error naming its line and column.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime

from billing.errors import InvalidBillingRequest
from billing.fx import FxRate, make_rate, parse_rate
from ledger.currencies import MINOR_UNITS

MAX_RATES = 250_000


@dataclass(frozen=True, slots=True)
class EcbFile:
    rates: tuple[FxRate, ...]
    skipped: tuple[str, ...]  # columns that are not current currencies


def _date(text: str, line: int) -> date:
    for layout in ("%Y-%m-%d", "%d %B %Y"):
        try:
            return datetime.strptime(text, layout).date()
        except ValueError:
            continue
    raise InvalidBillingRequest(f"line {line}: {text!r} is not a date", line=line)


def parse_ecb_csv(data: bytes | str) -> EcbFile:
    text = data.decode("utf-8-sig") if isinstance(data, bytes) else data.lstrip("\ufeff")
    rows = list(csv.reader(io.StringIO(text), skipinitialspace=True))
    if not rows or not rows[0] or rows[0][0].strip() != "Date":
        raise InvalidBillingRequest(
            "not an ECB reference-rate CSV: the first line must start with `Date`"
        )
    header = [h.strip() for h in rows[0]]
    columns = [(i, code) for i, code in enumerate(header) if i > 0 and code]
    skipped = tuple(code for _, code in columns if code not in MINOR_UNITS or code == "EUR")
    kept = [(i, code) for i, code in columns if code not in skipped]
    rates: list[FxRate] = []
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        on = _date(row[0].strip(), number)
        for i, code in kept:
            cell = row[i].strip() if i < len(row) else ""
            if cell in ("", "N/A"):
                continue
            try:
                rate = parse_rate(cell)
            except InvalidBillingRequest:
                raise InvalidBillingRequest(
                    f"line {number}, column {code}: {cell!r} is not a rate",
                    line=number,
                    column=code,
                ) from None
            rates.append(FxRate(on, "EUR", code, rate))
        if len(rates) > MAX_RATES:
            raise InvalidBillingRequest(f"a file holds at most {MAX_RATES} rates")
    if not rates:
        raise InvalidBillingRequest("the file holds no rate")
    return EcbFile(tuple(rates), skipped)


def parse_rate_table_csv(data: bytes | str) -> EcbFile:
    """A plain CSV with the header `date,base,quote,rate` (ISO dates), one rate a row."""
    text = data.decode("utf-8-sig") if isinstance(data, bytes) else data.lstrip("\ufeff")
    reader = csv.DictReader(io.StringIO(text), skipinitialspace=True)
    if [f.strip().lower() for f in reader.fieldnames or []] != ["date", "base", "quote", "rate"]:
        raise InvalidBillingRequest("a rate table CSV has the header date,base,quote,rate")
    rates = []
    for number, row in enumerate(reader, start=2):
        values = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
        try:
            on = date.fromisoformat(values["date"])
        except ValueError:
            bad = values["date"]
            raise InvalidBillingRequest(f"line {number}: {bad!r} is not a date") from None
        rates.append(make_rate(on, values["base"], values["quote"], parse_rate(values["rate"])))
        if len(rates) > MAX_RATES:
            raise InvalidBillingRequest(f"a file holds at most {MAX_RATES} rates")
    if not rates:
        raise InvalidBillingRequest("the file holds no rate")
    return EcbFile(tuple(rates), ())


def parse_rates_file(data: bytes) -> EcbFile:
    """The ECB layout (first cell `Date`) or the plain rate table (header date,base,quote,rate)."""
    head = data[:64].lstrip(b"\xef\xbb\xbf").lower()
    if head.startswith(b"date,base,") or head.startswith(b"date, base,"):
        return parse_rate_table_csv(data)
    return parse_ecb_csv(data)
