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
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from adapters.exports.errors import InvalidMapping, UnsupportedCurrency
from adapters.exports.journal_feed import ErpMapping, FeedEntry, FeedPosting, external_id

DATE_FORMATS = {"MM/DD/YYYY": "%m/%d/%Y", "DD/MM/YYYY": "%d/%m/%Y", "YYYY-MM-DD": "%Y-%m-%d"}

DEFAULTS: dict[str, dict[str, str]] = {
    "netsuite": {"subsidiary": "", "date_format": "MM/DD/YYYY"},
    "quickbooks": {"date_format": "MM/DD/YYYY"},
    "xero": {
        "date_format": "DD/MM/YYYY",
        "tax_rate": "Tax Exempt",
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


def _line_text(entry: FeedEntry, posting: FeedPosting) -> str:
    parts = [_text(posting.document)] if posting.document else []
    if entry.reverses is not None:
        parts.append(f"reversal of {entry.reverses}")
    return " ".join(parts) or _text(entry.memo)


def _csv(rows: Sequence[Sequence[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


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


def _jsonl(book_id: uuid.UUID, entries: Sequence[FeedEntry]) -> bytes:
    out: list[str] = []
    for e in entries:
        document = {
            "external_id": external_id(book_id, e.seq),
            "seq": e.seq,
            "seal_hash": e.seal_hash,
            "entry_id": str(e.entry_id),
            "effective_date": e.effective_date.isoformat(),
            "recorded_at": e.recorded_at.isoformat(),
            "memo": e.memo,
            "metadata": e.metadata,
            "reverses": str(e.reverses) if e.reverses else None,
            "lines": [
                {
                    "line_no": p.line_no,
                    "account": p.account,
                    "account_code": p.code,
                    "amount": _amount(p.amount),
                    "currency": p.currency,
                    "debit": _debit_credit(p.amount)[0] or None,
                    "credit": _debit_credit(p.amount)[1] or None,
                    "customer": p.customer,
                    "document": p.document,
                    "dimensions": p.dimensions,
                }
                for p in e.postings
            ],
        }
        out.append(
            json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
        )
    return "".join(out).encode("utf-8")


def _date(day: date, settings: dict[str, str]) -> str:
    return day.strftime(DATE_FORMATS[settings["date_format"]])


def _netsuite(
    book_id: uuid.UUID,
    base: str,
    entries: Sequence[FeedEntry],
    mapping: ErpMapping,
    settings: dict[str, str],
) -> list[list[str]]:
    rows = []
    for e in entries:
        ext = external_id(book_id, e.seq)
        for p in e.postings:
            debit, credit = _debit_credit(p.amount)
            rows.append(
                [
                    ext,
                    _date(e.effective_date, settings),
                    settings["subsidiary"],
                    p.currency,
                    "1" if p.currency == base else "",
                    _code(mapping, p),
                    debit,
                    credit,
                    _text(e.memo),
                    _text(p.customer),
                    _line_text(e, p),
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
    for e in entries:
        ext = external_id(book_id, e.seq)
        for p in e.postings:
            debit, credit = _debit_credit(p.amount)
            rows.append(
                [
                    ext,
                    _date(e.effective_date, settings),
                    _code(mapping, p, by_name=True),
                    debit,
                    credit,
                    _text(" ".join(filter(None, [e.memo, _line_text(e, p)]))),
                    _text(p.customer),
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
    tracking = settings["tracking_name"]
    dimension = settings["tracking_dimension"]
    for e in entries:
        foreign = sorted({p.currency for p in e.postings if p.currency != base})
        if foreign:
            raise UnsupportedCurrency(
                f"entry seq {e.seq} is in {', '.join(foreign)}: Xero manual journals take only"
                f" the base currency ({base}); use the netsuite, quickbooks, sap or jsonl format",
                seq=e.seq,
                currencies=foreign,
            )
        narration = _text(f"{external_id(book_id, e.seq)} {e.memo}")
        for p in e.postings:
            option = ""
            if tracking:
                value = p.customer if dimension == "customer" else p.dimensions.get(dimension)
                option = _text(str(value)) if value is not None else ""
            rows.append(
                [
                    narration,
                    _date(e.effective_date, settings),
                    _line_text(e, p),
                    _code(mapping, p),
                    settings["tax_rate"],
                    _amount(p.amount),
                    tracking if option else "",
                    option,
                ]
            )
    return rows


def _sap(
    book_id: uuid.UUID,
    entries: Sequence[FeedEntry],
    mapping: ErpMapping,
    settings: dict[str, str],
) -> list[list[str]]:
    rows = []
    for e in entries:
        day = e.effective_date.strftime("%Y%m%d")
        rows.append(
            [
                "H",
                settings["company_code"],
                day,
                day,
                settings["doc_type"],
                f"AB-{e.seq}"[:16],
                external_id(book_id, e.seq)[:25],
                "",
                "",
                "",
                "",
                "",
            ]
        )
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
                    _code(mapping, p),
                    p.currency,
                    _amount(p.amount),
                    _line_text(e, p)[:50],
                ]
            )
    return rows
