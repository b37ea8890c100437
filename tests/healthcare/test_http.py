"""Healthcare over HTTP on real PostgreSQL: ACCOUNTING.md's worked claim posts
exactly its entries, 835s are refused whole when they do not balance, imported
once per trace, reversed and corrected; PHI is shown only to roles allowed to
see it and every PHI read is logged; no PHI reaches the ledger."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from adapters.keys import Role
from adapters.runtime import Runtime
from adapters.services import verify_everything
from adapters.x12.x835 import parse_835
from tests.billing.test_payments import balances, entry_lines
from tests.conftest import BookFixture, make_book
from tests.healthcare.conftest import TODAY
from tests.healthcare.test_rules import pyx12_errors
from tests.healthcare.x12_samples import fixture_835s, worked_claim_835
from tests.integration.http_fixtures import assert_problem, auth, new_key

D = Decimal
PATIENT_NAME = ("Zebulon", "Quixotewright")


def _post(client: Any, key: str, path: str, body: dict[str, Any], status: int = 201) -> Any:
    response = client.post(path, json=body, headers=auth(key))
    assert response.status_code == status, response.text
    return response.json()


def practice(client: Any, key: str, *, coverage: bool = True) -> dict[str, str]:
    """A patient with primary coverage, a provider, a fee schedule, and a 200.00 encounter."""
    address = {"line1": "1 Main St", "city": "Springfield", "state": "IL", "postal_code": "62701"}
    patient = _post(
        client,
        key,
        "/v1/patients",
        {
            "first_name": PATIENT_NAME[0],
            "last_name": PATIENT_NAME[1],
            "date_of_birth": "1980-01-02",
            "gender": "M",
            "address": address,
        },
    )
    payer = _post(
        client, key, "/v1/payers", {"name": "Acme Health", "payer_id": f"A{uuid.uuid4().hex[:6]}"}
    )
    if coverage:
        _post(
            client,
            key,
            "/v1/coverages",
            {
                "patient": patient["id"],
                "payer": payer["id"],
                "member_id": "MEMBER-778899",
                "priority": "primary",
                "effective_from": "2026-01-01",
            },
        )
    provider = _post(
        client,
        key,
        "/v1/providers",
        {
            "name": "Good Health Clinic",
            "npi": "1234567893",
            "tax_id": "12-3456789",
            "taxonomy": "207Q00000X",
            "address": {
                "line1": "9 Oak Ave",
                "city": "Springfield",
                "state": "IL",
                "postal_code": "627011234",
            },
        },
    )
    _post(
        client,
        key,
        "/v1/fee-schedules",
        {
            "name": "Standard",
            "items": [
                {"code": "99213", "amount": "120.00"},
                {"code": "87880", "amount": "80.00"},
                {"code": "99213", "modifiers": ["25"], "amount": "130.00"},
            ],
        },
    )
    encounter = _post(
        client,
        key,
        "/v1/encounters",
        {
            "patient": patient["id"],
            "provider": provider["id"],
            "date_of_service": "2026-02-10",
            "place_of_service": "11",
            "diagnoses": ["J02.9", "R50.9"],
            "charges": [
                {"code": "99213", "units": "1", "diagnosis_pointers": [1, 2]},
                {"code": "87880", "diagnosis_pointers": [1]},
            ],
        },
    )
    return {
        "patient": patient["id"],
        "payer": payer["id"],
        "provider": provider["id"],
        "encounter": encounter["id"],
        "encounter_entry": encounter["entry"] or "",
    }


def upload(client: Any, key: str, text: str) -> Any:
    return client.post(
        "/v1/remittances", files={"file": ("era.835", text.encode())}, headers=auth(key)
    )


def counts(conn: psycopg.Connection, book_id: uuid.UUID) -> tuple[int, int, int]:
    row = conn.execute(
        "select (select count(*) from journal_entries where book_id = %(b)s),"
        " (select count(*) from remittances where book_id = %(b)s),"
        " (select count(*) from claims where book_id = %(b)s and status <> 'submitted')",
        {"b": book_id},
    ).fetchone()
    assert row is not None
    return row


def remittance_entries(conn: psycopg.Connection, book_id: uuid.UUID, remittance: str) -> list[Any]:
    return [
        r[0]
        for r in conn.execute(
            "select id from journal_entries where book_id = %s and metadata->>'remittance' = %s"
            " order by metadata->>'kind'",
            (book_id, remittance),
        ).fetchall()
    ]


def test_worked_claim_posts_exactly_accounting_md(
    client: Any, runtime: Runtime, sim_book: BookFixture, tmp_path: Path
) -> None:
    key = sim_book.admin_key
    ids = practice(client, key)
    book_id = sim_book.id
    with runtime.connection() as conn:
        assert entry_lines(conn, book_id, ids["encounter_entry"]) == [
            ("Assets:Receivable:Payer", "200.00"),
            ("Income:Patient-Services", "-120.00"),
            ("Income:Patient-Services", "-80.00"),
        ]
    claim = _post(client, key, "/v1/claims", {"encounter": ids["encounter"]})
    assert (claim["status"], claim["billed"], claim["priority"]) == ("draft", "200.00", "primary")
    unsent = client.get(f"/v1/claims/{claim['id']}/837", headers=auth(key))
    assert "submit it first" in assert_problem(unsent, 409, "invalid_state")["detail"]
    with runtime.connection() as conn:  # reading the 837 of a draft changed nothing
        assert conn.execute(
            "select status, interchange from claims where id = %s", (uuid.UUID(claim["id"]),)
        ).fetchone() == ("draft", None)
    submitted = _post(client, key, f"/v1/claims/{claim['id']}/submit", {}, 200)
    assert submitted["status"] == "submitted" and submitted["interchange_control"] > 0
    x12 = client.get(f"/v1/claims/{claim['id']}/837", headers=auth(key))
    assert x12.status_code == 200, x12.text
    assert pyx12_errors(x12.text, tmp_path) == []
    assert f"CLM*{claim['control_number']}*200***11:B:1" in x12.text
    assert int(x12.text.split("*")[13]) == submitted["interchange_control"]  # ISA13
    again = client.get(f"/v1/claims/{claim['id']}/837", headers=auth(key)).text
    assert again == x12.text  # reading it again is the same interchange
    twice = client.post(f"/v1/claims/{claim['id']}/submit", headers=auth(key))
    assert assert_problem(twice, 409, "invalid_state")
    shown = client.get(f"/v1/claims/{claim['id']}", headers=auth(key)).json()
    assert shown["status"] == "submitted"

    answer = upload(client, key, worked_claim_835(claim["control_number"]))
    assert answer.status_code == 201, answer.text
    result = answer.json()
    assert result["unmatched"] == []
    assert [(c["claim"], c["status"]) for c in result["claims"]] == [(claim["id"], "paid")]
    remittance = result["remittances"][0]["id"]
    with runtime.connection() as conn:
        claim_entry, payment_entry = remittance_entries(conn, book_id, remittance)
        assert entry_lines(conn, book_id, claim_entry) == [
            ("Assets:Clearing:Remittances", "56.00"),  # payer payment
            ("Assets:Receivable:Patient", "24.00"),  # PR-2 coinsurance
            ("Assets:Receivable:Patient", "40.00"),  # PR-1 deductible
            ("Assets:Receivable:Payer", "-24.00"),
            ("Assets:Receivable:Payer", "-40.00"),
            ("Assets:Receivable:Payer", "-56.00"),
            ("Assets:Receivable:Payer", "-80.00"),
            ("Income:Contra:Contractual-Adjustments", "80.00"),  # CO-45
        ]
        assert entry_lines(conn, book_id, payment_entry) == [
            ("Assets:Bank:Operating", "56.00"),
            ("Assets:Clearing:Remittances", "-56.00"),
        ]
    shown = client.get(f"/v1/claims/{claim['id']}", headers=auth(key)).json()
    assert {
        k: shown[k]
        for k in ("status", "billed", "paid", "adjusted", "patient_responsibility", "payer_balance")
    } == {
        "status": "paid",
        "billed": "200.00",
        "paid": "56.00",
        "adjusted": "80.00",
        "patient_responsibility": "64.00",
        "payer_balance": "0.00",
    }
    report = client.get("/v1/reports/ar-by-payer?as_of=2026-03-01", headers=auth(key)).json()
    assert [(r["name"], r["total"], r["buckets"]["0-30"]) for r in report["payers"]] == [
        ("Patients", "64.00", "64.00")
    ]
    paid = _post(
        client,
        key,
        f"/v1/patients/{ids['patient']}/payments",
        {"amount": "64.00", "method": "check"},
    )
    assert paid["patient_balance"] == "0.00"
    with runtime.connection() as conn:
        assert entry_lines(conn, book_id, paid["entry"]) == [
            ("Assets:Bank:Operating", "64.00"),
            ("Assets:Receivable:Patient", "-64.00"),
        ]
        assert balances(conn, book_id, TODAY) == {
            "Assets:Bank:Operating": D("120.00"),
            "Income:Contra:Contractual-Adjustments": D("80.00"),
            "Income:Patient-Services": D("-200.00"),
        }  # every receivable and the clearing account are zero
    report = client.get("/v1/reports/ar-by-payer", headers=auth(key)).json()
    assert report["payers"] == []
    with runtime.connection() as conn:
        assert verify_everything(conn, book_id) == []


def test_the_same_trace_twice_posts_nothing_the_second_time(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    ids = practice(client, key)
    claim = _post(client, key, "/v1/claims", {"encounter": ids["encounter"]})
    text = worked_claim_835(claim["control_number"])
    assert upload(client, key, text).status_code == 201
    with runtime.connection() as conn:
        before = counts(conn, sim_book.id)
    second = upload(client, key, text)
    assert second.status_code == 200, second.text
    assert second.json()["remittances"][0]["duplicate"] is True
    assert second.json()["claims"] == []
    with runtime.connection() as conn:
        assert counts(conn, sim_book.id) == before


@pytest.mark.parametrize(
    ("changes", "level"),
    [
        ({"line1_paid": "37.00"}, "line"),
        ({"paid": "57.00", "total": "57.00"}, "claim"),
        ({"total": "55.00"}, "file"),
    ],
)
def test_an_unbalanced_835_is_refused_whole(
    client: Any, runtime: Runtime, sim_book: BookFixture, changes: dict[str, str], level: str
) -> None:
    key = sim_book.admin_key
    ids = practice(client, key)
    claim = _post(client, key, "/v1/claims", {"encounter": ids["encounter"]})
    with runtime.connection() as conn:
        before = counts(conn, sim_book.id)
    answer = upload(client, key, worked_claim_835(claim["control_number"], **changes))
    problem = assert_problem(answer, 422, "unbalanced_remittance")
    assert problem["level"] == level
    assert re.search(r"\d+\.\d\d", problem["detail"])
    with runtime.connection() as conn:
        assert counts(conn, sim_book.id) == before


def test_reversal_and_correction_net_right(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    ids = practice(client, key)
    claim = _post(client, key, "/v1/claims", {"encounter": ids["encounter"]})
    pcn = claim["control_number"]
    assert upload(client, key, worked_claim_835(pcn, "T1")).status_code == 201
    reversal = worked_claim_835(pcn, "T2", status="22", sign="-", total="-56.00")
    answer = upload(client, key, reversal)
    assert answer.status_code == 201, answer.text
    assert answer.json()["claims"][0]["status"] == "accepted"
    shown = client.get(f"/v1/claims/{claim['id']}", headers=auth(key)).json()
    assert (shown["paid"], shown["adjusted"], shown["patient_responsibility"]) == (
        "0.00",
        "0.00",
        "0.00",
    )
    with runtime.connection() as conn:
        assert balances(conn, sim_book.id, TODAY) == {
            "Assets:Receivable:Payer": D("200.00"),
            "Income:Patient-Services": D("-200.00"),
        }
    # The corrected adjudication: allowed 150.00, paid 86.00, same patient share.
    corrected = worked_claim_835(pcn, "T3").replace("CLP*", "CLP*", 1)
    corrected = (
        corrected.replace("*56.00*C*ACH", "*86.00*C*ACH")
        .replace(f"CLP*{pcn}*1*200.00*56.00", f"CLP*{pcn}*1*200.00*86.00")
        .replace("SVC*HC:99213*120.00*36.00", "SVC*HC:99213*120.00*66.00")
        .replace("CAS*CO*45*50.00", "CAS*CO*45*20.00")
    )
    assert upload(client, key, corrected).status_code == 201
    with runtime.connection() as conn:
        assert balances(conn, sim_book.id, TODAY) == {
            "Assets:Bank:Operating": D("86.00"),
            "Assets:Receivable:Patient": D("64.00"),
            "Income:Contra:Contractual-Adjustments": D("50.00"),
            "Income:Patient-Services": D("-200.00"),
        }


def test_a_reversal_of_a_claim_never_adjudicated_is_refused(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    ids = practice(client, key)
    claim = _post(client, key, "/v1/claims", {"encounter": ids["encounter"]})
    with runtime.connection() as conn:
        before = counts(conn, sim_book.id)
    reversal = worked_claim_835(
        claim["control_number"], "T9", status="22", sign="-", total="-56.00"
    )
    assert_problem(upload(client, key, reversal), 422, "invalid_remittance")
    with runtime.connection() as conn:
        assert counts(conn, sim_book.id) == before


@pytest.mark.parametrize("path", fixture_835s(), ids=lambda p: p.name)
def test_every_shared_835_imports_with_its_claims_listed_unmatched(
    client: Any, runtime: Runtime, path: Path
) -> None:
    book = make_book(runtime, "USD", TODAY)
    text = path.read_text(encoding="latin-1")
    (parsed,) = parse_835(text)
    answer = upload(client, book.admin_key, text)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["claims"] == []
    assert len(body["unmatched"]) == len(parsed.claims)
    assert sum(D(u["paid"]) for u in body["unmatched"]) == parsed.claims_paid()
    assert sum(D(u["adjusted"]) + D(u["patient_responsibility"]) for u in body["unmatched"]) == sum(
        c.charge - c.paid for c in parsed.claims
    )
    with runtime.connection() as conn:
        found = balances(conn, book.id, TODAY)
    # Unapplied: the payment sits in the clearing account until its claims are found.
    expected = {
        "Assets:Bank:Operating": parsed.payment_total,
        "Assets:Clearing:Remittances": -parsed.claims_paid(),
        "Income:Contra:Provider-Adjustments": parsed.provider_adjusted(),
    }
    assert found == {k: v for k, v in expected.items() if v != 0}


def test_managed_care_835_matched_to_its_claims_zeroes_payer_ar(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    """The TR3 managed-care example against claims with its control numbers:
    claim-level CO-A2, line-level PR-1 and CO-45."""
    key = sim_book.admin_key
    ids = practice(client, key)
    _post(
        client,
        key,
        "/v1/fee-schedules",
        {
            "name": "Hospital",
            "items": [
                {"code": "99211", "amount": "800.00"},
                {"code": "93555", "amount": "1200.00"},
            ],
        },
    )
    for pcn, code in (("5554555444", "99211"), ("8765432112", "93555")):
        encounter = _post(
            client,
            key,
            "/v1/encounters",
            {
                "patient": ids["patient"],
                "provider": ids["provider"],
                "fee_schedule": "Hospital",
                "date_of_service": "2026-02-01",
                "diagnoses": ["I10"],
                "charges": [{"code": code}],
            },
        )
        _post(client, key, "/v1/claims", {"encounter": encounter["id"], "control_number": pcn})
    text = (fixture_835s()[0].parent / "linuxforhealth__managed-care.835").read_text()
    answer = upload(client, key, text)
    assert answer.status_code == 201, answer.text
    assert [c["control_number"] for c in answer.json()["claims"]] == ["5554555444", "8765432112"]
    with runtime.connection() as conn:
        found = balances(conn, sim_book.id, TODAY)
    assert found["Assets:Receivable:Payer"] == D("200.00")  # only the worked encounter is open
    assert found["Assets:Receivable:Patient"] == D("900.00")
    assert found["Income:Contra:Contractual-Adjustments"] == D("155.00")
    assert found["Assets:Bank:Operating"] == D("945.00")
    assert "Assets:Clearing:Remittances" not in found


def test_self_pay_charges_go_to_the_patient_and_cannot_be_claimed(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    ids = practice(client, key, coverage=False)
    with runtime.connection() as conn:
        assert entry_lines(conn, sim_book.id, ids["encounter_entry"])[0] == (
            "Assets:Receivable:Patient",
            "200.00",
        )
        before = counts(conn, sim_book.id)
    answer = client.post("/v1/claims", json={"encounter": ids["encounter"]}, headers=auth(key))
    assert "self-pay" in assert_problem(answer, 422, "invalid_request")["detail"]
    with runtime.connection() as conn:
        assert counts(conn, sim_book.id) == before


@pytest.mark.parametrize(
    ("path", "change", "message"),
    [
        ("/v1/providers", {"npi": "1234567890"}, "NPI"),
        ("/v1/encounters", {"diagnoses": ["J02.9999x"]}, "ICD-10-CM"),
        ("/v1/encounters", {"charges": [{"code": "99213", "diagnosis_pointers": [3]}]}, "pointer"),
        ("/v1/encounters", {"charges": [{"code": "99999"}]}, "not in fee schedule"),
        ("/v1/encounters", {"diagnoses": [f"Z00.{n:02d}" for n in range(13)]}, "at most 12"),
    ],
)
def test_bad_input_is_refused_and_writes_nothing(
    client: Any,
    runtime: Runtime,
    sim_book: BookFixture,
    path: str,
    change: dict[str, Any],
    message: str,
) -> None:
    key = sim_book.admin_key
    ids = practice(client, key)
    bodies = {
        "/v1/providers": {"name": "X", "npi": "1234567893"},
        "/v1/encounters": {
            "patient": ids["patient"],
            "provider": ids["provider"],
            "date_of_service": "2026-02-10",
            "diagnoses": ["J02.9"],
            "charges": [{"code": "99213"}],
        },
    }
    with runtime.connection() as conn:
        before = (
            counts(conn, sim_book.id),
            conn.execute(
                "select count(*) from encounters where book_id = %s", (sim_book.id,)
            ).fetchone(),
        )
    answer = client.post(path, json={**bodies[path], **change}, headers=auth(key))
    assert answer.status_code == 422, answer.text
    assert message in answer.json()["detail"]
    with runtime.connection() as conn:
        after = (
            counts(conn, sim_book.id),
            conn.execute(
                "select count(*) from encounters where book_id = %s", (sim_book.id,)
            ).fetchone(),
        )
    assert after == before


def test_phi_only_for_roles_that_may_see_it_and_every_read_logged(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    ids = practice(client, sim_book.admin_key)
    claim = _post(client, sim_book.admin_key, "/v1/claims", {"encounter": ids["encounter"]})
    staff = new_key(runtime, sim_book.id, Role.BILLING_STAFF)
    seen = client.get(f"/v1/claims/{claim['id']}", headers=auth(staff)).json()
    assert (seen["member_id"], seen["diagnoses"]) == ("MEMBER-778899", ["J029", "R509"])
    person = client.get(f"/v1/patients/{ids['patient']}", headers=auth(staff)).json()
    assert (person["first_name"], person["date_of_birth"]) == ("Zebulon", "1980-01-02")
    for role in (Role.AUDITOR, Role.ERP, Role.OPERATOR, Role.ACCOUNTANT):
        other = new_key(runtime, sim_book.id, role)
        hidden = client.get(f"/v1/claims/{claim['id']}", headers=auth(other)).json()
        assert hidden["billed"] == "200.00" and hidden["phi"] is False
        assert not {"member_id", "diagnoses"} & hidden.keys()
        patient = client.get(f"/v1/patients/{ids['patient']}", headers=auth(other)).json()
        assert not {"first_name", "last_name", "date_of_birth", "address"} & patient.keys()
        encounter = client.get(f"/v1/encounters/{ids['encounter']}", headers=auth(other)).json()
        assert "diagnoses" not in encounter
        assert_problem(
            client.get(f"/v1/claims/{claim['id']}/837", headers=auth(other)), 403, "forbidden"
        )
        assert_problem(
            client.post(f"/v1/claims/{claim['id']}/submit", headers=auth(other)), 403, "forbidden"
        )
        assert_problem(
            client.get(f"/v1/patients/{ids['patient']}/statement", headers=auth(other)),
            403,
            "forbidden",
        )
    log = client.get(
        f"/v1/patients/{ids['patient']}/access-log", headers=auth(sim_book.admin_key)
    ).json()["data"]
    reads = [(e["actor"], e["action"], e["endpoint"]) for e in log if e["action"] == "read"]
    assert reads == [
        ("billing_staff", "read", "GET /v1/claims/{id}"),
        ("billing_staff", "read", "GET /v1/patients/{id}"),
    ]  # the roles without PHI saw none, so read none
    writes = {e["endpoint"] for e in log if e["action"] == "write"}
    assert writes == {
        "POST /v1/patients",
        "POST /v1/coverages",
        "POST /v1/encounters",
        "POST /v1/claims",
    }


def test_the_access_log_is_append_only(app_conn: psycopg.Connection) -> None:
    for statement in ("update phi_access_log set actor = 'x'", "delete from phi_access_log"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app_conn.execute(statement)


def test_no_phi_in_the_ledger_or_the_beancount_export(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    ids = practice(client, key)
    claim = _post(client, key, "/v1/claims", {"encounter": ids["encounter"]})
    assert upload(client, key, worked_claim_835(claim["control_number"])).status_code == 201
    _post(client, key, f"/v1/patients/{ids['patient']}/payments", {"amount": "64.00"})
    exported = client.get("/v1/exports/beancount", headers=auth(key))
    assert exported.status_code == 200, exported.text
    with runtime.connection() as conn:
        ledger_text = "\n".join(
            str(row)
            for row in conn.execute(
                "select e.memo, e.metadata, p.customer_id, p.document, p.dimensions"
                " from journal_entries e join postings p on p.entry_id = e.id"
                " where e.book_id = %s",
                (sim_book.id,),
            ).fetchall()
        )
    assert "Patient-Services" in exported.text
    for text in (exported.text, ledger_text):
        for phi in (*PATIENT_NAME, "MEMBER-778899", "J029", "J02.9", "1980"):
            assert phi.lower() not in text.lower()


def test_secondary_claim_carries_the_primary_adjudication_and_takes_over_the_patient_share(
    client: Any, runtime: Runtime, sim_book: BookFixture, tmp_path: Path
) -> None:
    key = sim_book.admin_key
    ids = practice(client, key)
    second = _post(client, key, "/v1/payers", {"name": "Second Co", "payer_id": "SEC1"})
    _post(
        client,
        key,
        "/v1/coverages",
        {
            "patient": ids["patient"],
            "payer": second["id"],
            "member_id": "S-5566",
            "priority": "secondary",
        },
    )
    early = client.post(
        "/v1/claims", json={"encounter": ids["encounter"], "payer": "SEC1"}, headers=auth(key)
    )
    assert "import its 835 first" in assert_problem(early, 422, "invalid_request")["detail"]
    primary = _post(client, key, "/v1/claims", {"encounter": ids["encounter"]})
    assert upload(client, key, worked_claim_835(primary["control_number"])).status_code == 201
    secondary = _post(client, key, "/v1/claims", {"encounter": ids["encounter"], "payer": "SEC1"})
    assert (secondary["priority"], secondary["payer_balance"]) == ("secondary", "64.00")
    with runtime.connection() as conn:
        found = balances(conn, sim_book.id, TODAY)
    assert (found["Assets:Receivable:Payer"], "Assets:Receivable:Patient" in found) == (
        D("64.00"),
        False,
    )
    _post(client, key, f"/v1/claims/{secondary['id']}/submit", {}, 200)
    x12 = client.get(f"/v1/claims/{secondary['id']}/837", headers=auth(key)).text
    assert pyx12_errors(x12, tmp_path) == []
    payer_code = client.get(f"/v1/claims/{primary['id']}", headers=auth(key)).json()
    for segment in (
        "SBR*S*18",
        "SBR*P*18",
        "AMT*D*56~",
        "OI***Y***Y~",
        "NM1*IL*1*QUIXOTEWRIGHT*ZEBULON****MI*MEMBER-778899~",
        "SVD*",
        "CAS*CO*45*50~",
        "CAS*PR*1*20**2*14~",
        "DTP*573*D8*20260301~",
    ):
        assert segment in x12, segment
    assert payer_code["status"] == "paid"
    # The secondary's 835: OA-23 is the primary's share (136.00), PR-2 14.00 stays with
    # the patient, 50.00 paid.
    text = worked_claim_835(secondary["control_number"], "SEC-T1")
    body = text[text.index("BPR*") : text.index("SE*")]
    lines = [
        "BPR*I*50.00*C*CHK************20260305",
        "TRN*1*SEC-T1*1999999999",
        "N1*PR*SECOND CO",
        "LX*1",
        f"CLP*{secondary['control_number']}*2*200.00*50.00*14.00*12*SECCLM",
        "CAS*OA*23*136.00",
        "CAS*PR*2*14.00",
    ]
    text = text.replace(body, "~\n".join(lines) + "~\n").replace("SE*15*", "SE*9*")
    answer = upload(client, key, text)
    assert answer.status_code == 201, answer.text
    with runtime.connection() as conn:
        (claim_entry, _payment) = remittance_entries(
            conn, sim_book.id, answer.json()["remittances"][0]["id"]
        )
        assert entry_lines(conn, sim_book.id, claim_entry) == [
            ("Assets:Clearing:Remittances", "50.00"),
            ("Assets:Receivable:Patient", "14.00"),
            ("Assets:Receivable:Payer", "-14.00"),
            ("Assets:Receivable:Payer", "-50.00"),
        ]  # OA-23 moved nothing: the primary's share was posted by the primary's 835
        assert balances(conn, sim_book.id, TODAY) == {
            "Assets:Bank:Operating": D("106.00"),
            "Assets:Receivable:Patient": D("14.00"),
            "Income:Contra:Contractual-Adjustments": D("80.00"),
            "Income:Patient-Services": D("-200.00"),
        }
    shown = client.get(f"/v1/claims/{secondary['id']}", headers=auth(key)).json()
    assert (
        shown["status"],
        shown["paid"],
        shown["patient_responsibility"],
        shown["payer_balance"],
    ) == ("paid", "50.00", "14.00", "0.00")


def test_two_concurrent_imports_of_one_trace_post_once(
    client: Any, runtime: Runtime, sim_book: BookFixture, database_url: str
) -> None:
    """The second import waits for the first's transaction, then finds the trace taken."""
    import hashlib
    import threading

    from billing.postgres.healthcare_remittances import import_remittances

    ids = practice(client, sim_book.admin_key)
    claim = _post(client, sim_book.admin_key, "/v1/claims", {"encounter": ids["encounter"]})
    text = worked_claim_835(claim["control_number"])
    parsed, sha = parse_835(text), hashlib.sha256(text.encode()).hexdigest()
    results: list[Any] = []

    def second() -> None:
        with runtime.connection() as conn:
            # Local to this transaction: the pooled session goes back as it came.
            conn.execute("select set_config('application_name', 'second-import', true)")
            results.append(import_remittances(conn, sim_book.id, parsed, sha, TODAY))
            conn.commit()

    with runtime.connection() as first:
        results.append(import_remittances(first, sim_book.id, parsed, sha, TODAY))
        thread = threading.Thread(target=second)
        thread.start()
        # Until the second waits on the first's locks (a session of its own, not the pool's).
        with psycopg.connect(database_url, autocommit=True) as watcher:
            while not watcher.execute(
                "select 1 from pg_stat_activity where application_name = 'second-import'"
                " and wait_event_type = 'Lock'"
            ).fetchone():
                thread.join(0.01)
        first.commit()
    thread.join()
    assert [r["remittances"][0]["duplicate"] for r in results] == [False, True]
    assert results[1]["claims"] == []
    with runtime.connection() as conn:
        assert balances(conn, sim_book.id, TODAY)["Assets:Bank:Operating"] == D("56.00")


def test_claim_status_moves_only_along_its_states(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    ids = practice(client, key)
    claim = _post(client, key, "/v1/claims", {"encounter": ids["encounter"]})

    def move(status: str) -> Any:
        return client.post(
            f"/v1/claims/{claim['id']}/status", json={"status": status}, headers=auth(key)
        )

    assert_problem(move("paid"), 409, "invalid_state")
    assert move("submitted").json()["status"] == "submitted"
    assert move("rejected").json()["status"] == "rejected"
    assert move("submitted").json()["submitted_at"] is not None
    assert move("accepted").json()["status"] == "accepted"
    assert_problem(move("draft"), 409, "invalid_state")
    assert move("denied").json()["status"] == "denied"
    assert move("appealed").json()["status"] == "appealed"
    assert move("closed").json()["status"] == "closed"
    assert_problem(move("appealed"), 409, "invalid_state")


def test_a_patient_overpayment_becomes_a_credit_balance(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    ids = practice(client, key, coverage=False)  # self-pay: 200.00 owed by the patient
    paid = _post(
        client,
        key,
        f"/v1/patients/{ids['patient']}/payments",
        {"amount": "250.00", "method": "cash"},
    )
    with runtime.connection() as conn:
        assert entry_lines(conn, sim_book.id, paid["entry"]) == [
            ("Assets:Bank:Operating", "250.00"),
            ("Assets:Receivable:Patient", "-200.00"),
            ("Liabilities:Refunds-Payable", "-50.00"),
        ]
    for bad in (
        {"amount": "0.00"},
        {"amount": "-5.00"},
        {"amount": "1.001"},
        {"amount": "5.00", "method": "barter"},
    ):
        with runtime.connection() as conn:
            before = counts(conn, sim_book.id)
        answer = client.post(f"/v1/patients/{ids['patient']}/payments", json=bad, headers=auth(key))
        assert answer.status_code == 422, (bad, answer.text)
        with runtime.connection() as conn:
            assert counts(conn, sim_book.id) == before


def test_oa_and_pi_follow_the_books_setting(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    """Default: OA written off to Contractual-Adjustments; the book may point it elsewhere."""
    from billing.postgres.settings import change_settings
    from billing.settings import InvalidSettings

    key = sim_book.admin_key
    ids = practice(client, key)
    with runtime.connection() as conn:
        with pytest.raises(InvalidSettings):
            change_settings(conn, sim_book.id, {"healthcare_adjustment_accounts": {"PR": "X:Y"}})
        change_settings(
            conn, sim_book.id, {"healthcare_adjustment_accounts": {"OA": "Income:Contra:Denials"}}
        )
        conn.commit()
    claim = _post(client, key, "/v1/claims", {"encounter": ids["encounter"]})
    text = worked_claim_835(claim["control_number"]).replace("CAS*CO*45*", "CAS*OA*18*")
    answer = upload(client, key, text)
    assert answer.status_code == 201, answer.text
    with runtime.connection() as conn:
        found = balances(conn, sim_book.id, TODAY)
    assert found["Income:Contra:Denials"] == D("80.00")
    assert "Income:Contra:Contractual-Adjustments" not in found
    shown = client.get(f"/v1/claims/{claim['id']}", headers=auth(key)).json()
    assert (shown["adjusted"], shown["payer_balance"]) == ("80.00", "0.00")


def test_a_file_that_is_not_an_835_is_refused_and_writes_nothing(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    with runtime.connection() as conn:
        before = counts(conn, sim_book.id)
    assert_problem(upload(client, key, "ST*837*0001~SE*1*0001~"), 422, "invalid_remittance")
    assert_problem(upload(client, key, "hello"), 422, "invalid_remittance")
    missing = client.post("/v1/remittances", files={"other": ("x", b"1")}, headers=auth(key))
    assert_problem(missing, 400, "file_missing")
    with runtime.connection() as conn:
        assert counts(conn, sim_book.id) == before


def test_a_denied_claim_writes_off_to_denials(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    """CO-29 (timely filing) is a denial: Income:Contra:Denials, status denied."""
    key = sim_book.admin_key
    ids = practice(client, key)
    claim = _post(client, key, "/v1/claims", {"encounter": ids["encounter"]})
    pcn = claim["control_number"]
    text = worked_claim_835(pcn, "DENY-1")
    body = text[text.index("BPR*") : text.index("SE*")]
    lines = [
        "BPR*I*0*C*NON************20260301",
        "TRN*1*DENY-1*1512345678",
        "N1*PR*ACME",
        "LX*1",
        f"CLP*{pcn}*4*200.00*0**12*PAYERCLM9",
        "CAS*CO*29*200.00",
    ]
    text = text.replace(body, "~\n".join(lines) + "~\n").replace("SE*15*", "SE*8*")
    answer = upload(client, key, text)
    assert answer.status_code == 201, answer.text
    assert answer.json()["claims"][0]["status"] == "denied"
    with runtime.connection() as conn:
        (claim_entry,) = remittance_entries(
            conn, sim_book.id, answer.json()["remittances"][0]["id"]
        )
        assert entry_lines(conn, sim_book.id, claim_entry) == [
            ("Assets:Receivable:Payer", "-200.00"),
            ("Income:Contra:Denials", "200.00"),
        ]
    assert (
        client.post(
            f"/v1/claims/{claim['id']}/status", json={"status": "appealed"}, headers=auth(key)
        ).json()["status"]
        == "appealed"
    )


def test_an_encounter_is_billed_once_per_payer(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    ids = practice(client, key)
    claim = _post(client, key, "/v1/claims", {"encounter": ids["encounter"]})
    again = client.post("/v1/claims", json={"encounter": ids["encounter"]}, headers=auth(key))
    assert claim["control_number"] in assert_problem(again, 409, "invalid_state")["detail"]
    for status in ("submitted", "rejected"):
        client.post(f"/v1/claims/{claim['id']}/status", json={"status": status}, headers=auth(key))
    # A rejected claim may be replaced by a corrected one.
    assert _post(client, key, "/v1/claims", {"encounter": ids["encounter"]})["status"] == "draft"


def test_ar_by_payer_ages_from_service_or_from_submission(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    ids = practice(client, key)  # 200.00 served 2026-02-10
    claim = _post(client, key, "/v1/claims", {"encounter": ids["encounter"]})

    def report(query: str) -> Any:
        answer = client.get(f"/v1/reports/ar-by-payer?{query}", headers=auth(key))
        assert answer.status_code == 200, answer.text
        return answer.json()

    (row,) = report("as_of=2026-04-15")["payers"]
    assert (row["payer"], row["total"], row["buckets"]["61-90"]) == (
        ids["payer"],
        "200.00",
        "200.00",
    )
    assert set(row["buckets"]) == {"0-30", "31-60", "61-90", "91-120", "over_120"}
    (row,) = report("as_of=2026-04-15&basis=submission")["payers"]
    assert row["buckets"]["not_submitted"] == "200.00"
    client.post(f"/v1/claims/{claim['id']}/status", json={"status": "submitted"}, headers=auth(key))
    (row,) = report("as_of=2026-04-15&basis=submission")["payers"]
    assert "not_submitted" not in row["buckets"]
    assert sum(D(v) for v in row["buckets"].values()) == D("200.00")
    assert report("as_of=2026-02-09")["payers"] == []  # before the date of service
    assert_problem(client.get("/v1/reports/ar-by-payer?basis=posting", headers=auth(key)), 422)
