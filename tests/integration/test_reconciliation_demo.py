"""Auto-match on a bank statement generated from the billing demo book.

Bank lines for the demo's bank receipts and refunds (transfers echo the
payment reference, checks carry the invoice number and the payer's name),
plus noise: a bank fee, an unknown receipt, and a receipt off by a cent.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest

from adapters.demo import run_demo
from adapters.runtime import Runtime
from tests.integration.http_fixtures import auth, open_client
from tests.integration.test_reconciliation_matching import camt053

pytestmark = pytest.mark.slow


@pytest.fixture
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


def test_auto_match_rate_on_the_demo_book(runtime: Runtime, client: Any) -> None:
    summary = run_demo(runtime, customers_count=20, months=3, seed=11, start=date(2026, 1, 1))
    book_id = uuid.UUID(str(summary["book_id"]))
    with runtime.connection() as conn:
        rows = conn.execute(
            "select p.amount, p.effective_date, e.metadata from postings p"
            " join accounts a on a.book_id = p.book_id and a.id = p.account_id"
            " join journal_entries e on e.book_id = p.book_id and e.id = p.entry_id"
            " where p.book_id = %s and a.name = 'Assets:Bank:Operating'"
            # Customers' payments and refunds: what a bank line names an invoice or payer
            # for. (Gateway payouts, remittance EFTs and wallet top-ups have their own
            # matching rules and tests.)
            " and e.metadata->>'kind' in ('payment', 'refund')"
            " and p.currency = 'USD'"  # the statement below is one USD account's
            " order by e.recorded_at",
            (book_id,),
        ).fetchall()
    lines: list[tuple[str, str, str, str | None, str | None, str | None]] = []
    off_by_a_cent = None
    for n, (amount, day, metadata) in enumerate(rows):
        booked = (day + timedelta(days=1 + n % 2)).isoformat()
        numbers = " ".join(metadata.get("invoice_numbers", []))
        reference = metadata.get("bank_reference")
        name = metadata.get("customer_name")
        text = f"{amount}"
        if reference:
            lines.append((text, booked, f"BK{n:05d}", reference, name, None))
        elif off_by_a_cent is None and amount > 0:
            off_by_a_cent = f"BK{n:05d}"
            lines.append(
                (f"{amount + Decimal('0.01')}", booked, off_by_a_cent, None, name, numbers)
            )
        else:
            lines.append((text, booked, f"BK{n:05d}", None, name, f"Payment {numbers}".strip()))
    lines += [
        ("-12.50", "2026-01-31", "BK-FEE", None, "Bank", "Account fee"),
        ("77.00", "2026-01-20", "BK-UNKNOWN", None, "Somebody", "no reference"),
    ]
    uploaded = client.post(
        "/v1/bank-statements",
        files={"file": ("demo.xml", camt053(lines))},
        data={"account": "Assets:Bank:Operating"},
        headers=auth(str(summary["api_key"])),
    )
    assert uploaded.status_code == 201, uploaded.text
    result = client.post(
        "/v1/reconciliation/auto-match",
        json={"statement": uploaded.json()["id"]},
        headers=auth(str(summary["api_key"])),
    ).json()
    print(
        f"\ndemo book auto-match rate: {result['matched_lines']}/{result['lines_considered']}"
        f" = {Decimal(result['match_rate']):.2%} by rule {result['by_rule']}"
    )
    refs = {x["id"]: x["bank_reference"] for x in uploaded.json()["lines"]}
    matched = {refs[line] for m in result["matches"] for line in m["lines"]}
    # The noise stays unmatched; every receipt the bank reports correctly is matched.
    assert {"BK-FEE", "BK-UNKNOWN", off_by_a_cent} & matched == set()
    receipts = {ref for amount, _, ref, _, _, _ in lines if not amount.startswith("-")}
    assert receipts - {"BK-UNKNOWN", off_by_a_cent} <= matched
    assert result["lines_considered"] == len(lines)
