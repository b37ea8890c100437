"""The rendering provider: an encounter names the billing provider and, when
someone else performed the service, a rendering provider; the 837P carries
loop 2310B (NM1*82) only then, and pyx12 still finds 0 errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from adapters.runtime import Runtime
from tests.conftest import BookFixture, make_book
from tests.healthcare.test_http import TODAY, _post, counts, practice
from tests.healthcare.test_rules import pyx12_errors
from tests.integration.http_fixtures import assert_problem, auth
from tests.integration.test_cli import cli  # noqa: F401  (shared fixture)

RENDERING_NPI = "1245319599"
LOOP_2310B = f"NM1*82*1*SMITH*JANE****XX*{RENDERING_NPI}~\nPRV*PE*PXC*207R00000X~"


def _rendering(client: Any, key: str) -> dict[str, Any]:
    body = {"name": "Smith", "first_name": "Jane", "npi": RENDERING_NPI, "taxonomy": "207R00000X"}
    return _post(client, key, "/v1/providers", body)  # type: ignore[no-any-return]


def _encounter(ids: dict[str, str], rendering: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "patient": ids["patient"],
        "provider": ids["provider"],
        "date_of_service": "2026-02-11",
        "diagnoses": ["J02.9"],
        "charges": [{"code": "99213"}],
    }
    if rendering is not None:
        body["rendering_provider"] = rendering
    return body


def _submitted_837(client: Any, key: str, encounter: str) -> str:
    claim = _post(client, key, "/v1/claims", {"encounter": encounter})
    _post(client, key, f"/v1/claims/{claim['id']}/submit", {}, 200)
    answer = client.get(f"/v1/claims/{claim['id']}/837", headers=auth(key))
    assert answer.status_code == 200, answer.text
    return str(answer.text)


def test_a_rendering_provider_other_than_the_billing_one_is_loop_2310b(
    client: Any, sim_book: BookFixture, tmp_path: Path
) -> None:
    key = sim_book.admin_key
    ids = practice(client, key)
    rendering = _rendering(client, key)
    encounter = _post(client, key, "/v1/encounters", _encounter(ids, rendering["id"]))
    assert encounter["rendering_provider"] == rendering["id"]
    assert encounter["provider"] == ids["provider"]
    text = _submitted_837(client, key, encounter["id"])
    assert pyx12_errors(text, tmp_path) == []
    assert LOOP_2310B in text
    # 2310B sits in the claim loop: after HI, before the first service line.
    assert text.index("HI*ABK:J029") < text.index("NM1*82*") < text.index("LX*1~")
    assert "NM1*85*2*GOOD HEALTH CLINIC*****XX*1234567893~" in text  # billing stays 2010AA


def test_no_loop_2310b_when_the_billing_provider_rendered_the_service(
    client: Any, sim_book: BookFixture, tmp_path: Path
) -> None:
    key = sim_book.admin_key
    ids = practice(client, key)
    named_twice = _post(client, key, "/v1/encounters", _encounter(ids, ids["provider"]))
    assert named_twice["rendering_provider"] is None  # the same provider: nothing to say
    for encounter in (ids["encounter"], named_twice["id"]):
        text = _submitted_837(client, key, encounter)
        assert pyx12_errors(text, tmp_path) == []
        assert "NM1*82*" not in text


def test_an_unknown_rendering_provider_is_refused_and_writes_nothing(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    ids = practice(client, key)
    with runtime.connection() as conn:
        before = counts(conn, sim_book.id)
    for ref in ("4b1f6a2e-0000-4000-8000-000000000000", "not-an-id"):
        answer = client.post("/v1/encounters", json=_encounter(ids, ref), headers=auth(key))
        problem = assert_problem(answer, 404, "not_found")
        assert f"provider {ref!r} does not exist" in problem["detail"]
    with runtime.connection() as conn:
        assert counts(conn, sim_book.id) == before
        (encounters,) = conn.execute(
            "select count(*) from encounters where book_id = %s", (sim_book.id,)
        ).fetchone() or (0,)
    assert encounters == 1  # the practice's own


def test_the_cli_records_an_encounter_with_its_rendering_provider(
    cli: Any,  # noqa: F811
    client: Any,
    runtime: Runtime,
    tmp_path: Path,
) -> None:
    book = make_book(runtime, "USD", TODAY)
    key = book.admin_key
    ids = practice(client, key)
    rendering = _rendering(client, key)
    body = tmp_path / "encounter.json"
    body.write_text(json.dumps(_encounter(ids, rendering["id"])))
    made = cli("encounters", "create", str(body), "--book", str(book.id), "--format", "json")
    assert made.returncode == 0, made.stderr
    encounter = json.loads(made.stdout)
    assert (encounter["rendering_provider"], encounter["total"]) == (rendering["id"], "120.00")
    text = _submitted_837(client, key, encounter["id"])
    assert pyx12_errors(text, tmp_path) == [] and LOOP_2310B in text
    body.write_text(json.dumps(_encounter(ids, "4b1f6a2e-0000-4000-8000-000000000000")))
    refused = cli("encounters", "create", str(body), "--book", str(book.id))
    assert refused.returncode == 2 and "does not exist" in refused.stderr
    assert "Traceback" not in refused.stderr
