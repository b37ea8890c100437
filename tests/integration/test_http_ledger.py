"""The ledger endpoints of API.md over HTTP, on a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import psycopg
import pytest

from adapters.runtime import Runtime
from tests.billing.test_http_invoices import customer
from tests.conftest import BookFixture, make_book
from tests.integration.http_fixtures import (
    assert_problem,
    auth,
    counts,
    entry_body,
    open_client,
    posting,
)


@pytest.fixture(scope="module")
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


def post_entry(client: Any, key: str, body: dict[str, Any], **headers: str) -> dict[str, Any]:
    r = client.post("/v1/journal-entries", json=body, headers={**auth(key), **headers})
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


# --- accounts -----------------------------------------------------------------


def test_create_list_and_get_accounts(client: Any, book: BookFixture) -> None:
    h = auth(book.admin_key)
    r = client.post(
        "/v1/accounts",
        json={
            "name": "Assets:Bank:Savings",
            "currencies": ["USD", "EUR"],
            "code": "1001",
            "min_balance": "0.00",
        },
        headers=h,
    )
    assert r.status_code == 201, r.text
    account = r.json()
    assert account["id"]
    assert account["name"] == "Assets:Bank:Savings"
    assert account["type"] == "asset"  # implied by the root
    assert account["currencies"] == ["EUR", "USD"]
    assert account["code"] == "1001"
    assert account["min_balance"] == "0.00"
    assert account["status"] == "open"

    r = client.post(
        "/v1/accounts", json={"name": "Liabilities:Loans", "type": "liability"}, headers=h
    )
    assert r.status_code == 201, r.text
    assert r.json()["type"] == "liability"

    listed = client.get("/v1/accounts", headers=h)
    assert listed.status_code == 200
    names = [a["name"] for a in listed.json()["data"]]
    assert "Assets:Bank:Savings" in names and "Liabilities:Loans" in names
    assert "Assets:Bank:Operating" in names  # the default chart
    assert names == sorted(names)

    by_id = client.get(f"/v1/accounts/{account['id']}", headers=h)
    assert by_id.status_code == 200
    assert by_id.json() == account
    by_name = client.get("/v1/accounts/Assets:Bank:Savings", headers=h)
    assert by_name.json() == account


def test_account_errors(client: Any, book: BookFixture, owner_conn: psycopg.Connection) -> None:
    h = auth(book.admin_key)
    before = counts(owner_conn, book.id)
    duplicate = client.post("/v1/accounts", json={"name": "Assets:Bank:Operating"}, headers=h)
    assert_problem(duplicate, 409, "conflict")
    bad_name = client.post("/v1/accounts", json={"name": "assets:bank"}, headers=h)
    assert_problem(bad_name, 422)
    bad_type = client.post(
        "/v1/accounts", json={"name": "Assets:Other", "type": "asset-ish"}, headers=h
    )
    assert_problem(bad_type, 422, "invalid_account_type")
    bad_currency = client.post(
        "/v1/accounts", json={"name": "Assets:Other", "currencies": ["XYZ"]}, headers=h
    )
    assert_problem(bad_currency, 422, "unknown_currency")
    missing = client.get("/v1/accounts/Assets:Nowhere", headers=h)
    assert_problem(missing, 404, "not_found")
    assert counts(owner_conn, book.id) == before


# --- journal entries ------------------------------------------------------------


def test_post_entry_answers_201_with_id_and_postings(client: Any, book: BookFixture) -> None:
    body = entry_body(
        "2026-01-05",
        "1234.50",
        memo="consulting",
        metadata={"source": "test", "n": 1},
    )
    # A manual entry may name a customer of the book, never a billing document.
    cid = customer(client, book)
    body["postings"][0]["customer"] = cid
    entry = post_entry(client, book.admin_key, body)
    assert entry["id"]
    assert entry["effective_date"] == "2026-01-05"
    assert entry["memo"] == "consulting"
    assert entry["metadata"] == {"source": "test", "n": 1}
    assert entry["reverses"] is None
    assert entry["postings"] == [
        {
            "account": "Assets:Bank:Operating",
            "amount": "1234.50",
            "currency": "USD",
            "customer": cid,
            "document": None,
            "dimensions": {},
        },
        {
            "account": "Income:Services",
            "amount": "-1234.50",
            "currency": "USD",
            "customer": None,
            "document": None,
            "dimensions": {},
        },
    ]
    fetched = client.get(f"/v1/journal-entries/{entry['id']}", headers=auth(book.admin_key))
    assert fetched.status_code == 200
    got = fetched.json()
    assert got["id"] == entry["id"]
    assert got["postings"] == entry["postings"]
    assert got["effective_date"] == "2026-01-05"


def test_amounts_are_written_with_the_currency_minor_unit(
    client: Any, runtime: Runtime, owner_conn: psycopg.Connection
) -> None:
    usd = make_book(runtime, "USD")
    entry = post_entry(client, usd.admin_key, entry_body("2026-01-05", "7"))
    assert [p["amount"] for p in entry["postings"]] == ["7.00", "-7.00"]
    jpy = make_book(runtime, "JPY")
    entry = post_entry(client, jpy.admin_key, entry_body("2026-01-05", "1500", currency="JPY"))
    assert [p["amount"] for p in entry["postings"]] == ["1500", "-1500"]
    kwd = make_book(runtime, "KWD")
    entry = post_entry(client, kwd.admin_key, entry_body("2026-01-05", "1.005", currency="KWD"))
    assert [p["amount"] for p in entry["postings"]] == ["1.005", "-1.005"]
    stored = owner_conn.execute(
        "select amount::text from postings where book_id = %s order by line_no", (kwd.id,)
    ).fetchall()
    assert [r[0] for r in stored] == ["1.005", "-1.005"]


def test_three_posting_entry_and_multi_currency(client: Any, book: BookFixture) -> None:
    body = {
        "effective_date": "2026-01-06",
        "memo": "sale with tax, and a EUR transfer",
        "postings": [
            posting("Assets:Receivable:Trade", "110.00"),
            posting("Income:Services", "-100.00"),
            posting("Liabilities:Tax-Payable", "-10.00"),
            posting("Assets:Bank:Operating", "5.00", "EUR"),
            posting("Assets:Clearing:Manual", "-5.00", "EUR"),
        ],
    }
    entry = post_entry(client, book.admin_key, body)
    assert [(p["amount"], p["currency"]) for p in entry["postings"]] == [
        ("110.00", "USD"),
        ("-100.00", "USD"),
        ("-10.00", "USD"),
        ("5.00", "EUR"),
        ("-5.00", "EUR"),
    ]


def test_entry_without_date_takes_the_book_clock(client: Any, runtime: Runtime) -> None:
    sim = make_book(runtime, "USD", date(2026, 3, 14))
    body = entry_body()
    del body["effective_date"]
    entry = post_entry(client, sim.admin_key, body)
    assert entry["effective_date"] == "2026-03-14"


def test_batch_posts_every_entry_in_one_call(
    client: Any, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    before = counts(owner_conn, book.id)
    entries = [entry_body(f"2026-01-{day:02d}", f"{day}.25", memo=f"m{day}") for day in (1, 2, 3)]
    entries[2]["postings"].append(posting("Assets:Clearing:Manual", "0.50"))
    entries[2]["postings"].append(posting("Income:Usage", "-0.50"))
    r = client.post(
        "/v1/journal-entries/batch", json={"entries": entries}, headers=auth(book.admin_key)
    )
    assert r.status_code == 201, r.text
    data = r.json()["data"]
    assert [e["memo"] for e in data] == ["m1", "m2", "m3"]
    assert [e["effective_date"] for e in data] == ["2026-01-01", "2026-01-02", "2026-01-03"]
    assert [p["amount"] for p in data[0]["postings"]] == ["1.25", "-1.25"]
    assert [p["amount"] for p in data[2]["postings"]] == ["3.25", "-3.25", "0.50", "-0.50"]
    assert len({e["id"] for e in data}) == 3
    after = counts(owner_conn, book.id)
    assert after["journal_entries"] == before["journal_entries"] + 3
    assert after["postings"] == before["postings"] + 8
    for e in data:
        got = client.get(f"/v1/journal-entries/{e['id']}", headers=auth(book.admin_key))
        assert got.json()["postings"] == e["postings"]


def test_reverse_posts_the_opposite_entry(client: Any, book: BookFixture) -> None:
    h = auth(book.admin_key)
    original = post_entry(client, book.admin_key, entry_body("2026-01-10", "42.10"))
    r = client.post(f"/v1/journal-entries/{original['id']}/reverse", headers=h)
    assert r.status_code == 201, r.text
    reversal = r.json()
    assert reversal["id"] != original["id"]
    assert reversal["reverses"] == original["id"]
    assert reversal["effective_date"] == "2026-01-10"
    assert [(p["account"], p["amount"]) for p in reversal["postings"]] == [
        ("Assets:Bank:Operating", "-42.10"),
        ("Income:Services", "42.10"),
    ]
    bal = client.get(
        "/v1/balances", params={"account": "Income:Services", "as_of": "2026-01-10"}, headers=h
    )
    assert bal.json()["balances"] == [{"currency": "USD", "balance": "0.00"}]


def test_reverse_with_a_later_date_and_memo(client: Any, book: BookFixture) -> None:
    h = auth(book.admin_key)
    original = post_entry(client, book.admin_key, entry_body("2026-01-10", "8.00"))
    r = client.post(
        f"/v1/journal-entries/{original['id']}/reverse",
        json={"effective_date": "2026-02-01", "memo": "undo"},
        headers=h,
    )
    assert r.status_code == 201, r.text
    assert r.json()["effective_date"] == "2026-02-01"
    assert r.json()["memo"] == "undo"
    bal = client.get(
        "/v1/balances", params={"account": "Income:Services", "as_of": "2026-01-31"}, headers=h
    )
    assert bal.json()["balances"] == [{"currency": "USD", "balance": "-8.00"}]
    early = client.post(
        f"/v1/journal-entries/{original['id']}/reverse",
        json={"effective_date": "2026-01-01"},
        headers=h,
    )
    assert early.status_code in (409, 422)


# --- listing and pagination ---------------------------------------------------------


def test_list_pages_through_every_entry_once(client: Any, book: BookFixture) -> None:
    h = auth(book.admin_key)
    posted = [
        post_entry(client, book.admin_key, entry_body(f"2026-02-{d:02d}", f"{d}.00"))["id"]
        for d in range(1, 8)
    ]
    seen: list[str] = []
    pages = 0
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        r = client.get("/v1/journal-entries", params=params, headers=h)
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["data"]) <= 3
        seen += [e["id"] for e in page["data"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 10
    assert pages == 3
    assert seen == posted  # recorded order, no duplicates, no skips


def test_list_pagination_with_an_exact_multiple(client: Any, book: BookFixture) -> None:
    h = auth(book.admin_key)
    posted = [
        post_entry(client, book.admin_key, entry_body("2026-02-01", f"{d}.00"))["id"]
        for d in range(1, 5)
    ]
    first = client.get("/v1/journal-entries", params={"limit": 2}, headers=h).json()
    second = client.get(
        "/v1/journal-entries", params={"limit": 2, "cursor": first["next_cursor"]}, headers=h
    ).json()
    assert [e["id"] for e in first["data"] + second["data"]] == posted
    if second["next_cursor"] is not None:
        third = client.get(
            "/v1/journal-entries", params={"limit": 2, "cursor": second["next_cursor"]}, headers=h
        ).json()
        assert third["data"] == [] and third["next_cursor"] is None


def test_list_filters(client: Any, book: BookFixture) -> None:
    h = auth(book.admin_key)
    jan = post_entry(client, book.admin_key, entry_body("2026-01-31", "1.00"))
    feb_body = entry_body("2026-02-01", "2.00", credit="Income:Usage")
    cid = customer(client, book)
    feb_body["postings"][0]["customer"] = cid
    feb = post_entry(client, book.admin_key, feb_body)
    mar = post_entry(client, book.admin_key, entry_body("2026-03-01", "3.00"))

    def ids(**params: str) -> list[str]:
        r = client.get("/v1/journal-entries", params=params, headers=h)
        assert r.status_code == 200, r.text
        return [e["id"] for e in r.json()["data"]]

    assert ids() == [jan["id"], feb["id"], mar["id"]]
    assert ids(**{"from": "2026-02-01"}) == [feb["id"], mar["id"]]
    assert ids(to="2026-02-01") == [jan["id"], feb["id"]]
    assert ids(**{"from": "2026-02-01", "to": "2026-02-01"}) == [feb["id"]]
    assert ids(account="Income:Usage") == [feb["id"]]
    assert ids(account="Income:Services") == [jan["id"], mar["id"]]
    account_id = client.get("/v1/accounts/Income:Usage", headers=h).json()["id"]
    assert ids(account=account_id) == [feb["id"]]
    assert ids(customer=cid) == [feb["id"]]
    assert ids(customer="cus_none") == []
    unknown = client.get("/v1/journal-entries", params={"account": "Income:Nope"}, headers=h)
    assert_problem(unknown, 404)
    bad_date = client.get("/v1/journal-entries", params={"from": "2026-13-01"}, headers=h)
    assert_problem(bad_date, 400)
    bad_cursor = client.get("/v1/journal-entries", params={"cursor": "garbage!"}, headers=h)
    assert_problem(bad_cursor, 400)


# --- balances and the trial balance --------------------------------------------------


def test_balance_as_of_is_inclusive_with_beancount_signs(client: Any, book: BookFixture) -> None:
    h = auth(book.admin_key)
    post_entry(client, book.admin_key, entry_body("2026-01-10", "34.00"))
    post_entry(client, book.admin_key, entry_body("2026-01-11", "5.00"))

    def balance(account: str, as_of: str) -> Any:
        r = client.get("/v1/balances", params={"account": account, "as_of": as_of}, headers=h)
        assert r.status_code == 200, r.text
        return r.json()

    on_the_day = balance("Income:Services", "2026-01-10")
    assert on_the_day["account"] == "Income:Services"
    assert on_the_day["as_of"] == "2026-01-10"
    assert on_the_day["balances"] == [{"currency": "USD", "balance": "-34.00"}]
    assert balance("Assets:Bank:Operating", "2026-01-10")["balances"] == [
        {"currency": "USD", "balance": "34.00"}
    ]
    assert balance("Income:Services", "2026-01-11")["balances"] == [
        {"currency": "USD", "balance": "-39.00"}
    ]
    assert balance("Income:Services", "2026-01-09")["balances"] == []
    account_id = client.get("/v1/accounts/Income:Services", headers=h).json()["id"]
    assert balance(account_id, "2026-01-10")["balances"] == [
        {"currency": "USD", "balance": "-34.00"}
    ]
    missing = client.get("/v1/balances", params={"account": "Income:Nope"}, headers=h)
    assert_problem(missing, 404)
    no_account = client.get("/v1/balances", headers=h)
    assert_problem(no_account, 400)


def test_trial_balance_exact_figures(client: Any, book: BookFixture) -> None:
    h = auth(book.admin_key)
    post_entry(
        client,
        book.admin_key,
        {
            "effective_date": "2026-01-05",
            "memo": "invoice",
            "postings": [
                posting("Assets:Receivable:Trade", "110.00"),
                posting("Income:Services", "-100.00"),
                posting("Liabilities:Tax-Payable", "-10.00"),
            ],
        },
    )
    post_entry(
        client,
        book.admin_key,
        entry_body("2026-01-20", "60.00", "Assets:Bank:Operating", "Assets:Receivable:Trade"),
    )
    post_entry(client, book.admin_key, entry_body("2026-01-21", "0.35", "Expenses:Payment-Fees"))
    post_entry(client, book.admin_key, entry_body("2026-02-01", "999.99"))  # after as_of

    r = client.get("/v1/reports/trial-balance", params={"as_of": "2026-01-31"}, headers=h)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["as_of"] == "2026-01-31"
    assert report["lines"] == [
        {
            "account": "Assets:Bank:Operating",
            "currency": "USD",
            "debit": "60.00",
            "credit": "0.00",
            "balance": "60.00",
        },
        {
            "account": "Assets:Receivable:Trade",
            "currency": "USD",
            "debit": "50.00",
            "credit": "0.00",
            "balance": "50.00",
        },
        {
            "account": "Expenses:Payment-Fees",
            "currency": "USD",
            "debit": "0.35",
            "credit": "0.00",
            "balance": "0.35",
        },
        {
            "account": "Income:Services",
            "currency": "USD",
            "debit": "0.00",
            "credit": "100.35",
            "balance": "-100.35",
        },
        {
            "account": "Liabilities:Tax-Payable",
            "currency": "USD",
            "debit": "0.00",
            "credit": "10.00",
            "balance": "-10.00",
        },
    ]
    assert report["totals"] == {"USD": {"debit": "110.35", "credit": "110.35"}}

    later = client.get("/v1/reports/trial-balance", params={"as_of": "2026-02-01"}, headers=h)
    assert later.json()["totals"] == {"USD": {"debit": "1110.34", "credit": "1110.34"}}
    empty = client.get("/v1/reports/trial-balance", params={"as_of": "2025-12-31"}, headers=h)
    assert empty.json()["lines"] == [] and empty.json()["totals"] == {}


# --- periods ---------------------------------------------------------------------


def test_close_and_reopen_a_period(
    client: Any, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    h = auth(book.admin_key)
    r = client.post("/v1/periods/2026-01/close", headers=h)
    assert r.status_code == 200, r.text
    assert r.json() == {"period": "2026-01", "status": "closed"}
    listed = client.get("/v1/periods", headers=h).json()["data"]
    assert {"period": "2026-01", "status": "closed"} in listed

    before = counts(owner_conn, book.id)
    refused = client.post("/v1/journal-entries", json=entry_body("2026-01-31"), headers=h)
    assert_problem(refused, 422, "period_closed")
    assert counts(owner_conn, book.id) == before
    post_entry(client, book.admin_key, entry_body("2026-02-01"))  # the next month is open

    r = client.post("/v1/periods/2026-01/reopen", headers=h)
    assert r.status_code == 200, r.text
    assert r.json() == {"period": "2026-01", "status": "open"}
    post_entry(client, book.admin_key, entry_body("2026-01-31"))

    bad = client.post("/v1/periods/2026-13/close", headers=h)
    assert_problem(bad, 422)
    bad = client.post("/v1/periods/January/close", headers=h)
    assert bad.status_code in (400, 422)


# --- clock -------------------------------------------------------------------------


def test_simulated_clock_moves_forward_only(client: Any, runtime: Runtime) -> None:
    sim = make_book(runtime, "USD", date(2026, 1, 1))
    h = auth(sim.admin_key)
    assert client.get("/v1/clock", headers=h).json() == {"mode": "simulated", "now": "2026-01-01"}
    r = client.post("/v1/clock", json={"now": "2026-02-15"}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json() == {"mode": "simulated", "now": "2026-02-15"}
    assert client.get("/v1/clock", headers=h).json()["now"] == "2026-02-15"
    back = client.post("/v1/clock", json={"now": "2026-02-14"}, headers=h)
    assert_problem(back, 409)
    assert client.get("/v1/clock", headers=h).json()["now"] == "2026-02-15"
    same = client.post("/v1/clock", json={"now": "2026-02-15"}, headers=h)
    assert same.status_code in (200, 409)
    body = entry_body()
    del body["effective_date"]
    assert post_entry(client, sim.admin_key, body)["effective_date"] == "2026-02-15"


def test_real_clock_book_refuses_to_move(client: Any, book: BookFixture) -> None:
    h = auth(book.admin_key)
    clock = client.get("/v1/clock", headers=h).json()
    assert clock["mode"] == "real"
    assert date.fromisoformat(clock["now"])
    r = client.post("/v1/clock", json={"now": "2999-01-01"}, headers=h)
    assert_problem(r, 409)
    assert client.get("/v1/clock", headers=h).json()["mode"] == "real"


# --- health and OpenAPI ------------------------------------------------------------


def test_health_needs_no_key(client: Any) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_openapi_lists_an_operation_id_for_every_route(client: Any) -> None:
    r = client.get("/schema/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    operations = {
        (path, method): op.get("operationId")
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    }
    assert all(operations.values()), [k for k, v in operations.items() if not v]
    assert len(set(operations.values())) == len(operations)  # unique
    expected = {
        ("/health", "get"): "health",
        ("/v1/accounts", "post"): "createAccount",
        ("/v1/accounts", "get"): "listAccounts",
        ("/v1/accounts/{account_id}", "get"): "getAccount",
        ("/v1/journal-entries", "post"): "postJournalEntry",
        ("/v1/journal-entries", "get"): "listJournalEntries",
        ("/v1/journal-entries/batch", "post"): "postJournalEntryBatch",
        ("/v1/journal-entries/{entry_id}", "get"): "getJournalEntry",
        ("/v1/journal-entries/{entry_id}/reverse", "post"): "reverseJournalEntry",
        ("/v1/balances", "get"): "getBalances",
        ("/v1/reports/trial-balance", "get"): "getTrialBalance",
        ("/v1/periods/{period}/close", "post"): "closePeriod",
        ("/v1/periods/{period}/reopen", "post"): "reopenPeriod",
        ("/v1/clock", "get"): "getClock",
        ("/v1/clock", "post"): "advanceClock",
    }
    for route, operation_id in expected.items():
        assert operations.get(route) == operation_id, route
    # every route the app serves is documented
    served = {
        (route.path_format if hasattr(route, "path_format") else route.path, method.lower())
        for route in client.app.routes
        for method in getattr(route, "methods", ())
        if method not in {"HEAD", "OPTIONS"}
    }
    # the docs pages and the console's HTML pages are not API operations
    served = {(p, m) for p, m in served if not p.startswith(("/schema", "/console"))}
    assert len(served) >= len(expected)
    assert served <= set(operations), served - set(operations)
