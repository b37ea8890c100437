"""billing.direct_debit as worked examples: mandate states after return codes,
SEC codes, collection dates, end-to-end ids and the return entry's postings."""

from __future__ import annotations

from datetime import date

import pytest

from billing.direct_debit import (
    collection_date,
    end_to_end_id,
    mandate_state_after,
    return_entry,
    sec_code,
    settlement_entry,
)
from ledger.money import Money


@pytest.mark.parametrize(
    ("code", "state", "retry"),
    [
        ("AM04", "active", True),
        ("MS02", "active", True),
        ("R01", "active", True),
        ("AC04", "inactive", False),
        ("R02", "inactive", False),
        ("R03", "inactive", False),
        ("MD06", "revoked", False),
        ("R10", "revoked", False),
        ("r29", "revoked", False),
        (None, "active", True),
    ],
)
def test_return_code_sets_the_mandate_state(code: str | None, state: str, retry: bool) -> None:
    outcome = mandate_state_after(code)
    assert (outcome.mandate_state, outcome.retry) == (state, retry)


def test_individuals_are_ppd_and_companies_ccd() -> None:
    assert (sec_code("individual"), sec_code("company")) == ("PPD", "CCD")


def test_a_friday_run_due_today_collects_on_monday() -> None:
    assert collection_date(date(2026, 3, 6), date(2026, 3, 6)) == date(2026, 3, 9)
    assert collection_date(date(2026, 3, 6), date(2026, 3, 20)) == date(2026, 3, 20)


def test_end_to_end_id_fits_sepa_35_characters() -> None:
    ref = end_to_end_id("0f8e2c1a-1b2c-4d5e-8f90-123456789abc")
    assert ref == "DD0F8E2C1A1B2C4D5E8F90123456789ABC" and len(ref) == 34


def test_return_of_200_puts_ar_back_and_takes_clearing_out() -> None:
    entry = return_entry(
        "t1",
        "p1",
        "c1",
        "i1",
        date(2026, 3, 5),
        "Assets:Clearing:SEPA",
        Money("200.00", "EUR"),
        "AM04",
    )
    assert [(p.account, str(p.amount), p.document, p.dimensions) for p in entry.postings] == [
        ("Assets:Receivable:Trade", "200.00", "invoice:i1", {"via": "payment:p1"}),
        ("Assets:Clearing:SEPA", "-200.00", "payment:p1", {"via": "collection_return:t1"}),
    ]
    assert entry.idempotency_key == "collection_return:t1"


def test_settlement_is_bank_against_clearing() -> None:
    entry = settlement_entry(
        "r1", date(2026, 3, 4), "Assets:Clearing:ACH", Money("150.00", "USD"), "CR1"
    )
    assert [(p.account, str(p.amount)) for p in entry.postings] == [
        ("Assets:Bank:Operating", "150.00"),
        ("Assets:Clearing:ACH", "-150.00"),
    ]
    with pytest.raises(ValueError):
        settlement_entry("r1", date(2026, 3, 4), "Assets:Clearing:ACH", Money("-1", "USD"), "x")
