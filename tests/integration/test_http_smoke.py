"""One pass through the ledger API the way a client uses it first."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from adapters.runtime import Runtime
from tests.conftest import BookFixture
from tests.integration.http_fixtures import assert_problem, auth, entry_body, open_client


@pytest.fixture(scope="module")
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


def test_post_read_and_refuse_over_http(client: Any, book: BookFixture) -> None:
    headers = auth(book.admin_key)
    r = client.post("/v1/journal-entries", json=entry_body("2026-01-05", "10.00"), headers=headers)
    assert r.status_code == 201, r.text
    entry = r.json()
    assert [p["amount"] for p in entry["postings"]] == ["10.00", "-10.00"]
    assert client.get(f"/v1/journal-entries/{entry['id']}", headers=headers).json() == entry
    r = client.get(
        "/v1/balances",
        params={"account": "Income:Services", "as_of": "2026-01-05"},
        headers=headers,
    )
    assert r.json()["balances"] == [{"currency": "USD", "balance": "-10.00"}]
    bad = entry_body()
    bad["postings"] = [dict(p, amount=float(p["amount"])) for p in bad["postings"]]
    problem = assert_problem(
        client.post("/v1/journal-entries", json=bad, headers=headers), 400, "validation_error"
    )
    assert "decimal string" in problem["detail"]
