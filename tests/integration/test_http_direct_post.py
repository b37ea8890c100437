"""POST /v1/journal-entries answered before Litestar's routing (adapters/http/direct_post.py):
the route's answer, headers, metrics and audit row; a revoked key refused at once;
anything unusual left to Litestar, which answers as before."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from adapters.http import direct_post
from adapters.runtime import Runtime
from tests.conftest import BookFixture
from tests.integration.http_fixtures import assert_problem, auth, counts, entry_body, open_client


@pytest.fixture(scope="module")
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


@pytest.fixture
def direct_posts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The Idempotency-Keys of the entries the direct way posted."""
    posted: list[str] = []
    real = direct_post.post_entry_once

    async def counting(*args: Any) -> Any:
        response = await real(*args)
        if response is not None:
            posted.append(args[5])
        return response

    monkeypatch.setattr(direct_post, "post_entry_once", counting)
    return posted


def test_the_direct_answer_is_the_routes_with_metrics_and_audit_row(
    client: Any, runtime: Runtime, book: BookFixture, direct_posts: list[str]
) -> None:
    h = auth(book.admin_key)
    assert client.get("/v1/accounts", headers=h).status_code == 200  # the key is cached
    direct = client.post(
        "/v1/journal-entries", json=entry_body(), headers={**h, "Idempotency-Key": "d-1"}
    )
    # A query string is Litestar's to handle (the route ignores it).
    routed = client.post(
        "/v1/journal-entries?via=route", json=entry_body(), headers={**h, "Idempotency-Key": "d-2"}
    )
    assert direct_posts == ["d-1"]
    assert direct.status_code == routed.status_code == 201
    assert direct.headers["content-type"] == routed.headers["content-type"] == "application/json"
    assert sorted(direct.headers) == sorted(routed.headers)
    assert int(direct.headers["content-length"]) == len(direct.content)
    assert direct.headers["x-request-id"] != routed.headers["x-request-id"]
    assert sorted(direct.json()) == sorted(routed.json())
    # A replay of the direct answer is byte for byte the first answer.
    again = client.post(
        "/v1/journal-entries", json=entry_body(), headers={**h, "Idempotency-Key": "d-1"}
    )
    assert again.status_code == 201
    assert again.content == direct.content
    assert again.headers["Idempotent-Replayed"] == "true"
    assert direct_posts == ["d-1"]

    metrics = client.get("/metrics").text
    assert 'route="/v1/journal-entries"' in metrics
    deadline = time.monotonic() + 10
    while True:
        with runtime.connection() as conn:
            row = conn.execute(
                "select method, path, status, idempotency_key, created, role from audit_log"
                " where book_id = %s and request_id = %s",
                (book.id, direct.headers["x-request-id"]),
            ).fetchone()
        if row is not None or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert row == (
        "POST",
        "/v1/journal-entries",
        201,
        "d-1",
        [direct.json()["id"]],
        "admin",
    )


def test_a_revoked_key_is_refused_at_once_on_the_direct_way(
    client: Any, book: BookFixture, direct_posts: list[str]
) -> None:
    """The direct way trusts only the key cache, which revocation empties."""
    made = client.post(
        "/v1/api-keys", json={"role": "accountant"}, headers=auth(book.admin_key)
    ).json()
    poster, key_id = made["api_key"], made["id"]
    for key in ("r-1", "r-2"):  # the first fills the cache, the second is direct
        r = client.post(
            "/v1/journal-entries",
            json=entry_body(),
            headers={**auth(poster), "Idempotency-Key": key},
        )
        assert r.status_code == 201, r.text
    assert direct_posts == ["r-2"]
    revoked = client.delete(f"/v1/api-keys/{key_id}", headers=auth(book.admin_key))
    assert revoked.status_code == 200, revoked.text
    refused = client.post(
        "/v1/journal-entries", json=entry_body(), headers={**auth(poster), "Idempotency-Key": "r-3"}
    )
    assert_problem(refused, 401, "unauthenticated")
    assert direct_posts == ["r-2"]


@pytest.mark.parametrize(
    ("headers", "body", "status", "code"),
    [
        ({"Idempotency-Key": "x" * 256}, entry_body(), 400, "invalid_idempotency_key"),
        ({"Content-Type": "text/plain"}, entry_body(), 415, "unsupported_media_type"),
        ({}, {**entry_body(), "extra": 1}, 400, None),
        ({}, {**entry_body(), "postings": []}, 422, None),
    ],
    ids=["long-key", "text-plain", "unknown-field", "no-postings"],
)
def test_what_the_direct_way_cannot_answer_litestar_answers_as_before(
    client: Any,
    book: BookFixture,
    direct_posts: list[str],
    headers: dict[str, str],
    body: dict[str, Any],
    status: int,
    code: str | None,
) -> None:
    h = auth(book.admin_key)
    assert client.get("/v1/accounts", headers=h).status_code == 200  # the key is cached
    r = client.post(
        "/v1/journal-entries",
        content=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **h, **headers},
    )
    assert_problem(r, status, code)
    assert direct_posts == []


def test_a_cached_key_whose_role_may_not_post_gets_the_routes_403(
    client: Any, book: BookFixture, direct_posts: list[str]
) -> None:
    operator = client.post(
        "/v1/api-keys", json={"role": "operator"}, headers=auth(book.admin_key)
    ).json()["api_key"]
    for _ in range(2):  # the second with the key cached
        r = client.post("/v1/journal-entries", json=entry_body(), headers=auth(operator))
        assert_problem(r, 403, "forbidden")
    assert direct_posts == []


def test_the_direct_post_draws_from_an_autocommit_pool_the_general_way_does_not(
    client: Any, book: BookFixture, direct_posts: list[str]
) -> None:
    """The one-statement post needs no transaction around it, so its pool's
    connections are opened in autocommit (no toggle per request); the general
    way's unit of work still runs in a transaction, committed explicitly."""
    h = auth(book.admin_key)
    assert client.get("/v1/accounts", headers=h).status_code == 200  # the key is cached
    posted = client.post(
        "/v1/journal-entries", json=entry_body(), headers={**h, "Idempotency-Key": "ac-1"}
    )
    assert posted.status_code == 201 and direct_posts == ["ac-1"]
    state = client.app.state

    async def autocommit(pool: Any) -> bool:
        async with pool.connection() as conn:
            return bool(conn.autocommit)

    portal = client.blocking_portal  # the app's event loop: the pools belong to it
    assert portal.call(autocommit, state.hot_pool) is True
    assert portal.call(autocommit, state.async_pool) is False


def _with_posting(**changes: Any) -> dict[str, Any]:
    body = entry_body()
    body["postings"][0] = {**body["postings"][0], **changes}
    return body


DECLINED = {
    "too-precise": _with_posting(amount="10.005"),
    "exponent": _with_posting(amount="1e1"),
    "number-not-string": _with_posting(amount=10),
    "unbalanced": _with_posting(amount="10.01"),
    "unknown-currency": entry_body(currency="XXX"),
    "lowercase-currency": entry_body(currency="usd"),
    "unknown-account": _with_posting(account="Assets:Nowhere"),
    "bad-account-name": _with_posting(account="assets:bank"),
    "one-posting": {**entry_body(), "postings": entry_body()["postings"][:1]},
    "long-memo": entry_body(memo="m" * 1001),
    "bad-date": entry_body(effective_date="2026-02-30"),
}


@pytest.mark.parametrize("case", list(DECLINED), ids=list(DECLINED))
def test_a_body_the_direct_way_declines_gets_the_routes_answer_byte_for_byte(
    client: Any, runtime: Runtime, book: BookFixture, direct_posts: list[str], case: str
) -> None:
    """The same request (same Idempotency-Key, same request id) once on the direct
    way and once with a query string, which only Litestar answers: the same status,
    content type and bytes, and nothing written by either."""
    h = auth(book.admin_key)
    assert client.get("/v1/accounts", headers=h).status_code == 200  # the key is cached
    with runtime.connection() as conn:
        before = counts(conn, book.id)
    answers = []
    for path in ("/v1/journal-entries", "/v1/journal-entries?via=route"):
        answers.append(
            client.post(
                path,
                content=json.dumps(DECLINED[case]).encode(),
                headers={
                    **h,
                    "Content-Type": "application/json",
                    "Idempotency-Key": f"declined-{case}",
                    "X-Request-Id": f"declined-{case}",
                },
            )
        )
    direct, routed = answers
    assert 400 <= direct.status_code < 500, direct.text
    assert direct.status_code == routed.status_code
    assert direct.headers["content-type"] == routed.headers["content-type"]
    # Litestar's 400s for a body it cannot decode name the URL asked, query included.
    assert direct.content == routed.content.replace(b"?via=route", b"")
    assert direct_posts == []
    with runtime.connection() as conn:
        assert counts(conn, book.id) == before


def test_an_amount_written_with_fewer_places_is_posted_directly_as_the_route_would(
    client: Any, book: BookFixture, direct_posts: list[str]
) -> None:
    """ "10.5" is not the usual shape ("10.50") but a valid amount: the direct way
    still posts it, written with the currency's places, as the route does."""
    h = auth(book.admin_key)
    assert client.get("/v1/accounts", headers=h).status_code == 200  # the key is cached
    bodies = {}
    for key, path in (("fp-1", "/v1/journal-entries"), ("fp-2", "/v1/journal-entries?x=1")):
        r = client.post(path, json=entry_body(amount="10.5"), headers={**h, "Idempotency-Key": key})
        assert r.status_code == 201, r.text
        bodies[key] = r.json()
    assert direct_posts == ["fp-1"]
    for body in bodies.values():
        assert [p["amount"] for p in body["postings"]] == ["10.50", "-10.50"]
