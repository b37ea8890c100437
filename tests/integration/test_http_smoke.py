from __future__ import annotations

from collections.abc import Iterator

import pytest
from litestar.testing import TestClient

from adapters.http.app import create_app
from adapters.runtime import Runtime
from tests.conftest import BookFixture


@pytest.fixture(scope="module")
def client(runtime: Runtime) -> Iterator[TestClient]:  # type: ignore[type-arg]
    with TestClient(create_app(runtime, run_sealer=False)) as c:
        yield c


def test_post_entry_over_http(client: TestClient, book: BookFixture) -> None:  # type: ignore[type-arg]
    headers = {"Authorization": f"Bearer {book.admin_key}"}
    body = {
        "effective_date": "2026-01-05",
        "memo": "sale",
        "postings": [
            {"account": "Assets:Bank:Operating", "amount": "10.00", "currency": "USD"},
            {"account": "Income:Services", "amount": "-10.00", "currency": "USD"},
        ],
    }
    r = client.post("/v1/journal-entries", json=body, headers=headers)
    assert r.status_code == 201, r.text
    entry = r.json()
    assert [p["amount"] for p in entry["postings"]] == ["10.00", "-10.00"]
    r = client.get(
        "/v1/balances",
        params={"account": "Income:Services", "as_of": "2026-01-05"},
        headers=headers,
    )
    assert r.json()["balances"] == [{"currency": "USD", "balance": "-10.00"}]
    bad = dict(body, postings=[dict(p, amount=10.0) for p in body["postings"]])
    r = client.post("/v1/journal-entries", json=bad, headers=headers)
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("application/problem+json")
    print(r.json())
