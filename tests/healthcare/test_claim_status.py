"""An 835 moves a claim's status only along its states: implied steps for a claim
the payer evidently received, a reversal back to accepted, and a refusal — whole,
nothing posted, the file quarantined — for a move the states do not allow."""

from __future__ import annotations

import uuid
from typing import Any

from adapters.runtime import Runtime
from tests.conftest import BookFixture
from tests.healthcare.test_http import _post, counts, practice, upload
from tests.healthcare.x12_samples import worked_claim_835
from tests.integration.http_fixtures import assert_problem, auth


def _denial(pcn: str, trace: str) -> str:
    """The worked claim's 835 turned into a CO-29 denial of the whole 200.00."""
    text = worked_claim_835(pcn, trace)
    body = text[text.index("BPR*") : text.index("SE*")]
    lines = [
        "BPR*I*0*C*NON************20260301",
        f"TRN*1*{trace}*1512345678",
        "N1*PR*ACME",
        "LX*1",
        f"CLP*{pcn}*4*200.00*0**12*PAYERCLM9",
        "CAS*CO*29*200.00",
    ]
    return text.replace(body, "~\n".join(lines) + "~\n").replace("SE*15*", "SE*8*")


def _status(runtime: Runtime, claim: str) -> tuple[str, Any]:
    with runtime.connection() as conn:
        row = conn.execute(
            "select status, submitted_at from claims where id = %s", (uuid.UUID(claim),)
        ).fetchone()
    assert row is not None
    return row[0], row[1]


def test_a_draft_claim_the_payer_adjudicated_was_evidently_submitted(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    ids = practice(client, key)
    claim = _post(client, key, "/v1/claims", {"encounter": ids["encounter"]})
    assert _status(runtime, claim["id"]) == ("draft", None)
    answer = upload(client, key, worked_claim_835(claim["control_number"]))
    assert answer.status_code == 201, answer.text
    status, submitted_at = _status(runtime, claim["id"])
    assert status == "paid" and submitted_at is not None


def test_a_closed_claim_refuses_the_835_whole_and_it_is_quarantined(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    ids = practice(client, key)
    claim = _post(client, key, "/v1/claims", {"encounter": ids["encounter"]})
    pcn = claim["control_number"]
    assert upload(client, key, worked_claim_835(pcn, "T1")).status_code == 201
    closed = client.post(
        f"/v1/claims/{claim['id']}/status", json={"status": "closed"}, headers=auth(key)
    )
    assert closed.json()["status"] == "closed"
    with runtime.connection() as conn:
        before = counts(conn, sim_book.id)
    # The same payment again under another trace: it would make the closed claim paid.
    problem = assert_problem(upload(client, key, worked_claim_835(pcn, "T2")), 422)
    assert problem["code"] == "invalid_remittance"
    assert (problem["claim_status"], problem["new_status"]) == ("closed", "paid")
    assert problem["detail"] == (
        f"claim {pcn!r} is closed and this 835 would make it paid, which its states do"
        " not allow (a payer changing its decision reverses it first); nothing was posted"
    )
    with runtime.connection() as conn:
        assert counts(conn, sim_book.id) == before
    assert _status(runtime, claim["id"])[0] == "closed"
    (kept,) = client.get("/v1/remittances/quarantine", headers=auth(key)).json()["data"]
    assert kept["id"] == problem["quarantine"] and kept["code"] == "invalid_remittance"


def test_a_paid_claim_is_denied_only_after_a_reversal(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    ids = practice(client, key)
    claim = _post(client, key, "/v1/claims", {"encounter": ids["encounter"]})
    pcn = claim["control_number"]
    assert upload(client, key, worked_claim_835(pcn, "T1")).status_code == 201
    with runtime.connection() as conn:
        before = counts(conn, sim_book.id)
    refused = assert_problem(upload(client, key, _denial(pcn, "D1")), 422, "invalid_remittance")
    assert "is paid and this 835 would make it denied" in refused["detail"]
    with runtime.connection() as conn:
        assert counts(conn, sim_book.id) == before
    reversal = worked_claim_835(pcn, "R1", status="22", sign="-", total="-56.00")
    assert upload(client, key, reversal).json()["claims"][0]["status"] == "accepted"
    answer = upload(client, key, _denial(pcn, "D2"))
    assert answer.status_code == 201, answer.text
    assert _status(runtime, claim["id"])[0] == "denied"
    shown = client.get(f"/v1/claims/{claim['id']}", headers=auth(key)).json()
    assert (shown["paid"], shown["adjusted"], shown["payer_balance"]) == ("0.00", "200.00", "0.00")
