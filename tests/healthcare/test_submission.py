"""Submitting a claim is a POST that keeps its 837P; reading the 837 never changes
the claim and returns the same interchange; a rejected claim is resubmitted with a
new control number; a submission that fails writes nothing and burns no number."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from adapters.runtime import Runtime
from tests.conftest import BookFixture
from tests.healthcare.test_http import _post, practice
from tests.healthcare.test_rules import pyx12_errors
from tests.integration.http_fixtures import assert_problem, auth


def _control(runtime: Runtime, book_id: uuid.UUID) -> int | None:
    with runtime.connection() as conn:
        row = conn.execute(
            "select last_number from x12_control_numbers where book_id = %s", (book_id,)
        ).fetchone()
    return None if row is None else int(row[0])


def test_resubmission_and_claims_moved_by_hand(
    client: Any, runtime: Runtime, sim_book: BookFixture, tmp_path: Path
) -> None:
    key = sim_book.admin_key
    ids = practice(client, key)
    claim = _post(client, key, "/v1/claims", {"encounter": ids["encounter"]})
    first = _post(client, key, f"/v1/claims/{claim['id']}/submit", {}, 200)
    text = client.get(f"/v1/claims/{claim['id']}/837", headers=auth(key)).text

    def move(status: str) -> Any:
        return _post(client, key, f"/v1/claims/{claim['id']}/status", {"status": status}, 200)

    move("rejected")
    assert client.get(f"/v1/claims/{claim['id']}/837", headers=auth(key)).text == text
    again = _post(client, key, f"/v1/claims/{claim['id']}/submit", {}, 200)
    assert again["status"] == "submitted"
    assert again["interchange_control"] == first["interchange_control"] + 1
    resent = client.get(f"/v1/claims/{claim['id']}/837", headers=auth(key)).text
    assert resent != text and pyx12_errors(resent, tmp_path) == []
    assert f"*{again['interchange_control']:09d}*" in resent

    # Moved to submitted by hand (sent elsewhere): no 837 until one is generated here.
    move("rejected")
    move("closed")
    other = _post(client, key, "/v1/claims", {"encounter": ids["encounter"]})
    _post(client, key, f"/v1/claims/{other['id']}/status", {"status": "submitted"}, 200)
    unsent = client.get(f"/v1/claims/{other['id']}/837", headers=auth(key))
    assert "submit it first" in assert_problem(unsent, 409, "invalid_state")["detail"]
    generated = _post(client, key, f"/v1/claims/{other['id']}/submit", {}, 200)
    assert generated["status"] == "submitted"
    assert generated["interchange_control"] == again["interchange_control"] + 1
    assert (
        f"CLM*{other['control_number']}*"
        in client.get(f"/v1/claims/{other['id']}/837", headers=auth(key)).text
    )
    closed = client.post(f"/v1/claims/{claim['id']}/submit", headers=auth(key))
    assert "closed claim cannot be submitted" in assert_problem(closed, 409)["detail"]
    missing = client.post(f"/v1/claims/{uuid.uuid4()}/submit", headers=auth(key))
    assert_problem(missing, 404)


def test_a_failed_submission_writes_nothing_and_burns_no_number(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    ids = practice(client, key)
    claim = _post(client, key, "/v1/claims", {"encounter": ids["encounter"]})
    with runtime.connection() as conn:
        conn.execute(
            "update providers set tax_id = null where id = %s", (uuid.UUID(ids["provider"]),)
        )
        conn.commit()
    refused = client.post(f"/v1/claims/{claim['id']}/submit", headers=auth(key))
    assert "tax_id" in assert_problem(refused, 422, "invalid_request")["detail"]
    assert _control(runtime, sim_book.id) is None
    shown = client.get(f"/v1/claims/{claim['id']}", headers=auth(key)).json()
    assert (shown["status"], shown["interchange_control"]) == ("draft", None)
