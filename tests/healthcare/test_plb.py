"""PLB provider-level adjustments post to their own accounts by reason: interest
(L6) to Income:Payer-Interest, a forward balance (FB) to
Liabilities:Payer-Forward-Balances (zero again once the payer releases it),
levies and the rest to Income:Contra:Provider-Adjustments."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from adapters.runtime import Runtime
from adapters.services import verify_everything
from billing.healthcare.remittance import plb_account
from tests.billing.test_payments import balances, entry_lines
from tests.conftest import BookFixture
from tests.healthcare.test_http import TODAY, _post, practice, remittance_entries, upload
from tests.healthcare.x12_samples import envelope_835, worked_claim_835

D = Decimal


def test_plb_reasons_have_their_own_accounts() -> None:
    assert plb_account("L6") == "Income:Payer-Interest"
    assert plb_account("FB") == "Liabilities:Payer-Forward-Balances"
    for other in ("LE", "WO", "CV", "72"):
        assert plb_account(other) == "Income:Contra:Provider-Adjustments"


def test_interest_forward_balance_and_levy_post_to_their_accounts(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    """The worked claim paid 56.00; the payer adds 2.50 interest (L6 −2.50), takes a
    20.00 forward balance (FB 20.00) and a 5.00 levy (LE 5.00): BPR 33.50."""
    key = sim_book.admin_key
    ids = practice(client, key)
    claim = _post(client, key, "/v1/claims", {"encounter": ids["encounter"]})
    plb = "PLB*1234567893*20261231*L6:CLAIMINT*-2.50*FB:PRIOR-OVERPAY*20.00*LE:LEVY9*5.00"
    text = worked_claim_835(claim["control_number"], "PLB-1", total="33.50", extra=(plb,))
    answer = upload(client, key, text)
    assert answer.status_code == 201, answer.text
    (remittance,) = answer.json()["remittances"]
    assert remittance["provider_adjustments"] == [
        {"reason": "L6", "reference": "CLAIMINT", "amount": "-2.50"},
        {"reason": "FB", "reference": "PRIOR-OVERPAY", "amount": "20.00"},
        {"reason": "LE", "reference": "LEVY9", "amount": "5.00"},
    ]
    with runtime.connection() as conn:
        _claim_entry, payment_entry = remittance_entries(conn, sim_book.id, remittance["id"])
        assert entry_lines(conn, sim_book.id, payment_entry) == [
            ("Assets:Bank:Operating", "33.50"),
            ("Assets:Clearing:Remittances", "-56.00"),
            ("Income:Contra:Provider-Adjustments", "5.00"),  # LE levy
            ("Income:Payer-Interest", "-2.50"),  # L6 interest
            ("Liabilities:Payer-Forward-Balances", "20.00"),  # FB taken
        ]
        dims = conn.execute(
            "select a.name, p.dimensions from postings p join accounts a on a.id = p.account_id"
            " where p.entry_id = %s and p.dimensions ? 'plb' order by a.name",
            (payment_entry,),
        ).fetchall()
        assert [(name, d["plb"], d["reference"]) for name, d in dims] == [
            ("Income:Contra:Provider-Adjustments", "LE", "LEVY9"),
            ("Income:Payer-Interest", "L6", "CLAIMINT"),
            ("Liabilities:Payer-Forward-Balances", "FB", "PRIOR-OVERPAY"),
        ]
        assert balances(conn, sim_book.id, TODAY) == {
            "Assets:Bank:Operating": D("33.50"),
            "Assets:Receivable:Patient": D("64.00"),
            "Income:Contra:Contractual-Adjustments": D("80.00"),
            "Income:Contra:Provider-Adjustments": D("5.00"),
            "Income:Patient-Services": D("-200.00"),
            "Income:Payer-Interest": D("-2.50"),
            "Liabilities:Payer-Forward-Balances": D("20.00"),
        }
    # The next remittance releases the forward balance (FB −20.00, no claims): BPR 20.00.
    release = envelope_835(
        [
            "BPR*I*20.00*C*ACH*CCP*01*999999999*DA*123456*1512345678**01*999988880*DA*98765*20260305",
            "TRN*1*PLB-2*1512345678",
            "N1*PR*ACME HEALTH",
            "PLB*1234567893*20261231*FB:PRIOR-OVERPAY*-20.00",
        ]
    )
    answer = upload(client, key, release)
    assert answer.status_code == 201, answer.text
    with runtime.connection() as conn:
        (payment_entry,) = remittance_entries(
            conn, sim_book.id, answer.json()["remittances"][0]["id"]
        )
        assert entry_lines(conn, sim_book.id, payment_entry) == [
            ("Assets:Bank:Operating", "20.00"),
            ("Liabilities:Payer-Forward-Balances", "-20.00"),
        ]
        found = balances(conn, sim_book.id, TODAY)
        assert "Liabilities:Payer-Forward-Balances" not in found  # nets to zero
        assert found["Assets:Bank:Operating"] == D("53.50")
        assert verify_everything(conn, sim_book.id) == []
