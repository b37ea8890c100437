"""The journal feed's layouts give the bytes the previous implementation gave, on awkward data.

erp_formats builds rows from per-batch pieces (dates, codes, folded memos) and writes
JSON Lines with msgspec; erp_golden/ holds what the code it replaced wrote.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from adapters.exports import erp_formats
from adapters.exports.feed import ErpMapping, FeedEntry, FeedPosting

BOOK = uuid.UUID("0123abcd-0000-7000-8000-000000000001")
BANK, INCOME, TAX, ODD = (uuid.UUID(int=n) for n in (1, 2, 3, 4))
ACCOUNTS = {
    BANK: ("Assets:Bank:Operating", "1000"),
    INCOME: ('Income:Services, "quoted"', None),
    TAX: ("Liabilities:Tax:VAT", ""),
    ODD: ("Expenses:Café\nnewline", "E\u2028X"),
}
AWKWARD = [
    "",
    " ",
    'say "hi", then\nbye\r\n',
    "tab\there  spaced ",
    "naïve café — 日本語 😀",
    "ctl \x00\x01\x1f\x7f \u2028\u2029 \\ back\\slash",
    "=SUM(A1)",
    "x" * 80,
]
AMOUNTS = ["1500", "-1500", "0.125", "-0.125", "12.34", "-12.34", "0.001", "-1E+3", "100.10"]


def posting(i: int, amount: str, currency: str, text: str) -> FeedPosting:
    account = [BANK, INCOME, TAX, ODD][i % 4]
    name, code = ACCOUNTS[account]
    customer_id = [None, str(uuid.UUID(int=99)), "", text][i % 4]
    return FeedPosting(
        line_no=i + 1,
        account_id=account,
        account=name,
        code=code,
        amount=Decimal(amount),
        currency=currency,
        customer=customer_id,
        document=[None, "", text, "INV-1"][(i + 1) % 4],
        dimensions=[{}, {"region": text, "n": 1.5e16, "big": 10**30}, {"customer": None}][i % 3],
        customer_name=[None, text, ""][i % 3],
    )


def entries() -> list[FeedEntry]:
    out = []
    seq = 0
    for k, text in enumerate(AWKWARD):
        for currency in ("USD", "JPY", "KWD"):
            seq += 1
            lines = [
                posting(k + j, AMOUNTS[(k + j) % len(AMOUNTS)], currency, text) for j in range(4)
            ]
            out.append(
                FeedEntry(
                    seq=seq,
                    seal_hash=f"{seq:064x}",
                    entry_id=uuid.UUID(int=1000 + seq),
                    effective_date=date(2026, 1 + k % 12, 1 + seq % 28),
                    recorded_at=datetime(2026, 2, 3, 4, 5, 6, seq, tzinfo=UTC),
                    memo=text,
                    metadata=[{}, {"note": text, "f": 0.1, "nested": {"b": [1, None], "a": True}}][
                        seq % 2
                    ],
                    reverses=uuid.UUID(int=500 + seq) if seq % 5 in (1, 3) else None,
                    postings=tuple(lines),
                )
            )
    return out


MAPPINGS: list[tuple[str, dict[str, Any]]] = [
    ("netsuite", {}),
    ("netsuite", {"subsidiary": 'Sub, "1"', "date_format": "DD/MM/YYYY"}),
    ("quickbooks", {"date_format": "YYYY-MM-DD"}),
    ("quickbooks", {}),
    ("xero", {"tax_line_rate": "No VAT", "tracking_name": "Cust"}),
    (
        "xero",
        {"tax_line_rate": "No VAT", "tracking_name": "Region", "tracking_dimension": "region"},
    ),
    ("sap", {"company_code": "1000", "doc_type": "DR"}),
    ("jsonl", {}),
]


# What the previous implementation wrote for each case, kept as files (written by it
# once, before it was replaced) rather than as a second copy of the renderer.
GOLDEN = Path(__file__).with_name("erp_golden")


def _golden(case: int, fmt: str, mapped: bool, suffix: str = "") -> bytes:
    return (GOLDEN / f"{case}-{fmt}-{'mapped' if mapped else 'plain'}{suffix}.out").read_bytes()


@pytest.mark.parametrize(("case", "fmt", "settings"), [(n, *m) for n, m in enumerate(MAPPINGS)])
@pytest.mark.parametrize("mapped", [False, True])
def test_layouts_are_byte_identical_to_the_previous_implementation(
    case: int, fmt: str, settings: dict[str, Any], mapped: bool
) -> None:
    codes = {INCOME: '4000 "Svc"', ODD: "ERP, odd"} if mapped else {}
    mapping = ErpMapping(settings, codes)
    batch = entries()
    if fmt == "xero":  # Xero takes the base currency only
        batch = [e for e in batch if e.postings[0].currency == "USD"]
    new = erp_formats.render(fmt, BOOK, "USD", batch, mapping)
    old = _golden(case, fmt, mapped)
    assert new == old
    assert len(new) > 1000  # the data reached the body
    assert erp_formats.render(fmt, BOOK, "USD", [], mapping) == _golden(case, fmt, mapped, "-empty")


def test_xero_still_refuses_a_foreign_currency() -> None:
    batch = [e for e in entries() if e.postings[0].currency == "JPY"][:1]
    with pytest.raises(erp_formats.UnsupportedCurrency):
        erp_formats.render("xero", BOOK, "USD", batch, ErpMapping({}, {}))
