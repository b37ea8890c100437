"""Bad input gets a 4xx application/problem+json and writes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from adapters.keys import Role
from adapters.runtime import Runtime
from tests.conftest import BookFixture, make_book
from tests.integration.http_fixtures import (
    assert_problem,
    auth,
    counts,
    entry_body,
    new_key,
    open_client,
    posting,
)


@pytest.fixture(scope="module")
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


def refused(
    client: Any,
    conn: psycopg.Connection,
    book: BookFixture,
    status: int,
    code: str | None = None,
    *,
    path: str = "/v1/journal-entries",
    key: str | None = None,
    **request: Any,
) -> dict[str, Any]:
    """POST, expect the problem, and check that the book has not changed at all."""
    before = counts(conn, book.id)
    headers = {**auth(key or book.admin_key), **request.pop("headers", {})}
    r = client.post(path, headers=headers, **request)
    body = assert_problem(r, status, code)
    assert counts(conn, book.id) == before
    return body


# --- amounts and currencies ------------------------------------------------------


@pytest.mark.parametrize("number", [10.0, 10, 1e3, 0.1])
def test_amount_as_json_number_is_refused_with_advice(
    client: Any, book: BookFixture, owner_conn: psycopg.Connection, number: Any
) -> None:
    body = entry_body()
    body["postings"][0]["amount"] = number
    body["postings"][1]["amount"] = -number
    problem = refused(client, owner_conn, book, 400, "validation_error", json=body)
    assert "decimal string" in problem["detail"]


@pytest.mark.parametrize(
    "amount",
    ["abc", "1e3", "NaN", "nan", "Infinity", "-Infinity", " 1.00", "1.00 ", "1,00", "", "+1.00",
     "1.", ".5", "0x10", "1_000.00",
     "\u0661\u0660"],  # Arabic-Indic digits, which Decimal() itself would take
)  # fmt: skip
def test_non_numeric_amount_is_refused(
    client: Any, book: BookFixture, owner_conn: psycopg.Connection, amount: str
) -> None:
    body = entry_body()
    body["postings"][0]["amount"] = amount
    problem = refused(client, owner_conn, book, 422, "invalid_amount", json=body)
    assert problem["detail"]


@pytest.mark.parametrize(
    ("currency", "amount"),
    [("USD", "1.005"), ("USD", "0.001"), ("EUR", "10.123"), ("JPY", "1.5"), ("JPY", "100.01"),
     ("KWD", "1.0005")],
)  # fmt: skip
def test_more_decimals_than_the_currency_allows(
    client: Any, runtime: Runtime, owner_conn: psycopg.Connection, currency: str, amount: str
) -> None:
    book = make_book(runtime, currency)
    body = entry_body(amount=amount, currency=currency)
    problem = refused(client, owner_conn, book, 422, "amount_too_precise", json=body)
    assert currency in problem["detail"]


def test_trailing_zeros_within_the_minor_unit_are_fine(client: Any, runtime: Runtime) -> None:
    jpy = make_book(runtime, "JPY")
    r = client.post(
        "/v1/journal-entries",
        json=entry_body(amount="100.000", currency="JPY"),
        headers=auth(jpy.admin_key),
    )
    assert r.status_code == 201, r.text
    assert [p["amount"] for p in r.json()["postings"]] == ["100", "-100"]


@pytest.mark.parametrize("currency", ["XYZ", "usd", "US", "", "USDD", "XXX1"])
def test_unknown_currency(
    client: Any, book: BookFixture, owner_conn: psycopg.Connection, currency: str
) -> None:
    body = entry_body(currency=currency)
    refused(client, owner_conn, book, 422, "unknown_currency", json=body)


# --- entries the ledger refuses ---------------------------------------------------


def test_unbalanced_entry(client: Any, book: BookFixture, owner_conn: psycopg.Connection) -> None:
    body = entry_body()
    body["postings"][1]["amount"] = "-9.99"
    problem = refused(client, owner_conn, book, 422, "unbalanced_entry", json=body)
    assert "USD" in problem["detail"]


def test_unbalanced_per_currency(
    client: Any, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    body = {
        "effective_date": "2026-01-05",
        "postings": [
            posting("Assets:Bank:Operating", "10.00", "USD"),
            posting("Income:Services", "-10.00", "EUR"),
        ],
    }
    refused(client, owner_conn, book, 422, "unbalanced_entry", json=body)


@pytest.mark.parametrize(
    "postings",
    [
        [posting("Assets:Bank:Operating", "0.00")],
        [posting("Assets:Bank:Operating", "10.00")],
        [],
    ],
    ids=["single-zero", "single", "none"],
)
def test_fewer_than_two_postings(
    client: Any, book: BookFixture, owner_conn: psycopg.Connection, postings: list[Any]
) -> None:
    body = {"effective_date": "2026-01-05", "postings": postings}
    problem = refused(client, owner_conn, book, 422, json=body)
    assert problem["code"] in {"invalid_entry", "unbalanced_entry"}


def test_unknown_account(client: Any, book: BookFixture, owner_conn: psycopg.Connection) -> None:
    body = entry_body(credit="Income:Does-Not-Exist")
    problem = refused(client, owner_conn, book, 404, "not_found", json=body)
    assert "Income:Does-Not-Exist" in problem["detail"]


def test_closed_account(client: Any, book: BookFixture, owner_conn: psycopg.Connection) -> None:
    h = auth(book.admin_key)
    created = client.post("/v1/accounts", json={"name": "Income:Old-Line"}, headers=h)
    assert created.status_code == 201, created.text
    closed = client.post(f"/v1/accounts/{created.json()['id']}/close", headers=h)
    assert closed.status_code == 200, closed.text
    assert closed.json()["status"] == "closed"
    refused(
        client, owner_conn, book, 422, "account_closed", json=entry_body(credit="Income:Old-Line")
    )


def test_currency_the_account_does_not_allow(
    client: Any, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    h = auth(book.admin_key)
    created = client.post(
        "/v1/accounts", json={"name": "Assets:Bank:Usd-Only", "currencies": ["USD"]}, headers=h
    )
    assert created.status_code == 201, created.text
    body = entry_body(debit="Assets:Bank:Usd-Only", currency="EUR")
    refused(client, owner_conn, book, 422, "currency_not_allowed", json=body)
    ok = client.post(
        "/v1/journal-entries", json=entry_body(debit="Assets:Bank:Usd-Only"), headers=h
    )
    assert ok.status_code == 201, ok.text


def test_entry_in_a_closed_period(
    client: Any, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    h = auth(book.admin_key)
    assert client.post("/v1/periods/2026-01/close", headers=h).status_code == 200
    refused(client, owner_conn, book, 422, "period_closed", json=entry_body("2026-01-01"))
    refused(client, owner_conn, book, 422, "period_closed", json=entry_body("2026-01-31"))


# --- malformed requests -------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b"{", b"not json", b"", b'{"postings": [}', b"[]", b"null", b'"entry"'],
    ids=["truncated", "text", "empty", "broken", "array", "null", "string"],
)
def test_malformed_json(
    client: Any, book: BookFixture, owner_conn: psycopg.Connection, raw: bytes
) -> None:
    refused(
        client,
        owner_conn,
        book,
        400,
        content=raw,
        headers={"Content-Type": "application/json"},
    )


def test_unknown_fields(client: Any, book: BookFixture, owner_conn: psycopg.Connection) -> None:
    top = dict(entry_body(), amount="10.00")
    problem = refused(client, owner_conn, book, 400, "validation_error", json=top)
    assert "amount" in problem["detail"]
    nested = entry_body()
    nested["postings"][0]["side"] = "debit"
    problem = refused(client, owner_conn, book, 400, "validation_error", json=nested)
    assert "side" in problem["detail"]
    missing = entry_body()
    del missing["postings"][0]["currency"]
    refused(client, owner_conn, book, 400, "validation_error", json=missing)


@pytest.mark.parametrize(
    "day", ["2026-02-30", "2026/01/05", "05-01-2026", "tomorrow", "2026-1-5", "", 20260105]
)
def test_invalid_dates(
    client: Any, book: BookFixture, owner_conn: psycopg.Connection, day: Any
) -> None:
    refused(client, owner_conn, book, 400, "validation_error", json=entry_body(effective_date=day))


def test_invalid_query_dates(client: Any, book: BookFixture) -> None:
    h = auth(book.admin_key)
    for path, params in [
        ("/v1/balances", {"account": "Income:Services", "as_of": "2026-02-30"}),
        ("/v1/reports/trial-balance", {"as_of": "yesterday"}),
        ("/v1/journal-entries", {"to": "2026-01-32"}),
    ]:
        assert_problem(client.get(path, params=params, headers=h), 400)


def test_invalid_clock_body(client: Any, runtime: Runtime, owner_conn: psycopg.Connection) -> None:
    from datetime import date

    sim = make_book(runtime, "USD", date(2026, 1, 1))
    refused(client, owner_conn, sim, 400, path="/v1/clock", json={"now": "2026-02-30"})
    refused(client, owner_conn, sim, 400, path="/v1/clock", json={})
    clock = client.get("/v1/clock", headers=auth(sim.admin_key)).json()
    assert clock["now"] == "2026-01-01"


# --- other books' keys ---------------------------------------------------------------


def test_a_key_of_another_book_sees_nothing_of_this_one(
    client: Any, runtime: Runtime, owner_conn: psycopg.Connection
) -> None:
    a = make_book(runtime)
    b = make_book(runtime)
    made = client.post(
        "/v1/journal-entries", json=entry_body("2026-01-05", "50.00"), headers=auth(a.admin_key)
    )
    assert made.status_code == 201
    entry_id = made.json()["id"]
    account_a = client.get("/v1/accounts/Income:Services", headers=auth(a.admin_key)).json()["id"]

    assert_problem(client.get(f"/v1/journal-entries/{entry_id}", headers=auth(b.admin_key)), 404)
    assert_problem(client.get(f"/v1/accounts/{account_a}", headers=auth(b.admin_key)), 404)
    assert_problem(
        client.get("/v1/balances", params={"account": account_a}, headers=auth(b.admin_key)), 404
    )
    listed = client.get("/v1/journal-entries", headers=auth(b.admin_key)).json()
    assert listed["data"] == []
    refused(
        client, owner_conn, a, 404, path=f"/v1/journal-entries/{entry_id}/reverse", key=b.admin_key
    )
    refused(
        client, owner_conn, b, 404, path=f"/v1/journal-entries/{entry_id}/reverse", key=b.admin_key
    )

    # Account names resolve inside the key's own book only.
    a_before = counts(owner_conn, a.id)
    r = client.post(
        "/v1/journal-entries", json=entry_body("2026-01-05", "7.00"), headers=auth(b.admin_key)
    )
    assert r.status_code == 201, r.text
    assert counts(owner_conn, a.id) == a_before
    own = owner_conn.execute(
        "select p.book_id, a.book_id from postings p"
        " join accounts a on a.book_id = p.book_id and a.id = p.account_id"
        " where p.entry_id = %s",
        (r.json()["id"],),
    ).fetchall()
    assert own == [(b.id, b.id), (b.id, b.id)]

    def balance(key: str) -> Any:
        return client.get(
            "/v1/balances",
            params={"account": "Income:Services", "as_of": "2026-01-31"},
            headers=auth(key),
        ).json()["balances"]

    assert balance(a.admin_key) == [{"currency": "USD", "balance": "-50.00"}]
    assert balance(b.admin_key) == [{"currency": "USD", "balance": "-7.00"}]

    # Postings name accounts; another book's account id is no account name here either.
    by_id = entry_body(credit=account_a)
    refused(client, owner_conn, b, 422, "invalid_account_name", json=by_id)
    assert counts(owner_conn, a.id) == a_before


# --- authentication and roles ----------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Bearer not-a-key",
        "Bearer ab_00000000000000000000000000000000_secret",
        "Token {key}",
        "Bearer {key}x",
        "Bearer {book}",
    ],
)
def test_missing_or_invalid_authorization(
    client: Any, book: BookFixture, owner_conn: psycopg.Connection, header: str | None
) -> None:
    headers = (
        {} if header is None else {"Authorization": header.format(key=book.admin_key, book=book.id)}
    )
    before = counts(owner_conn, book.id)
    r = client.post("/v1/journal-entries", json=entry_body(), headers=headers)
    assert_problem(r, 401, "unauthenticated")
    assert counts(owner_conn, book.id) == before
    assert_problem(client.get("/v1/accounts", headers=headers), 401, "unauthenticated")


def test_revoked_key_is_refused(
    client: Any, runtime: Runtime, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    key = new_key(runtime, book.id, Role.ACCOUNTANT)
    owner_conn.execute(
        "update api_keys set revoked_at = now() where book_id = %s and role = 'accountant'",
        (book.id,),
    )
    assert_problem(client.get("/v1/accounts", headers=auth(key)), 401)


@pytest.mark.parametrize("role", [Role.AUDITOR, Role.ERP, Role.OPERATOR])
def test_roles_that_may_not_post(
    client: Any, runtime: Runtime, book: BookFixture, owner_conn: psycopg.Connection, role: Role
) -> None:
    key = new_key(runtime, book.id, role)
    original = client.post(
        "/v1/journal-entries", json=entry_body(), headers=auth(book.admin_key)
    ).json()
    problem = refused(client, owner_conn, book, 403, "forbidden", key=key, json=entry_body())
    assert role.value in problem["detail"]
    refused(
        client, owner_conn, book, 403, "forbidden", key=key,
        path="/v1/journal-entries/batch", json={"entries": [entry_body()]},
    )  # fmt: skip
    refused(
        client, owner_conn, book, 403, "forbidden", key=key,
        path=f"/v1/journal-entries/{original['id']}/reverse",
    )  # fmt: skip
    refused(
        client, owner_conn, book, 403, "forbidden", key=key,
        path="/v1/accounts", json={"name": "Assets:Sneaky"},
    )  # fmt: skip
    refused(client, owner_conn, book, 403, "forbidden", key=key, path="/v1/periods/2026-01/close")
    # ... and may still read
    assert client.get("/v1/journal-entries", headers=auth(key)).status_code == 200
    assert client.get("/v1/reports/trial-balance", headers=auth(key)).status_code == 200


def test_accountant_may_post(client: Any, runtime: Runtime, book: BookFixture) -> None:
    key = new_key(runtime, book.id, Role.ACCOUNTANT)
    r = client.post("/v1/journal-entries", json=entry_body(), headers=auth(key))
    assert r.status_code == 201, r.text


def test_auditor_may_not_move_the_clock(
    client: Any, runtime: Runtime, owner_conn: psycopg.Connection
) -> None:
    from datetime import date

    sim = make_book(runtime, "USD", date(2026, 1, 1))
    key = new_key(runtime, sim.id, Role.AUDITOR)
    refused(
        client,
        owner_conn,
        sim,
        403,
        "forbidden",
        key=key,
        path="/v1/clock",
        json={"now": "2026-02-01"},
    )
    assert client.get("/v1/clock", headers=auth(key)).json()["now"] == "2026-01-01"


# --- batches and reversals ------------------------------------------------------------------


def test_empty_batch(client: Any, book: BookFixture, owner_conn: psycopg.Connection) -> None:
    refused(client, owner_conn, book, 422, path="/v1/journal-entries/batch", json={"entries": []})
    refused(client, owner_conn, book, 400, path="/v1/journal-entries/batch", json={})
    refused(client, owner_conn, book, 400, path="/v1/journal-entries/batch", json=[entry_body()])


def _bad_in_batch(kind: str) -> dict[str, Any]:
    body = entry_body("2026-01-07", "3.00")
    if kind == "unbalanced":
        body["postings"][1]["amount"] = "-2.99"
    elif kind == "unknown_account":
        body["postings"][1]["account"] = "Income:Nowhere"
    elif kind == "too_precise":
        body["postings"][0]["amount"] = "3.001"
    elif kind == "number":
        body["postings"][0]["amount"] = 3.0
    elif kind == "closed_account":
        body["postings"][1]["account"] = "Income:Retired"
    elif kind == "closed_period":
        body["effective_date"] = "2025-12-31"
    elif kind == "not_allowed_currency":
        body["postings"][0]["account"] = "Assets:Bank:Usd-Only"
        body["postings"][0]["currency"] = body["postings"][1]["currency"] = "EUR"
    return body


@pytest.mark.parametrize(
    "kind",
    ["unbalanced", "unknown_account", "too_precise", "number", "closed_account",
     "closed_period", "not_allowed_currency"],
)  # fmt: skip
def test_batch_with_one_bad_entry_writes_nothing(
    client: Any, book: BookFixture, owner_conn: psycopg.Connection, kind: str
) -> None:
    h = auth(book.admin_key)
    for name, extra in (("Income:Retired", {}), ("Assets:Bank:Usd-Only", {"currencies": ["USD"]})):
        assert (
            client.post("/v1/accounts", json={"name": name, **extra}, headers=h).status_code == 201
        )
    retired = client.get("/v1/accounts/Income:Retired", headers=h).json()["id"]
    assert client.post(f"/v1/accounts/{retired}/close", headers=h).status_code == 200
    assert client.post("/v1/periods/2025-12/close", headers=h).status_code == 200

    entries = [
        entry_body("2026-01-05", "1.00"),
        entry_body("2026-01-06", "2.00"),
        _bad_in_batch(kind),
    ]
    entries.append(entry_body("2026-01-08", "4.00"))
    status = 400 if kind == "number" else None
    before = counts(owner_conn, book.id)
    r = client.post("/v1/journal-entries/batch", json={"entries": entries}, headers=h)
    assert 400 <= r.status_code < 500, r.text
    problem = assert_problem(r, status or r.status_code)
    assert counts(owner_conn, book.id) == before
    if kind in {"unbalanced", "too_precise"}:
        assert problem.get("entry") == 2, problem


def test_batch_larger_than_the_limit(
    client: Any, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    entries = [entry_body("2026-01-05", "1.00")] * 1001
    refused(
        client, owner_conn, book, 422, path="/v1/journal-entries/batch", json={"entries": entries}
    )


def test_reversing_twice_is_a_conflict(
    client: Any, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    h = auth(book.admin_key)
    original = client.post("/v1/journal-entries", json=entry_body(), headers=h).json()
    path = f"/v1/journal-entries/{original['id']}/reverse"
    first = client.post(path, headers=h)
    assert first.status_code == 201, first.text
    refused(client, owner_conn, book, 409, "already_reversed", path=path)
    refused(
        client,
        owner_conn,
        book,
        409,
        "already_reversed",
        path=path,
        json={"effective_date": "2026-03-01"},
    )
    refused(client, owner_conn, book, 409, "already_reversed", path=path, json={"memo": "again"})


def test_reversing_a_reversal_is_allowed_once(client: Any, book: BookFixture) -> None:
    h = auth(book.admin_key)
    original = client.post("/v1/journal-entries", json=entry_body(), headers=h).json()
    reversal = client.post(f"/v1/journal-entries/{original['id']}/reverse", headers=h).json()
    again = client.post(f"/v1/journal-entries/{reversal['id']}/reverse", headers=h)
    assert again.status_code == 201, again.text
    assert [p["amount"] for p in again.json()["postings"]] == ["10.00", "-10.00"]


@pytest.mark.parametrize("entry_id", ["0b0c8a8e-0000-4000-8000-000000000000", "nope", "1"])
def test_reverse_or_get_an_unknown_entry(
    client: Any, book: BookFixture, owner_conn: psycopg.Connection, entry_id: str
) -> None:
    refused(
        client, owner_conn, book, 404, "not_found", path=f"/v1/journal-entries/{entry_id}/reverse"
    )
    assert_problem(client.get(f"/v1/journal-entries/{entry_id}", headers=auth(book.admin_key)), 404)


def test_unknown_route_and_method_are_problems(client: Any, book: BookFixture) -> None:
    h = auth(book.admin_key)
    assert_problem(client.get("/v1/nothing-here", headers=h), 404)
    assert_problem(client.delete("/v1/journal-entries", headers=h), 405)


def test_problem_body_is_json_with_the_rfc_members(client: Any, book: BookFixture) -> None:
    body = entry_body()
    body["postings"][1]["amount"] = "-1.00"
    r = client.post("/v1/journal-entries", json=body, headers=auth(book.admin_key))
    problem = json.loads(r.content)
    assert r.headers["content-type"] == "application/problem+json"
    assert problem["type"].startswith("https://")
    assert problem["title"] == "Unbalanced entry"
    assert problem["status"] == 422
