"""The OpenAPI document tells a client the truth (issue 7, item 18).

Its answers are typed with their real shapes, its errors are problem+json, it
names the bearer key and the Idempotency-Key header, and its docs pages work
offline. A bounded schemathesis run sends generated requests to every
operation on a real database and checks each answer against the document.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from adapters.runtime import Runtime
from tests.conftest import BookFixture
from tests.integration.http_fixtures import auth, entry_body, open_client


@pytest.fixture(scope="module")
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


@pytest.fixture(scope="module")
def document(client: Any) -> dict[str, Any]:
    r = client.get("/schema/openapi.json")
    assert r.status_code == 200
    body: dict[str, Any] = r.json()
    return body


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in ("get", "post", "put", "delete", "patch"):
                yield path, method, operation


def test_success_answers_have_their_real_shapes(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    untyped = []
    for path, method, operation in _operations(document):
        for status, response in operation["responses"].items():
            if not status.startswith("2"):
                continue
            for media, content in response["content"].items():
                if media == "application/json" and content["schema"].get("type") == "string":
                    untyped.append((method, path))
    assert untyped == []
    invoice = document["paths"]["/v1/invoices/{ref}/finalize"]["post"]["responses"]["200"]
    ref = invoice["content"]["application/json"]["schema"]["$ref"]
    shape = schemas[ref.rsplit("/", 1)[1]]
    assert {"id", "status", "amount_due", "lines"} <= set(shape["required"])
    assert shape["properties"]["amount_due"] == {"type": "string"}
    customer = document["paths"]["/v1/customers"]["post"]["responses"]
    assert set(customer) >= {"200", "201"}  # an upsert answers 201 when it creates


def test_errors_are_documented_as_problems(document: dict[str, Any]) -> None:
    problem = document["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"}
    for path, method, operation in _operations(document):
        errors = {s: r for s, r in operation["responses"].items() if s[0] in "45"}
        assert "400" in errors, (method, path)
        for response in errors.values():
            assert list(response["content"]) == ["application/problem+json"], (method, path)
        if path.startswith("/v1/"):
            assert {"401", "403"} <= set(errors), (method, path)


def test_every_v1_operation_needs_the_bearer_key_and_every_post_takes_an_idempotency_key(
    document: dict[str, Any],
) -> None:
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for path, method, operation in _operations(document):
        if path.startswith("/v1/"):
            assert operation["security"] == [{"bearerAuth": []}], (method, path)
        headers = {p["name"] for p in operation.get("parameters", []) if p["in"] == "header"}
        assert ("Idempotency-Key" in headers) == (method == "post"), (method, path)


def test_every_operation_has_a_summary_and_a_tag(document: dict[str, Any]) -> None:
    summaries = set()
    for path, method, operation in _operations(document):
        assert operation["tags"] and operation["tags"][0], (method, path)
        summary = operation["summary"]
        # a sentence, not a handler name (snake_case) or an operation id (camelCase)
        assert " " in summary and not re.search(r"[a-z][A-Z]|^[a-z_]+$", summary), summary
        summaries.add(summary)
    ops = list(_operations(document))
    assert len(summaries) == len(ops)
    finalize = document["paths"]["/v1/invoices/{ref}/finalize"]["post"]
    assert (finalize["summary"], finalize["tags"]) == ("Finalize invoice", ["invoices"])


@pytest.mark.parametrize("page", ["/schema", "/schema/swagger"])
def test_docs_pages_load_nothing_from_other_hosts(client: Any, page: str) -> None:
    r = client.get(page)
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", r.text)
    assert assets and not [a for a in assets if re.match(r"(https?:)?//", a)], assets
    for asset in assets:
        loaded = client.get(asset)
        assert loaded.status_code == 200, asset
        assert len(loaded.content) > 500, asset
    assert (
        "SwaggerUIBundle"
        in client.get(next(a for a in assets if a.endswith("swagger-ui-bundle.js"))).text
    )


# --- schemathesis ------------------------------------------------------------------------

# The multipart statement upload is tested with real statement files elsewhere.
SKIPPED = {"uploadBankStatement"}
# Which seeded resource a path parameter names, by the collection it follows.
PINNED = {
    "customers": "customer",
    "products": "product",
    "prices": "price",
    "invoices": "invoice",
    "payments": "payment",
    "refunds": "refund",
    "credit-notes": "credit_note",
    "subscriptions": "subscription",
    "billing-runs": "billing_run",
    "accounts": "account",
    "journal-entries": "entry",
    "periods": "period",
}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
]


def _seed(client: Any, headers: dict[str, str]) -> dict[str, str]:
    """One of each resource, so generated reads find real documents to check."""

    def post(path: str, body: dict[str, Any]) -> str:
        r = client.post(path, json=body, headers=headers)
        assert r.status_code in (200, 201), (path, r.text)
        return str(r.json().get("id") or r.json().get("name"))

    ids = {"account": post("/v1/accounts", {"name": "Assets:Seeded", "currencies": ["USD"]})}
    ids["entry"] = post("/v1/journal-entries", entry_body())
    ids["customer"] = post("/v1/customers", {"name": "Seeded Ltd", "currency": "USD"})
    ids["product"] = post("/v1/products", {"name": "Plan"})
    ids["price"] = post(
        "/v1/prices",
        {"product": ids["product"], "currency": "USD", "charge_model": "per_unit",
         "unit_amount": "30.00", "interval": "month"},
    )  # fmt: skip
    ids["invoice"] = post(
        "/v1/invoices",
        {"customer": ids["customer"], "auto_finalize": True,
         "lines": [{"description": "Setup", "unit_amount": "100.00"}]},
    )  # fmt: skip
    ids["payment"] = post(
        "/v1/payments",
        {"customer": ids["customer"], "amount": "40.00", "currency": "USD",
         "method": "bank_transfer", "invoice": ids["invoice"]},
    )  # fmt: skip
    ids["refund"] = post("/v1/refunds", {"amount": "5.00", "payment": ids["payment"]})
    ids["credit_note"] = post("/v1/credit-notes", {"invoice": ids["invoice"], "amount": "10.00"})
    ids["subscription"] = post(
        "/v1/subscriptions", {"customer": ids["customer"], "items": [{"price": ids["price"]}]}
    )
    ids["billing_run"] = post("/v1/billing-runs", {})
    ids["period"] = "2020-01"  # long past: closing it changes nothing the run reads
    return ids


def _pinned(path: str, ids: dict[str, str]) -> dict[str, str]:
    parts = path.split("/")
    return {
        part[1:-1]: ids[PINNED[parts[i - 1]]]
        for i, part in enumerate(parts)
        if part.startswith("{") and parts[i - 1] in PINNED
    }


@pytest.mark.slow
def test_generated_requests_get_the_answers_the_document_promises(
    client: Any, document: dict[str, Any], book: BookFixture
) -> None:
    schema = schemathesis.openapi.from_dict(document)
    # NUL characters are refused by the database's text type (issue 7, item 8, fixed apart).
    schema.config.generation.update(allow_x00=False, codec="utf-8")
    headers = auth(book.admin_key)
    ids = _seed(client, headers)
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.definition.raw.get("operationId") in SKIPPED:
            continue

        @settings(
            max_examples=4,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(path_parameters=_pinned(operation.path, ids)))
        def check(case: Any) -> None:
            kwargs = case.as_transport_kwargs(headers=headers)
            response = client.request(
                kwargs["method"],
                kwargs["url"].removeprefix("http://localhost"),
                headers=kwargs.get("headers"),
                params=kwargs.get("params"),
                json=kwargs.get("json"),
                content=kwargs.get("data"),
            )
            case.validate_response(response, checks=CHECKS)

        try:
            check()
        except Exception as exc:  # collect every operation's failure, not only the first
            failures.append(f"{operation.label}: {exc}"[:2000])
    assert failures == [], "\n\n".join(failures)
