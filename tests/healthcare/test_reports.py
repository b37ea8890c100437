"""Revenue-cycle reports on a hand-built book, with exact figures (HTTP and CLI):
denial rate by payer and CARC, days in AR, net collection rate, expected vs
actual payment against the payer's contracted amounts.

The book: one payer whose contract allows 99213 at 75.00 and 87880 at 50.00.
Encounter 1 (Feb 10, 200.00) is paid as ACCOUNTING.md's worked claim (allowed
120.00, paid 56.00, PR 64.00, CO-45 80.00); encounter 2 (Feb 12, 200.00) is
denied (CO-29); encounter 3 (Feb 20, 120.00) is submitted, not adjudicated. The
patient of encounter 1 pays their 64.00.
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any

from adapters.reconciliation.matching import BankLine, line_references
from adapters.runtime import Runtime
from billing.healthcare.reports import days_in_ar, expected_allowed, ratio
from tests.conftest import BookFixture, make_book
from tests.healthcare.test_http import TODAY, _post, upload
from tests.healthcare.x12_samples import envelope_835, worked_claim_835
from tests.integration.http_fixtures import assert_problem, auth
from tests.integration.test_cli import cli  # noqa: F401  (fixture)

D = Decimal


def denial_835(pcn: str, trace: str) -> str:
    return envelope_835(
        [
            "BPR*I*0*C*NON************20260301",
            f"TRN*1*{trace}*1512345678",
            "N1*PR*ACME",
            "LX*1",
            f"CLP*{pcn}*4*200.00*0**12*PAYERCLM9",
            "CAS*CO*29*200.00",
        ]
    )


def hand_built_book(client: Any, key: str) -> dict[str, Any]:
    address = {"line1": "1 Main St", "city": "Springfield", "state": "IL", "postal_code": "62701"}
    patient = _post(client, key, "/v1/patients", {"first_name": "Zebulon",
                    "last_name": "Quixotewright", "date_of_birth": "1980-01-02", "gender": "M",
                    "address": address})  # fmt: skip
    payer = _post(client, key, "/v1/payers", {"name": "Acme Health", "payer_id": "ACME1"})
    other = _post(client, key, "/v1/payers", {"name": "Other Plan", "payer_id": "OTH1"})
    _post(client, key, "/v1/coverages", {"patient": patient["id"], "payer": "ACME1",
          "member_id": "MEMBER-1", "effective_from": "2026-01-01"})  # fmt: skip
    provider = _post(client, key, "/v1/providers", {"name": "Good Health Clinic",
                     "npi": "1234567893", "tax_id": "12-3456789", "taxonomy": "207Q00000X",
                     "address": {**address, "postal_code": "627011234"}})  # fmt: skip
    schedule = _post(
        client,
        key,
        "/v1/fee-schedules",
        {
            "name": "Contracted",
            "items": [
                {"code": "99213", "amount": "120.00",
                 "allowed": {"ACME1": "75.00", other["id"]: "60.00"}},
                {"code": "87880", "amount": "80.00", "allowed": {"ACME1": "50.00"}},
            ],
        },
    )  # fmt: skip
    assert schedule["items"][0]["code"] == "87880"
    assert schedule["items"][0]["allowed"] == {payer["id"]: "50.00"}
    assert schedule["items"][1]["allowed"] == {payer["id"]: "75.00", other["id"]: "60.00"}

    def encounter(day: str, codes: list[str]) -> str:
        found = _post(client, key, "/v1/encounters", {"patient": patient["id"],
                      "provider": provider["id"], "date_of_service": day,
                      "diagnoses": ["J02.9"], "charges": [{"code": c} for c in codes]})  # fmt: skip
        return str(found["id"])

    claims = []
    for day, codes in (("2026-02-10", ["99213", "87880"]), ("2026-02-12", ["99213", "87880"]),
                       ("2026-02-20", ["99213"])):  # fmt: skip
        claim = _post(client, key, "/v1/claims", {"encounter": encounter(day, codes)})
        _post(client, key, f"/v1/claims/{claim['id']}/submit", {}, 200)
        claims.append(claim)
    assert upload(client, key, worked_claim_835(claims[0]["control_number"])).status_code == 201
    assert upload(client, key, denial_835(claims[1]["control_number"], "DENY-1")).status_code == 201
    _post(client, key, f"/v1/patients/{patient['id']}/payments", {"amount": "64.00"})
    return {"payer": payer["id"], "patient": patient["id"], "claims": [c["id"] for c in claims]}


def test_ratios_round_half_up() -> None:
    assert ratio(D(1), D(3)) == D("0.3333") and ratio(D(2), D(3)) == D("0.6667")
    assert ratio(D(1), D(0)) is None
    assert days_in_ar(D(184), D(520), 30) == D("10.6")
    lines = [("99213", "25", D(1)), ("87880", "", D(2))]
    assert expected_allowed(lines, {("99213", ""): D(75), ("87880", ""): D(50)}) == D(175)
    assert expected_allowed(lines, {("99213", "25"): D(80)}) is None


def test_the_trn_segment_of_an_ach_addenda_is_a_line_reference() -> None:
    line = BankLine("1", date(2026, 3, 2), D("56.00"), "USD", "ACH-1", None, "ACME",
                    "HCCLAIMPMT TRN*1*12345678*1512345678\\")  # fmt: skip
    assert line_references(line) == {"ACH-1", "12345678"}
    plain = BankLine("2", date(2026, 3, 2), D("56.00"), "USD", "ACH-2", None, None, "TRN 1")
    assert line_references(plain) == {"ACH-2"}


def test_revenue_cycle_reports_on_a_hand_built_book(
    client: Any,
    cli: Any,  # noqa: F811
    runtime: Runtime,
) -> None:
    book: BookFixture = make_book(runtime, "USD", TODAY)
    key = book.admin_key
    ids = hand_built_book(client, key)

    def get(path: str) -> Any:
        answer = client.get(path, headers=auth(key))
        assert answer.status_code == 200, answer.text
        return answer.json()

    denials = get("/v1/reports/denials?from=2026-03-01&to=2026-03-01")
    assert (denials["claims_adjudicated"], denials["claims_denied"], denials["denial_rate"]) == (
        2,
        1,
        "0.5000",
    )
    assert denials["by_carc"] == [
        {"group": "CO", "carc": "29", "claims": 1, "rate": "0.5000", "amount": "200.00"}
    ]
    (acme,) = denials["payers"]
    assert (acme["payer"], acme["name"], acme["denial_rate"], acme["denied_amount"]) == (
        ids["payer"],
        "Acme Health",
        "0.5000",
        "200.00",
    )
    assert get("/v1/reports/denials?from=2026-02-01&to=2026-02-28")["payers"] == []

    dar = get("/v1/reports/days-in-ar?as_of=2026-03-01&days=30")
    # AR: encounter 3's 120.00 with the payer (1 and 2 settled; the patient paid 64.00);
    # charges 520.00 over 30 days: 17.33 a day; 120 × 30 ÷ 520 = 6.92 → 6.9 days.
    assert {k: dar[k] for k in ("ar", "charges", "average_daily_charges", "days_in_ar")} == {
        "ar": "120.00",
        "charges": "520.00",
        "average_daily_charges": "17.33",
        "days_in_ar": "6.9",
    }
    assert dar["window"] == {"from": "2026-01-31", "to": "2026-03-01", "days": 30}
    assert get("/v1/reports/days-in-ar?as_of=2026-01-15")["days_in_ar"] is None  # no charges

    ncr = get("/v1/reports/net-collection-rate?from=2026-02-01&to=2026-03-01")
    # (56.00 payer + 64.00 patient) ÷ (520.00 − 80.00 contractual) = 120 ÷ 440
    assert {k: ncr[k] for k in ("charges", "contractual_adjustments", "payer_payments",
                                "patient_payments", "payments", "net_collection_rate")} == {
        "charges": "520.00",
        "contractual_adjustments": "80.00",
        "payer_payments": "56.00",
        "patient_payments": "64.00",
        "payments": "120.00",
        "net_collection_rate": "0.2727",
    }  # fmt: skip

    expected = get("/v1/reports/expected-payments?from=2026-02-01&to=2026-02-28")
    (row,) = expected["payers"]
    # Contract 75 + 50 = 125.00 allowed per visit. Claim 1: the 835 allowed 120.00
    # (56.00 paid + 64.00 PR), expected payment 125 − 64 = 61.00, paid 56.00 (−5.00).
    # Claim 2, denied: expected 125.00, paid 0 (−125.00). Claim 3 is not adjudicated.
    assert {k: v for k, v in row.items() if k != "detail"} == {
        "payer": ids["payer"],
        "name": "Acme Health",
        "claims": 2,
        "claims_without_contract": 0,
        "expected_allowed": "250.00",
        "actual_allowed": "120.00",
        "expected_payment": "186.00",
        "actual_payment": "56.00",
        "variance": "-130.00",
    }
    assert [(d["claim"], d["variance"]) for d in row["detail"]] == [
        (ids["claims"][0], "-5.00"),
        (ids["claims"][1], "-125.00"),
    ]
    assert_problem(
        client.get("/v1/reports/denials?from=2026-03-01&to=2026-02-01", headers=auth(key)), 422
    )
    assert_problem(client.get("/v1/reports/days-in-ar?days=0", headers=auth(key)), 400)

    # The CLI prints the same documents.
    book_arg = ("--book", str(book.id), "--format", "json")
    for command, http in (
        (("report", "denials", "--from", "2026-03-01", "--to", "2026-03-01"), denials),
        (("report", "days-in-ar", "--as-of", "2026-03-01", "--days", "30"), dar),
        (("report", "net-collection-rate", "--from", "2026-02-01", "--to", "2026-03-01"), ncr),
        (("report", "expected-payments", "--from", "2026-02-01", "--to", "2026-02-28"), expected),
        (("report", "ar-by-payer", "--as-of", "2026-03-01"),
         get("/v1/reports/ar-by-payer?as_of=2026-03-01")),
    ):  # fmt: skip
        done = cli(*command, *book_arg)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == http
    statement = cli("patients", "statement", "--patient", ids["patient"], *book_arg)
    assert statement.returncode == 0, statement.stderr
    assert json.loads(statement.stdout)["totals"]["amount_due"] == "0.00"
    html = cli(
        "patients", "statement", "--patient", ids["patient"], "--html", "--book", str(book.id)
    )
    assert "Quixotewright" in html.stdout and "Amount due: 0.00 USD" in html.stdout
    wrote = cli("patients", "write-off-small-balances", "--max-amount", "5.00", *book_arg)
    assert wrote.returncode == 0 and json.loads(wrote.stdout)["total"] == "0.00"
    log = client.get(f"/v1/patients/{ids['patient']}/access-log", headers=auth(key)).json()
    cli_reads = [e["endpoint"] for e in log["data"] if e["actor"] == "cli"]
    assert cli_reads == ["activebilling patients statement"] * 2
