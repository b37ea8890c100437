"""The patient's side after insurance on real PostgreSQL: statements (JSON, HTML),
payment plans with a missed installment, refunds of credit balances, small-balance
write-offs — each with its exact debits and credits — and the 835's payment
reconciled against the bank's EFT line by its trace number."""

from __future__ import annotations

import io
import uuid
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
from pypdf import PdfReader

from adapters.invoice_pdf import pdf_support
from adapters.runtime import Runtime
from billing.healthcare.patients import (
    EncounterFigures,
    installment_schedule,
    plan_progress,
    statement_lines,
)
from ledger.money import Money
from tests.billing.test_payments import balances, entry_lines
from tests.conftest import BookFixture
from tests.healthcare.test_http import TODAY, _post, counts, practice, upload
from tests.healthcare.x12_samples import worked_claim_835
from tests.integration.http_fixtures import assert_problem, auth

D = Decimal


def _balance_rows(conn: psycopg.Connection, book_id: uuid.UUID) -> tuple[int, ...]:
    row = conn.execute(
        "select (select count(*) from journal_entries where book_id = %(b)s),"
        " (select count(*) from payment_plans where book_id = %(b)s),"
        " (select count(*) from patient_refunds where book_id = %(b)s),"
        " (select count(*) from small_balance_write_offs where book_id = %(b)s)",
        {"b": book_id},
    ).fetchone()
    assert row is not None
    return tuple(row)


def second_patient(client: Any, key: str, ids: dict[str, str], code: str = "99213") -> str:
    """Another self-pay patient of the same practice, with one encounter."""
    address = {"line1": "2 Elm St", "city": "Springfield", "state": "IL", "postal_code": "62702"}
    patient = _post(
        client,
        key,
        "/v1/patients",
        {"first_name": "Ada", "last_name": "Second", "date_of_birth": "1990-05-06",
         "gender": "F", "address": address},
    )  # fmt: skip
    _post(
        client,
        key,
        "/v1/encounters",
        {"patient": patient["id"], "provider": ids["provider"], "date_of_service": "2026-02-11",
         "diagnoses": ["J02.9"], "charges": [{"code": code}]},
    )  # fmt: skip
    return str(patient["id"])


# --- pure rules -------------------------------------------------------------------------


def test_installments_split_by_largest_remainder_and_show_what_was_missed() -> None:
    plan = installment_schedule(Money(D("100.00"), "USD"), 3, date(2026, 1, 31), "monthly")
    assert [(i.seq, i.due_on, i.amount) for i in plan] == [
        (1, date(2026, 1, 31), D("33.34")),
        (2, date(2026, 2, 28), D("33.33")),
        (3, date(2026, 3, 31), D("33.33")),
    ]
    weekly = installment_schedule(Money(D("10.00"), "USD"), 2, date(2026, 1, 1), "biweekly")
    assert [i.due_on for i in weekly] == [date(2026, 1, 1), date(2026, 1, 15)]
    progress = plan_progress(plan, D("40.00"), date(2026, 3, 1))
    assert [(p["paid"], p["remaining"], p["status"]) for p in progress] == [
        (D("33.34"), D("0.00"), "paid"),
        (D("6.66"), D("26.67"), "missed"),  # due Feb 28, short on Mar 1
        (D("0"), D("33.33"), "due"),
    ]


def test_statement_applies_patient_payments_to_the_oldest_visit_first() -> None:
    visits = [
        EncounterFigures("b", date(2026, 2, 2), D(100), D(50), D(20), D(30)),
        EncounterFigures("a", date(2026, 2, 1), D(200), D(56), D(80), D(64)),
    ]
    lines = statement_lines(visits, D("70.00"), D("5.00"))
    assert [(x["encounter"], x["payments"], x["write_offs"], x["balance"]) for x in lines] == [
        ("a", D("64.00"), D("0"), D("0.00")),
        ("b", D("6.00"), D("5.00"), D("19.00")),
    ]


# --- through the API ----------------------------------------------------------------------


def test_statement_after_insurance_json_and_html_logged_as_phi(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    ids = practice(client, key)
    claim = _post(client, key, "/v1/claims", {"encounter": ids["encounter"]})
    assert upload(client, key, worked_claim_835(claim["control_number"])).status_code == 201
    _post(client, key, f"/v1/patients/{ids['patient']}/payments", {"amount": "20.00"})
    answer = client.get(f"/v1/patients/{ids['patient']}/statement", headers=auth(key))
    assert answer.status_code == 200, answer.text
    st = answer.json()
    assert st["patient_name"] == "Zebulon Quixotewright" and st["as_of"] == "2026-03-01"
    assert st["encounters"] == [
        {
            "encounter": ids["encounter"],
            "date_of_service": "2026-02-10",
            "charges": "200.00",
            "insurance_paid": "56.00",
            "adjustments": "80.00",
            "patient_responsibility": "64.00",
            "payments": "20.00",
            "write_offs": "0.00",
            "balance": "44.00",
        }
    ]
    assert st["totals"] == {
        "charges": "200.00",
        "insurance_paid": "56.00",
        "adjustments": "80.00",
        "patient_responsibility": "64.00",
        "payments": "20.00",
        "write_offs": "0.00",
        "amount_due": "44.00",
        "credit_balance": "0.00",
    }
    assert [p["amount"] for p in st["payments"]] == ["20.00"]
    before = client.get(
        f"/v1/patients/{ids['patient']}/statement?as_of=2026-02-09", headers=auth(key)
    ).json()
    assert (before["encounters"], before["totals"]["amount_due"]) == ([], "0.00")
    html = client.get(f"/v1/patients/{ids['patient']}/statement?format=html", headers=auth(key))
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert "Quixotewright" in html.text and "Amount due: 44.00 USD" in html.text
    bad = client.get(f"/v1/patients/{ids['patient']}/statement?format=doc", headers=auth(key))
    assert_problem(bad, 422, "format_unavailable")
    reads_made = 3
    if pdf_support() is None:  # the same statement printed (WeasyPrint, Debian's pango)
        pdf = client.get(f"/v1/patients/{ids['patient']}/statement?format=pdf", headers=auth(key))
        assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
        text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.content)).pages)
        assert "Quixotewright" in text and "44.00" in text
        reads_made += 1
    log = client.get(f"/v1/patients/{ids['patient']}/access-log", headers=auth(key)).json()
    reads = [e["endpoint"] for e in log["data"] if e["action"] == "read"]
    assert reads == ["GET /v1/patients/{id}/statement"] * reads_made


def test_payment_plan_schedule_payments_and_a_missed_installment(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    ids = practice(client, key, coverage=False)  # self-pay: 200.00 owed
    path = f"/v1/patients/{ids['patient']}/payment-plans"
    with runtime.connection() as conn:
        before = _balance_rows(conn, sim_book.id)
    for bad, status in (
        ({"total": "200.01", "installments": 3}, 422),  # more than owed
        ({"total": "200.00", "installments": 0}, 422),
        ({"total": "200.00", "installments": 3, "interval": "daily"}, 422),
        ({"total": "-1.00", "installments": 3}, 422),
        ({"total": "0.02", "installments": 3}, 422),  # not a cent per installment
    ):
        assert_problem(client.post(path, json=bad, headers=auth(key)), status)
    with runtime.connection() as conn:
        assert _balance_rows(conn, sim_book.id) == before
    plan = _post(
        client,
        key,
        path,
        {"total": "200.00", "installments": 3, "interval": "monthly", "start_date": "2026-03-01"},
    )
    assert [(i["due_on"], i["amount"], i["status"]) for i in plan["schedule"]] == [
        ("2026-03-01", "66.67", "due"),
        ("2026-04-01", "66.67", "scheduled"),
        ("2026-05-01", "66.66", "scheduled"),
    ]
    again = client.post(path, json={"total": "10.00", "installments": 1}, headers=auth(key))
    assert "active payment plan" in assert_problem(again, 409, "invalid_state")["detail"]
    paid = _post(
        client, key, f"/v1/patients/{ids['patient']}/payments",
        {"amount": "80.00", "method": "check"},
    )  # fmt: skip
    with runtime.connection() as conn:
        assert entry_lines(conn, sim_book.id, paid["entry"]) == [
            ("Assets:Bank:Operating", "80.00"),
            ("Assets:Receivable:Patient", "-80.00"),
        ]
    later = client.get(f"/v1/payment-plans/{plan['id']}?as_of=2026-04-15", headers=auth(key))
    shown = later.json()
    assert (shown["paid"], shown["remaining"], shown["missed"]) == ("80.00", "120.00", [2])
    assert [(i["paid"], i["status"]) for i in shown["schedule"]] == [
        ("66.67", "paid"),
        ("13.33", "missed"),
        ("0.00", "due"),
    ]
    statement = client.get(
        f"/v1/patients/{ids['patient']}/statement?as_of=2026-04-15", headers=auth(key)
    ).json()
    assert statement["payment_plan"]["missed"] == [2]
    _post(client, key, f"/v1/patients/{ids['patient']}/payments", {"amount": "120.00"})
    done = client.get(f"/v1/payment-plans/{plan['id']}", headers=auth(key)).json()
    assert (done["status"], done["remaining"], done["missed"]) == ("completed", "0.00", [])


def test_a_credit_balance_is_refunded_from_refunds_payable(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    ids = practice(client, key, coverage=False)
    path = f"/v1/patients/{ids['patient']}/refunds"
    assert_problem(client.post(path, json={}, headers=auth(key)), 409, "invalid_state")
    _post(client, key, f"/v1/patients/{ids['patient']}/payments", {"amount": "250.00",
          "method": "cash"})  # fmt: skip
    first = _post(client, key, path, {"amount": "30.00", "method": "check"})
    assert (first["amount"], first["credit_balance"]) == ("30.00", "20.00")
    with runtime.connection() as conn:
        assert entry_lines(conn, sim_book.id, first["entry"]) == [
            ("Assets:Bank:Operating", "-30.00"),
            ("Liabilities:Refunds-Payable", "30.00"),
        ]
        before = _balance_rows(conn, sim_book.id)
    for bad in ({"amount": "25.00"}, {"amount": "0.00"}, {"amount": "1.001"},
                {"method": "barter"}):  # fmt: skip
        assert_problem(client.post(path, json=bad, headers=auth(key)), 422)
    with runtime.connection() as conn:
        assert _balance_rows(conn, sim_book.id) == before
    rest = _post(client, key, path, {"method": "bank_transfer"})  # the whole credit left
    assert (rest["amount"], rest["credit_balance"]) == ("20.00", "0.00")
    with runtime.connection() as conn:
        assert balances(conn, sim_book.id, TODAY) == {
            "Assets:Bank:Operating": D("200.00"),
            "Income:Patient-Services": D("-200.00"),
        }  # AR and Refunds-Payable are zero
    assert_problem(client.post(path, json={}, headers=auth(key)), 409, "invalid_state")
    st = client.get(f"/v1/patients/{ids['patient']}/statement", headers=auth(key)).json()
    assert [r["amount"] for r in st["refunds"]] == ["30.00", "20.00"]
    assert (st["totals"]["amount_due"], st["totals"]["credit_balance"]) == ("0.00", "0.00")


def test_small_balances_are_written_off_once(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    ids = practice(client, key, coverage=False)  # 200.00 owed
    other = second_patient(client, key, ids)  # 120.00 owed
    _post(client, key, f"/v1/patients/{ids['patient']}/payments", {"amount": "196.50"})
    _post(client, key, f"/v1/patients/{other}/payments", {"amount": "100.00"})
    path = "/v1/patient-balances/write-offs"
    with runtime.connection() as conn:
        before = _balance_rows(conn, sim_book.id)
    for bad in ({"as_of": "2026-03-02", "max_amount": "5.00"},  # after the book's today
                {"as_of": "2026-03-01", "max_amount": "0"},
                {"as_of": "2026-03-01", "max_amount": "5.001"}):  # fmt: skip
        assert_problem(client.post(path, json=bad, headers=auth(key)), 422)
    with runtime.connection() as conn:
        assert _balance_rows(conn, sim_book.id) == before
    run = _post(client, key, path, {"as_of": "2026-03-01", "max_amount": "5.00"})
    assert (run["total"], run["account"], run["duplicate"]) == (
        "3.50",
        "Income:Contra:Small-Balance",
        False,
    )
    assert run["patients"] == [{"patient": ids["patient"], "amount": "3.50"}]
    with runtime.connection() as conn:
        (entry,) = conn.execute(
            "select id from journal_entries where book_id = %s"
            " and metadata->>'kind' = 'small_balance_write_off'",
            (sim_book.id,),
        ).fetchall()
        assert entry_lines(conn, sim_book.id, entry[0]) == [
            ("Assets:Receivable:Patient", "-3.50"),
            ("Income:Contra:Small-Balance", "3.50"),
        ]
        after = _balance_rows(conn, sim_book.id)
    repeat = client.post(path, json={"as_of": "2026-03-01", "max_amount": "5.00"},
                         headers=auth(key))  # fmt: skip
    assert repeat.status_code == 200 and repeat.json()["duplicate"] is True
    assert repeat.json()["patients"] == run["patients"]
    with runtime.connection() as conn:
        assert _balance_rows(conn, sim_book.id) == after  # nothing posted again
        found = balances(conn, sim_book.id, TODAY)
    assert found["Assets:Receivable:Patient"] == D("20.00")  # the other patient's, kept
    st = client.get(f"/v1/patients/{ids['patient']}/statement", headers=auth(key)).json()
    assert (st["encounters"][0]["write_offs"], st["totals"]["amount_due"]) == ("3.50", "0.00")
    with runtime.connection() as conn:  # no PHI in what the new entries say
        (ledger_text,) = conn.execute(
            "select string_agg(e.memo || e.metadata::text || p.dimensions::text, ' ')"
            " from journal_entries e join postings p on p.entry_id = e.id"
            " where e.book_id = %s",
            (sim_book.id,),
        ).fetchone() or ("",)
    assert ids["patient"] in ledger_text
    assert not {"Zebulon", "Quixotewright", "Ada", "Second", "1990-05-06"} & set(
        ledger_text.replace('"', " ").split()
    )


def test_the_835_payment_reconciles_with_the_eft_line_by_its_trace(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    """Two remittances of the same amount: only the TRN02 in the ACH addenda tells
    which bank line is which; auto-match pairs each with its remittance's bank posting."""
    from tests.integration.test_reconciliation_matching import camt053

    key = sim_book.admin_key
    ids = practice(client, key)
    other = second_patient(client, key, ids, "87880")
    _post(client, key, "/v1/coverages", {"patient": other, "payer": ids["payer"],
          "member_id": "M-2", "effective_from": "2026-01-01"})  # fmt: skip
    with runtime.connection() as conn:
        (second_encounter,) = (
            conn.execute(
                "select id from encounters where patient_id = %s", (uuid.UUID(other),)
            ).fetchone()
            or ()
        )
    remittances = {}
    for encounter, trace in ((ids["encounter"], "TRACE-A"), (str(second_encounter), "TRACE-B")):
        claim = _post(client, key, "/v1/claims", {"encounter": encounter})
        answer = upload(client, key, worked_claim_835(claim["control_number"], trace))
        assert answer.status_code == 201, answer.text
        remittances[trace] = answer.json()["remittances"][0]["id"]
    lines = [
        ("56.00", "2026-03-02", "ACH-0001", None, "ACME HEALTH",
         "HCCLAIMPMT TRN*1*TRACE-B*1512345678\\"),
        ("56.00", "2026-03-02", "ACH-0002", None, "ACME HEALTH",
         "HCCLAIMPMT TRN*1*TRACE-A*1512345678\\"),
    ]  # fmt: skip
    uploaded = client.post(
        "/v1/bank-statements",
        files={"file": ("mar.xml", camt053(lines))},
        data={"account": "Assets:Bank:Operating"},
        headers=auth(key),
    )
    assert uploaded.status_code == 201, uploaded.text
    statement = uploaded.json()
    refs = {x["id"]: x["bank_reference"] for x in statement["lines"]}
    result = client.post(
        "/v1/reconciliation/auto-match", json={"statement": statement["id"]}, headers=auth(key)
    ).json()
    with runtime.connection() as conn:
        entry_of = {
            trace: str(
                conn.execute(
                    "select id from journal_entries where metadata->>'kind' = 'remittance'"
                    " and metadata->>'remittance' = %s",
                    (remittance,),
                ).fetchone()[0]  # type: ignore[index]
            )
            for trace, remittance in remittances.items()
        }
    found = {
        (m["rule"], refs[m["lines"][0]], m["postings"][0]["entry_id"]) for m in result["matches"]
    }
    assert found == {
        ("bank_reference", "ACH-0001", entry_of["TRACE-B"]),
        ("bank_reference", "ACH-0002", entry_of["TRACE-A"]),
    }
    with runtime.connection() as conn:
        assert counts(conn, sim_book.id)[1] == 2
