"""File layouts of the journal feed: JSON Lines and the ERPs' journal imports.

CSV files are RFC 4180 (comma, CRLF, minimal quoting, UTF-8, header row
always present); text cells have line breaks folded to spaces. Amounts are
written exactly as posted (a plain decimal with a dot).

- NetSuite journal entry import: External ID, Date, Subsidiary, Currency,
  Exchange Rate, Account, Debit, Credit, Memo, Name, Line Memo. Lines sharing
  an External ID form one journal. Exchange Rate is 1 in the book's base
  currency and left blank otherwise (NetSuite then applies its own rate).
- QuickBooks Online: Journal No., Journal Date, Account Name, Debits,
  Credits, Description, Name, Currency Code. Lines sharing a Journal No. form
  one journal; QBO matches accounts by name (account numbers turned off).
- Xero manual journals: Narration, Date, Description, AccountCode, TaxRate,
  Amount, TrackingName1, TrackingOption1. Lines sharing Narration and Date form
  one journal, so the narration starts with the external id. Amount is signed
  (positive debit). Xero manual journals are in the organisation's base
  currency only: an entry in another currency is refused (422).
- SAP: a flat file mirroring BAPI_ACC_DOCUMENT_POST; one `H` row per document
  (DOCUMENTHEADER: COMP_CODE, DOC_DATE, PSTNG_DATE, DOC_TYPE, REF_DOC_NO,
  HEADER_TXT) followed by its `L` rows (ACCOUNTGL/CURRENCYAMOUNT: ITEMNO_ACC,
  GL_ACCOUNT, CURRENCY, AMT_DOCCUR signed, ITEM_TEXT); dates YYYYMMDD.

Account codes: the book's mapping for the format; an unmapped account falls
back to our account code, else our account name — except QuickBooks, which
matches by name and falls back to our account name.

Name columns (NetSuite Name, QuickBooks Name, Xero's customer tracking
option) carry the customer's name; a posting whose customer is not one of
the book's customers keeps the id it was posted with. JSON Lines carry both
(`customer`, `customer_name`).

Required mappings (`check_mapping`), by what a blank would do in the ERP:
- SAP without `company_code`: refused (422 missing_mapping) — every document
  of the file would be rejected by BAPI_ACC_DOCUMENT_POST.
- Xero with lines on a tax account (`Liabilities:Tax…`) and no
  `tax_line_rate`: refused — the lines would go in as the default tax rate
  and misstate the tax return.
- NetSuite without `subsidiary`: a warning in the manifest (the column is
  required by OneWorld accounts only).
- QuickBooks with accounts of the batch that have no mapped QBO name: a
  warning naming them (QBO imports them only if its chart has our names).
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterable, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

import msgspec

from adapters.exports.errors import InvalidMapping, MissingMapping, UnsupportedCurrency
from adapters.exports.feed import ErpMapping, FeedEntry, FeedPosting, external_id

DATE_FORMATS = {"MM/DD/YYYY": "%m/%d/%Y", "DD/MM/YYYY": "%d/%m/%Y", "YYYY-MM-DD": "%Y-%m-%d"}

DEFAULTS: dict[str, dict[str, str]] = {
    "netsuite": {"subsidiary": "", "date_format": "MM/DD/YYYY"},
    "quickbooks": {"date_format": "MM/DD/YYYY"},
    "xero": {
        "date_format": "DD/MM/YYYY",
        "tax_rate": "Tax Exempt",
        "tax_line_rate": "",
        "tracking_name": "",
        "tracking_dimension": "customer",
    },
    "sap": {"company_code": "", "doc_type": "SA"},
}

HEADERS = {
    "netsuite": [
        "External ID",
        "Date",
        "Subsidiary",
        "Currency",
        "Exchange Rate",
        "Account",
        "Debit",
        "Credit",
        "Memo",
        "Name",
        "Line Memo",
    ],
    "quickbooks": [
        "Journal No.",
        "Journal Date",
        "Account Name",
        "Debits",
        "Credits",
        "Description",
        "Name",
        "Currency Code",
    ],
    "xero": [
        "Narration",
        "Date",
        "Description",
        "AccountCode",
        "TaxRate",
        "Amount",
        "TrackingName1",
        "TrackingOption1",
    ],
    "sap": [
        "RECORD_TYPE",
        "COMP_CODE",
        "DOC_DATE",
        "PSTNG_DATE",
        "DOC_TYPE",
        "REF_DOC_NO",
        "HEADER_TXT",
        "ITEMNO_ACC",
        "GL_ACCOUNT",
        "CURRENCY",
        "AMT_DOCCUR",
        "ITEM_TEXT",
    ],
}


def check_settings(fmt: str, settings: dict[str, Any]) -> None:
    allowed = DEFAULTS[fmt]
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        raise InvalidMapping(
            f"unknown setting(s) for {fmt}: {', '.join(unknown)}; known: {', '.join(allowed)}",
            settings=unknown,
        )
    for key, value in settings.items():
        if not isinstance(value, str):
            raise InvalidMapping(f"setting {key} must be a string", setting=key)
    if "date_format" in settings and settings["date_format"] not in DATE_FORMATS:
        raise InvalidMapping(
            f"date_format must be one of {', '.join(DATE_FORMATS)}", setting="date_format"
        )


def effective_settings(fmt: str, settings: dict[str, Any]) -> dict[str, str]:
    return {**DEFAULTS.get(fmt, {}), **settings}


TAX_ACCOUNTS = "Liabilities:Tax"  # prefix of the accounts whose lines are tax lines


def _is_tax(posting: FeedPosting) -> bool:
    return posting.account.startswith(TAX_ACCOUNTS)


def check_mapping(
    fmt: str, entries: Sequence[FeedEntry], mapping: ErpMapping
) -> list[dict[str, Any]]:
    """The warnings for a batch in this layout; raises MissingMapping where blanks would be
    imported wrongly (the module docstring says which format warns and which refuses)."""
    return mapping_warnings(
        fmt,
        mapping,
        any_entries=bool(entries),
        taxed={p.account for e in entries for p in e.postings if _is_tax(p)},
        unmapped={
            p.account for e in entries for p in e.postings if p.account_id not in mapping.codes
        },
    )


def mapping_warnings(
    fmt: str,
    mapping: ErpMapping,
    *,
    any_entries: bool,
    taxed: Iterable[str],
    unmapped: Iterable[str],
) -> list[dict[str, Any]]:
    """check_mapping on a batch's summary: whether it has entries, the names of its accounts
    on tax lines (`Liabilities:Tax…`) and of those with no code mapped for `fmt`."""
    settings = effective_settings(fmt, mapping.settings)
    warnings: list[dict[str, Any]] = []
    if fmt == "sap" and not settings["company_code"]:
        raise MissingMapping(
            "SAP needs the company code: PUT /v1/erp-mappings/sap with settings.company_code",
            setting="company_code",
        )
    if fmt == "xero" and not settings["tax_line_rate"]:
        taxed = sorted(set(taxed))
        if taxed:
            raise MissingMapping(
                f"lines on {', '.join(taxed)} need a Xero tax rate: PUT /v1/erp-mappings/xero"
                ' with settings.tax_line_rate (e.g. "BAS Excluded" or "No VAT")',
                setting="tax_line_rate",
                accounts=taxed,
            )
    if fmt == "netsuite" and any_entries and not settings["subsidiary"]:
        warnings.append(
            {
                "code": "missing_subsidiary",
                "message": "the Subsidiary column is blank: OneWorld accounts need"
                " settings.subsidiary in the netsuite mapping",
            }
        )
    if fmt == "quickbooks":
        unmapped = sorted(set(unmapped))
        if unmapped:
            warnings.append(
                {
                    "code": "unmapped_accounts",
                    "message": "no QuickBooks account name mapped for "
                    + ", ".join(unmapped)
                    + ": they are sent under our names",
                    "accounts": unmapped,
                }
            )
    return warnings


def _text(value: str | None) -> str:
    return " ".join((value or "").split())


def _amount(value: Decimal) -> str:
    return format(value, "f")


def _debit_credit(amount: Decimal) -> tuple[str, str]:
    return (_amount(amount), "") if amount > 0 else ("", _amount(-amount))


def _code(mapping: ErpMapping, posting: FeedPosting, *, by_name: bool = False) -> str:
    mapped = mapping.codes.get(posting.account_id)
    if mapped:
        return mapped
    if by_name:
        return posting.account
    return posting.code or posting.account


def _csv(rows: Sequence[Sequence[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def header(fmt: str) -> bytes:
    """The bytes a file of this layout starts with: the CSV header row (none for JSON Lines)."""
    return b"" if fmt == "jsonl" else _csv([HEADERS[fmt]])


def render(
    fmt: str,
    book_id: uuid.UUID,
    base_currency: str,
    entries: Sequence[FeedEntry],
    mapping: ErpMapping,
) -> bytes:
    settings = effective_settings(fmt, mapping.settings)
    if fmt == "jsonl":
        return _jsonl(book_id, entries)
    rows: list[list[str]] = [HEADERS[fmt]]
    if fmt == "netsuite":
        rows += _netsuite(book_id, base_currency, entries, mapping, settings)
    elif fmt == "quickbooks":
        rows += _quickbooks(book_id, entries, mapping, settings)
    elif fmt == "xero":
        rows += _xero(book_id, base_currency, entries, mapping, settings)
    else:
        rows += _sap(book_id, entries, mapping, settings)
    return _csv(rows)


# Sorted keys, compact, UTF-8 unescaped: the bytes json.dumps(sort_keys=True,
# separators=(",", ":"), ensure_ascii=False) gives for these strings, ints and
# nulls, at a fraction of its per-row cost (tests compare the two).
_JSON = msgspec.json.Encoder(order="sorted")


def _json_object(value: dict[str, Any]) -> Any:
    """Metadata and dimensions are free JSON (floats, big ints): json.dumps renders them,
    as before, and msgspec inserts that text as is."""
    if not value:
        return value
    return msgspec.Raw(
        json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    )


def _jsonl(book_id: uuid.UUID, entries: Sequence[FeedEntry]) -> bytes:
    encode = _JSON.encode
    out: list[bytes] = []
    for e in entries:
        lines = []
        for p in e.postings:
            amount = p.amount
            positive = amount > 0
            lines.append(
                {
                    "line_no": p.line_no,
                    "account": p.account,
                    "account_code": p.code,
                    "amount": format(amount, "f"),
                    "currency": p.currency,
                    "debit": format(amount, "f") if positive else None,
                    "credit": None if positive else format(-amount, "f"),
                    "customer": p.customer,
                    "customer_name": p.customer_name,
                    "document": p.document,
                    "dimensions": _json_object(p.dimensions),
                }
            )
        out.append(
            encode(
                {
                    "external_id": external_id(book_id, e.seq),
                    "seq": e.seq,
                    "seal_hash": e.seal_hash,
                    "entry_id": str(e.entry_id),
                    "effective_date": e.effective_date.isoformat(),
                    "recorded_at": e.recorded_at.isoformat(),
                    "memo": e.memo,
                    "metadata": _json_object(e.metadata),
                    "reverses": str(e.reverses) if e.reverses else None,
                    "lines": lines,
                }
            )
        )
        out.append(b"\n")
    return b"".join(out)


def _date(day: date, settings: dict[str, str]) -> str:
    return day.strftime(DATE_FORMATS[settings["date_format"]])


class _Pieces:
    """A batch's repeated cells, computed once: an entry's posting lines share its date
    and memo, and a book has few accounts and customers."""

    def __init__(self, mapping: ErpMapping, date_format: str, *, by_name: bool = False) -> None:
        self.mapping = mapping
        self.date_format = date_format
        self.by_name = by_name
        self.dates: dict[date, str] = {}
        self.codes: dict[uuid.UUID, str] = {}
        self.labels: dict[str | None, str] = {}

    def date(self, day: date) -> str:
        text = self.dates.get(day)
        if text is None:
            text = self.dates[day] = day.strftime(self.date_format)
        return text

    def code(self, posting: FeedPosting) -> str:
        # an account id names one account (one name and code) in a batch
        code = self.codes.get(posting.account_id)
        if code is None:
            code = self.codes[posting.account_id] = _code(
                self.mapping, posting, by_name=self.by_name
            )
        return code

    def label(self, posting: FeedPosting) -> str:
        value = posting.customer_label
        text = self.labels.get(value)
        if text is None:
            text = self.labels[value] = _text(value)
        return text


def _reversal(entry: FeedEntry) -> str | None:
    return f"reversal of {entry.reverses}" if entry.reverses is not None else None


def _line(document: str | None, reversal: str | None, memo: str) -> str:
    """A line's text: the posting's document and the entry's reversal note (computed once
    per entry), else the entry's memo (folded, also once per entry)."""
    if document:
        text = _text(document)
        line = f"{text} {reversal}" if reversal is not None else text
    else:
        line = reversal or ""
    return line or memo


def _netsuite(
    book_id: uuid.UUID,
    base: str,
    entries: Sequence[FeedEntry],
    mapping: ErpMapping,
    settings: dict[str, str],
) -> list[list[str]]:
    rows = []
    pieces = _Pieces(mapping, DATE_FORMATS[settings["date_format"]])
    subsidiary = settings["subsidiary"]
    for e in entries:
        ext = external_id(book_id, e.seq)
        day = pieces.date(e.effective_date)
        memo = _text(e.memo)
        reversal = _reversal(e)
        for p in e.postings:
            amount = p.amount
            positive = amount > 0
            rows.append(
                [
                    ext,
                    day,
                    subsidiary,
                    p.currency,
                    "1" if p.currency == base else "",
                    pieces.code(p),
                    format(amount, "f") if positive else "",
                    "" if positive else format(-amount, "f"),
                    memo,
                    pieces.label(p),
                    _line(p.document, reversal, memo),
                ]
            )
    return rows


def _quickbooks(
    book_id: uuid.UUID,
    entries: Sequence[FeedEntry],
    mapping: ErpMapping,
    settings: dict[str, str],
) -> list[list[str]]:
    rows = []
    pieces = _Pieces(mapping, DATE_FORMATS[settings["date_format"]], by_name=True)
    for e in entries:
        ext = external_id(book_id, e.seq)
        day = pieces.date(e.effective_date)
        memo = _text(e.memo)
        reversal = _reversal(e)
        for p in e.postings:
            debit, credit = _debit_credit(p.amount)
            rows.append(
                [
                    ext,
                    day,
                    pieces.code(p),
                    debit,
                    credit,
                    _text(" ".join(filter(None, [e.memo, _line(p.document, reversal, memo)]))),
                    pieces.label(p),
                    p.currency,
                ]
            )
    return rows


def _xero(
    book_id: uuid.UUID,
    base: str,
    entries: Sequence[FeedEntry],
    mapping: ErpMapping,
    settings: dict[str, str],
) -> list[list[str]]:
    rows = []
    pieces = _Pieces(mapping, DATE_FORMATS[settings["date_format"]])
    tracking = settings["tracking_name"]
    dimension = settings["tracking_dimension"]
    for e in entries:
        foreign = sorted({p.currency for p in e.postings if p.currency != base})
        if foreign:
            raise not_in_base_currency(e.seq, foreign, base)
        narration = _text(f"{external_id(book_id, e.seq)} {e.memo}")
        day = pieces.date(e.effective_date)
        memo = _text(e.memo)
        reversal = _reversal(e)
        for p in e.postings:
            option = ""
            if tracking:
                value = p.customer_label if dimension == "customer" else p.dimensions.get(dimension)
                option = _text(str(value)) if value is not None else ""
            rows.append(
                [
                    narration,
                    day,
                    _line(p.document, reversal, memo),
                    pieces.code(p),
                    settings["tax_line_rate"] if _is_tax(p) else settings["tax_rate"],
                    _amount(p.amount),
                    tracking if option else "",
                    option,
                ]
            )
    return rows


def not_in_base_currency(seq: int, foreign: list[str], base: str) -> UnsupportedCurrency:
    """Xero's refusal of an entry in other currencies than the base one (sorted)."""
    return UnsupportedCurrency(
        f"entry seq {seq} is in {', '.join(foreign)}: Xero manual journals take only"
        f" the base currency ({base}); use the netsuite, quickbooks, sap or jsonl format",
        seq=seq,
        currencies=foreign,
    )


def _sap(
    book_id: uuid.UUID,
    entries: Sequence[FeedEntry],
    mapping: ErpMapping,
    settings: dict[str, str],
) -> list[list[str]]:
    rows = []
    pieces = _Pieces(mapping, "%Y%m%d")
    company, doc_type = settings["company_code"], settings["doc_type"]
    for e in entries:
        day = pieces.date(e.effective_date)
        rows.append(
            [
                "H",
                company,
                day,
                day,
                doc_type,
                f"AB-{e.seq}"[:16],
                external_id(book_id, e.seq)[:25],
                "",
                "",
                "",
                "",
                "",
            ]
        )
        memo = _text(e.memo)
        reversal = _reversal(e)
        for item, p in enumerate(e.postings, start=1):
            rows.append(
                [
                    "L",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    f"{item:010d}",
                    pieces.code(p),
                    p.currency,
                    format(p.amount, "f"),
                    _line(p.document, reversal, memo)[:50],
                ]
            )
    return rows
