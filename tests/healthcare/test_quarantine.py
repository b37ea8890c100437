"""An 835 refused whole is quarantined: nothing posted, the file kept with the
reason (level and amounts), listed over HTTP and by the CLI."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from adapters.keys import Role
from adapters.runtime import Runtime
from tests.conftest import BookFixture, make_book
from tests.healthcare.test_http import TODAY, _post, counts, practice, upload
from tests.healthcare.x12_samples import worked_claim_835
from tests.integration.http_fixtures import assert_problem, auth, new_key
from tests.integration.test_cli import cli  # noqa: F401  (shared fixture)


def _listed(client: Any, key: str) -> list[dict[str, Any]]:
    answer = client.get("/v1/remittances/quarantine", headers=auth(key))
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]  # type: ignore[no-any-return]


def test_an_unbalanced_835_is_refused_posts_nothing_and_is_quarantined(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    ids = practice(client, key)
    claim = _post(client, key, "/v1/claims", {"encounter": ids["encounter"]})
    assert _listed(client, key) == []
    with runtime.connection() as conn:
        before = counts(conn, sim_book.id)
    # Claims paid 56.00, BPR says 55.00: the file level does not balance.
    text = worked_claim_835(claim["control_number"], total="55.00")
    problem = assert_problem(upload(client, key, text), 422, "unbalanced_remittance")
    assert problem["level"] == "file"
    with runtime.connection() as conn:
        assert counts(conn, sim_book.id) == before  # no entry, no remittance, no status
        (entries,) = conn.execute(
            "select count(*) from journal_entries where book_id = %s"
            " and metadata->>'kind' in ('claim_remittance', 'remittance')",
            (sim_book.id,),
        ).fetchone() or (None,)
    assert entries == 0
    (kept,) = _listed(client, key)
    assert kept["id"] == problem["quarantine"]
    assert (kept["file_name"], kept["code"], kept["level"]) == (
        "era.835",
        "unbalanced_remittance",
        "file",
    )
    assert kept["file_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert kept["size"] == len(text.encode())
    assert kept["reason"] == (
        "the file does not balance: claims paid 56.00 − provider adjustments 0 = 56.00,"
        " but the payment total (BPR02) is 55.00"
    )
    assert kept["details"] == {
        "level": "file",
        "claims_paid": "56.00",
        "provider_adjustments": "0",
        "payment_total": "55.00",
    }
    # The file as received; it names patients, so only PHI roles may read it.
    stored = client.get(f"/v1/remittances/quarantine/{kept['id']}/file", headers=auth(key))
    assert stored.status_code == 200 and stored.content == text.encode()
    auditor = new_key(runtime, sim_book.id, Role.AUDITOR)
    assert [r["id"] for r in _listed(client, auditor)] == [kept["id"]]
    denied = client.get(f"/v1/remittances/quarantine/{kept['id']}/file", headers=auth(auditor))
    assert_problem(denied, 403, "forbidden")
    # The same bytes sent again: refused again, kept once.
    assert_problem(upload(client, key, text), 422, "unbalanced_remittance")
    assert len(_listed(client, key)) == 1


def test_claim_level_and_unreadable_files_are_quarantined_with_their_reason(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    ids = practice(client, key)
    claim = _post(client, key, "/v1/claims", {"encounter": ids["encounter"]})
    with runtime.connection() as conn:
        before = counts(conn, sim_book.id)
    claim_level = worked_claim_835(claim["control_number"], "T2", paid="57.00", total="57.00")
    assert_problem(upload(client, key, claim_level), 422, "unbalanced_remittance")
    assert_problem(upload(client, key, "ST*837*0001~SE*1*0001~"), 422, "invalid_remittance")
    with runtime.connection() as conn:
        assert counts(conn, sim_book.id) == before
    unreadable, unbalanced = _listed(client, key)  # newest first
    assert (unreadable["code"], unreadable["level"]) == ("invalid_remittance", None)
    assert unreadable["reason"] == "transaction set '837' is not an 835"
    assert unbalanced["level"] == "claim"
    assert unbalanced["reason"] == (
        f"claim {claim['control_number']!r} does not balance: charge 200.00"
        " − adjustments 144.00 = 56.00, but paid 57.00"
    )
    # A file that was never sent (no multipart part) is not a refused 835.
    missing = client.post("/v1/remittances", files={"other": ("x", b"1")}, headers=auth(key))
    assert_problem(missing, 400, "file_missing")
    assert len(_listed(client, key)) == 2


def test_the_cli_quarantines_a_refused_file_and_lists_it(
    cli: Any,  # noqa: F811
    client: Any,
    runtime: Runtime,
    tmp_path: Any,
) -> None:
    book = make_book(runtime, "USD", TODAY)
    ids = practice(client, book.admin_key)
    claim = _post(client, book.admin_key, "/v1/claims", {"encounter": ids["encounter"]})
    era = tmp_path / "march.835"
    era.write_text(worked_claim_835(claim["control_number"], total="50.00"))
    with runtime.connection() as conn:
        before = counts(conn, book.id)
    refused = cli("remittances", "import", str(era), "--book", str(book.id))
    assert refused.returncode == 2 and "the file does not balance" in refused.stderr
    with runtime.connection() as conn:
        assert counts(conn, book.id) == before
    listed = cli("remittances", "quarantine", "--book", str(book.id), "--format", "json")
    assert listed.returncode == 0, listed.stderr
    (kept,) = json.loads(listed.stdout)["data"]
    assert (kept["file_name"], kept["level"]) == ("march.835", "file")
    assert "payment total (BPR02) is 50.00" in kept["reason"]
    text = cli("remittances", "quarantine", "--book", str(book.id)).stdout
    assert "march.835" in text and "unbalanced_remittance" in text
