"""The pure auto-matching rules, over plain data."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from adapters.reconciliation.matching import (
    BankLine,
    BookPosting,
    auto_match,
    book_posting,
    invoice_tokens,
    names_agree,
)

D = date(2026, 3, 10)


def line(line_id: str, amount: str, days: int = 0, **extra: str) -> BankLine:
    return BankLine(line_id, D + timedelta(days=days), Decimal(amount), "EUR", **extra)


def posting(entry: str, amount: str, days: int = 0, **extra: object) -> BookPosting:
    return book_posting(entry_id=entry, line_no=1, effective_date=D + timedelta(days=days),
                        amount=Decimal(amount), currency="EUR", **extra)  # type: ignore[arg-type]  # fmt: skip


Found = set[tuple[str, tuple[str, ...], tuple[str, ...]]]


def pairs(lines: list[BankLine], postings: list[BookPosting]) -> Found:
    result = auto_match(lines, postings)
    return {(m.rule, m.line_ids, tuple(e for e, _ in m.postings)) for m in result.matches}


def test_bank_reference_and_end_to_end_id() -> None:
    lines = [
        line("L1", "10.00", bank_reference="REF-0001"),
        line("L2", "20.00", end_to_end_id="e2e-9"),
    ]
    postings = [posting("E1", "10.00", metadata={"bank_reference": "ref-0001"}),
                posting("E2", "20.00", idempotency_key="E2E-9")]  # fmt: skip
    assert pairs(lines, postings) == {
        ("bank_reference", ("L1",), ("E1",)),
        ("bank_reference", ("L2",), ("E2",)),
    }


def test_minted_references_never_match() -> None:
    lines = [line("L1", "10.00", bank_reference="sha256:abcd")]
    assert (
        pairs(lines, [posting("E1", "10.00", metadata={"bank_reference": "sha256:abcd"})]) == set()
    )


def test_reference_with_another_amount_is_not_matched() -> None:
    lines = [line("L1", "10.01", bank_reference="REF-0001")]
    assert pairs(lines, [posting("E1", "10.00", document="payment:REF-0001")]) == set()


def test_invoice_number_in_remittance_one_to_many() -> None:
    lines = [line("L1", "300.00", remittance_info="Inv. INV-2026-000130/INV-2026-000131")]
    postings = [posting("E1", "100.00", document="invoice:INV-2026-000130"),
                posting("E2", "200.00", memo="paid INV 2026-000131, INV-2026-000131")]  # fmt: skip
    assert pairs(lines, postings) == {("invoice_number", ("L1",), ("E1", "E2"))}


def test_amount_date_counterparty_window_and_names() -> None:
    lines = [line("L1", "42.00", 3, counterparty_name="GLOBEX CORP."),
             line("L2", "42.00", 4, counterparty_name="Globex")]  # fmt: skip
    postings = [posting("E1", "42.00", metadata={"customer_name": "Globex Corporation"})]
    # L2 is four days away: outside the window, so only L1 is a candidate.
    assert pairs(lines, postings) == {("amount_date_counterparty", ("L1",), ("E1",))}


def test_ambiguous_candidates_are_left_alone() -> None:
    lines = [line("L1", "50.00", counterparty_name="Initech")]
    postings = [posting("E1", "50.00", memo="Payment from Initech"),
                posting("E2", "50.00", 1, memo="Payment from Initech")]  # fmt: skip
    assert pairs(lines, postings) == set()
    # two lines for one posting: also ambiguous
    lines = [line("L1", "50.00", counterparty_name="Initech"),
             line("L2", "50.00", 1, counterparty_name="Initech")]  # fmt: skip
    assert pairs(lines, postings[:1]) == set()


def test_many_to_one_by_reference_and_reversal_pairs() -> None:
    lines = [
        line("L1", "150.00", end_to_end_id="BATCH-77"),
        line("L2", "250.00", end_to_end_id="BATCH-77"),
    ]
    postings = [posting("E1", "400.00", metadata={"bank_reference": "BATCH-77"}),
                posting("E8", "80.00"), posting("E9", "-80.00", reverses="E8")]  # fmt: skip
    assert pairs(lines, postings) == {
        ("bank_reference", ("L1", "L2"), ("E1",)),
        ("reversal_pair", (), ("E8", "E9")),
    }


def test_unmatched_sides_are_reported() -> None:
    result = auto_match([line("L1", "-12.50")], [posting("E1", "500.00")])
    assert (result.matches, result.unmatched_lines, result.unmatched_postings) == (
        [],
        ["L1"],
        [("E1", 1)],
    )


def test_helpers() -> None:
    assert invoice_tokens("Payment INV-2026-000123, thanks") == {"INV2026000123"}
    assert invoice_tokens("no numbers here 2026") == set()
    assert names_agree("ACME GmbH", posting("E", "1", customer="Acme"))
    assert not names_agree("Acme", posting("E", "1", customer="Apex"))
    assert not names_agree(None, posting("E", "1", customer="Acme"))
