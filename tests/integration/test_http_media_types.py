"""Media types at the edge (issue 7, item 13): JSON routes take JSON only, text
responses name their charset once, and the OpenAPI document gives the status
codes the routes answer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from adapters.runtime import Runtime
from tests.conftest import BookFixture
from tests.integration.http_fixtures import assert_problem, auth, counts, entry_body, open_client


@pytest.fixture(scope="module")
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/journal-entries", entry_body()),
        ("/v1/accounts", {"name": "Assets:Petty", "currencies": ["USD"]}),
        ("/v1/customers", {"name": "Text Plain Ltd", "currency": "USD"}),
    ],
)
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_a_json_body_sent_as_another_media_type_is_refused_with_415(
    client: Any,
    book: BookFixture,
    owner_conn: psycopg.Connection,
    path: str,
    body: dict[str, Any],
    content_type: str,
) -> None:
    before = counts(owner_conn, book.id)
    r = client.post(
        path,
        content=json.dumps(body),
        headers={**auth(book.admin_key), "Content-Type": content_type},
    )
    problem = assert_problem(r, 415, "unsupported_media_type")
    assert content_type in problem["detail"]
    assert counts(owner_conn, book.id) == before


def test_json_with_a_charset_or_a_json_suffix_is_still_json(client: Any, book: BookFixture) -> None:
    for content_type in ("application/json; charset=utf-8", "application/merge-patch+json"):
        r = client.post(
            "/v1/journal-entries",
            content=json.dumps(entry_body(memo=content_type)),
            headers={**auth(book.admin_key), "Content-Type": content_type},
        )
        assert r.status_code == 201, r.text


def _invoice(client: Any, book: BookFixture) -> str:
    headers = auth(book.admin_key)
    customer = client.post(
        "/v1/customers", json={"name": "Charset GmbH", "currency": "USD"}, headers=headers
    ).json()
    invoice = client.post(
        "/v1/invoices",
        json={"customer": customer["id"], "lines": [{"description": "x", "unit_amount": "5.00"}]},
        headers=headers,
    )
    assert invoice.status_code == 201, invoice.text
    return str(invoice.json()["id"])


def test_html_text_and_csv_responses_name_their_charset_once(
    client: Any, book: BookFixture
) -> None:
    headers = auth(book.admin_key)
    assert client.post("/v1/journal-entries", json=entry_body(), headers=headers).status_code == 201
    responses = {
        "html": client.get(f"/v1/invoices/{_invoice(client, book)}/document", headers=headers),
        "beancount": client.get("/v1/exports/beancount", headers=headers),
        "csv": client.get("/v1/exports/journal?format=xero", headers=headers),
    }
    expected = {
        "html": "text/html; charset=utf-8",
        "beancount": "text/plain; charset=utf-8",
        "csv": "text/csv; charset=utf-8",
    }
    for name, r in responses.items():
        assert r.status_code == 200, (name, r.text)
        assert r.headers["content-type"] == expected[name], name


ACTIONS = {
    "/v1/invoices/{ref}/finalize": "finalizeInvoice",
    "/v1/invoices/{ref}/void": "voidInvoice",
    "/v1/invoices/{ref}/apply-credit": "applyCredit",
    "/v1/invoices/{ref}/mark-uncollectible": "markInvoiceUncollectible",
    "/v1/periods/{period}/close": "closePeriod",
    "/v1/periods/{period}/reopen": "reopenPeriod",
    "/v1/accounts/{account_id}/close": "closeAccount",
    "/v1/reconciliation/matches/{match_id}/unmatch": "unmatch",
    "/v1/reconciliation/auto-match": "autoMatch",
    "/v1/subscriptions/{ref}/cancel": "cancelSubscription",
    "/v1/subscriptions/{ref}/change": "changeSubscription",
    "/v1/subscriptions/{ref}/pause": "pauseSubscription",
    "/v1/subscriptions/{ref}/resume": "resumeSubscription",
    "/v1/clock": "advanceClock",
}


def test_openapi_documents_action_endpoints_as_200(client: Any) -> None:
    document = client.get("/schema/openapi.json").json()
    for path, operation_id in ACTIONS.items():
        operation = document["paths"][path]["post"]
        assert operation["operationId"] == operation_id
        codes = {code for code in operation["responses"] if code.startswith("2")}
        assert codes == {"200"}, (path, codes)
    created = document["paths"]["/v1/payments"]["post"]["responses"]
    assert {code for code in created if code.startswith("2")} == {"201"}
