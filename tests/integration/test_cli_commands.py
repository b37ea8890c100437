"""Commands a new user looked for (issue 7 item 20): listing customers and invoices,
the billing reports, manual entries, recognition runs, invoices by number, books by
name, and API keys that can be listed and revoked (CLI and HTTP)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from adapters.keys import Role
from adapters.runtime import Runtime
from tests.conftest import BookFixture, make_book
from tests.integration.http_fixtures import auth, counts, new_key, open_client
from tests.integration.test_cli import cli, client  # noqa: F401  (shared fixtures)

pytestmark = pytest.mark.slow

TODAY = date(2026, 1, 10)


def ok(result: Any) -> Any:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return json.loads(result.stdout)


def refused(result: Any, *words: str) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ")
    for word in words:
        assert word in result.stderr
    text: str = result.stderr
    return text


@pytest.fixture(scope="module")
def billed(runtime: Runtime, client: Any) -> dict[str, Any]:  # noqa: F811
    """A simulated book on 2026-01-10 with two customers, six finalized invoices (two
    lines each) made in an order unrelated to their ids, and one draft."""
    book = make_book(runtime, "USD", TODAY)
    headers = auth(book.admin_key)
    customers = []
    for name in ("Zeta GmbH", "Acme Ltd"):
        r = client.post("/v1/customers", json={"name": name, "currency": "USD"}, headers=headers)
        assert r.status_code == 201, r.text
        customers.append(r.json()["id"])
    invoices = []
    for n in range(7):
        r = client.post(
            "/v1/invoices",
            json={
                "customer": customers[n % 2],
                "lines": [
                    {"description": f"Setup {n}", "quantity": "1", "unit_amount": f"{n + 1}0.00"},
                    {"description": f"Support {n}", "quantity": "2", "unit_amount": "5.00"},
                ],
                "auto_finalize": n < 6,
            },
            headers=headers,
        )
        assert r.status_code == 201, r.text
        invoices.append(r.json())
    return {"book": book, "customers": customers, "invoices": invoices}


def test_invoices_list_is_in_number_order_with_lines(cli: Any, billed: dict[str, Any]) -> None:  # noqa: F811
    book: BookFixture = billed["book"]
    listed = ok(cli("invoices", "list", "--book", str(book.id), "--format", "json"))["invoices"]
    numbers = [i["number"] for i in listed]
    finals = sorted(i["number"] for i in billed["invoices"] if i["number"])
    assert numbers == [*finals, None]  # the draft, which has no number yet, last
    assert [len(i["lines"]) for i in listed] == [2] * 7
    assert listed[0]["lines"][0]["description"] == "Setup 0"
    assert listed[0]["lines"][0]["amount"] == "10.00"
    by_date = ok(
        cli("invoices", "list", "--book", str(book.id), "--order", "date", "--format", "json")
    )["invoices"]
    assert [i["number"] for i in by_date] == numbers  # one issue date: then by number
    text = cli("invoices", "list", "--book", str(book.id), "--limit", "2")
    assert text.returncode == 0, text.stderr
    assert finals[0] in text.stdout and "Support 0" in text.stdout and finals[2] not in text.stdout


def test_invoice_found_by_number_on_the_cli_and_the_api(
    cli: Any,  # noqa: F811
    client: Any,  # noqa: F811
    billed: dict[str, Any],
) -> None:
    book: BookFixture = billed["book"]
    second = billed["invoices"][1]
    shown = ok(
        cli("invoices", "show", second["number"], "--book", str(book.id), "--format", "json")
    )
    assert shown["id"] == second["id"]
    r = client.get(f"/v1/invoices/{second['number']}", headers=auth(book.admin_key))
    assert r.status_code == 200, r.text
    assert r.json()["id"] == second["id"]
    missing = client.get("/v1/invoices/INV-1999-000001", headers=auth(book.admin_key))
    assert missing.status_code == 404
    refused(cli("invoices", "show", "INV-1999-000001", "--book", str(book.id)), "does not exist")


def test_api_invoice_pages_follow_the_number_and_carry_lines(
    client: Any,  # noqa: F811
    billed: dict[str, Any],
) -> None:
    book: BookFixture = billed["book"]
    for order in ("number", "date"):
        seen: list[dict[str, Any]] = []
        cursor = None
        while True:
            query = f"/v1/invoices?limit=2&order={order}" + (f"&cursor={cursor}" if cursor else "")
            r = client.get(query, headers=auth(book.admin_key))
            assert r.status_code == 200, r.text
            seen += r.json()["data"]
            cursor = r.json()["next_cursor"]
            if cursor is None:
                break
        finals = sorted(i["number"] for i in billed["invoices"] if i["number"])
        assert [i["number"] for i in seen] == [*finals, None], order
        assert all(len(i["lines"]) == 2 for i in seen)
    bad = client.get("/v1/invoices?order=amount", headers=auth(book.admin_key))
    assert bad.status_code == 400


def test_customers_list_and_book_by_name(cli: Any, billed: dict[str, Any]) -> None:  # noqa: F811
    book: BookFixture = billed["book"]
    listed = ok(cli("customers", "list", "--book", book.book.name, "--format", "json"))
    assert [c["name"] for c in listed["customers"]] == ["Acme Ltd", "Zeta GmbH"]
    assert listed["book_id"] == str(book.id)
    refused(cli("customers", "list", "--book", "no such book"), "no such book")


def test_billing_reports_print_what_the_api_answers(
    cli: Any,  # noqa: F811
    client: Any,  # noqa: F811
    billed: dict[str, Any],
) -> None:
    book: BookFixture = billed["book"]
    b = ("--book", str(book.id), "--format", "json")
    for command, query in (
        (("report", "ar-aging", "--as-of", "2026-03-31"), "ar-aging?as_of=2026-03-31"),
        (
            ("report", "deferred-revenue", "--as-of", "2026-01-31"),
            "deferred-revenue?as_of=2026-01-31",
        ),
        (
            ("report", "revenue", "--from", "2026-01-01", "--to", "2026-01-31"),
            "revenue?from=2026-01-01&to=2026-01-31",
        ),
    ):
        printed = ok(cli(*command, *b))
        api = client.get(f"/v1/reports/{query}", headers=auth(book.admin_key))
        assert api.status_code == 200, api.text
        assert printed == {"book_id": str(book.id), **api.json()}, command
    aging = ok(cli("report", "ar-aging", "--as-of", "2026-03-31", *b))
    assert len(aging["invoices"]) == 6
    total = sum(Decimal(i["amount_due"]) for i in aging["invoices"])
    assert total == sum(Decimal(i["total"]) for i in billed["invoices"][:6])


def test_journal_entry_posted_from_arguments(
    cli: Any,  # noqa: F811
    runtime: Runtime,
) -> None:
    book = make_book(runtime, "USD", TODAY)
    posted = ok(
        cli(
            "journal-entries",
            "post",
            "Assets:Bank:Operating=108.00",
            "Income:Services=-100.00 USD",
            "Liabilities:Tax-Payable=-8.00 usd",
            "--memo",
            "cash sale",
            "--date",
            "2026-01-05",
            "--book",
            str(book.id),
            "--format",
            "json",
        )
    )
    assert posted["memo"] == "cash sale" and posted["effective_date"] == "2026-01-05"
    with runtime.connection() as conn:
        rows = conn.execute(
            "select a.name, p.amount, p.currency from postings p"
            " join accounts a on a.book_id = p.book_id and a.id = p.account_id"
            " where p.book_id = %s and p.entry_id = %s order by a.name",
            (book.id, uuid.UUID(posted["id"])),
        ).fetchall()
    assert rows == [
        ("Assets:Bank:Operating", Decimal("108.00"), "USD"),
        ("Income:Services", Decimal("-100.00"), "USD"),
        ("Liabilities:Tax-Payable", Decimal("-8.00"), "USD"),
    ]


def test_journal_entry_posted_from_a_file_once_per_idempotency_key(
    cli: Any,  # noqa: F811
    runtime: Runtime,
    tmp_path: Path,
) -> None:
    book = make_book(runtime, "USD", TODAY)
    body = {
        "effective_date": "2026-01-07",
        "memo": "owner's capital",
        "postings": [
            {"account": "Assets:Bank:Operating", "amount": "5000.00", "currency": "USD"},
            {"account": "Equity:Opening-Balances", "amount": "-5000.00", "currency": "USD"},
        ],
    }
    file = tmp_path / "entry.json"
    file.write_text(json.dumps(body))
    args = ("journal-entries", "post", "--file", str(file), "--book", str(book.id))
    first = ok(cli(*args, "--idempotency-key", "capital-1", "--format", "json"))
    again = ok(cli(*args, "--idempotency-key", "capital-1", "--format", "json"))
    assert (first["created"], again["created"]) == (True, False)
    assert again["id"] == first["id"]
    assert sorted((p["account"], p["amount"]) for p in first["postings"]) == [
        ("Assets:Bank:Operating", "5000.00"),
        ("Equity:Opening-Balances", "-5000.00"),
    ]


def test_a_bad_manual_entry_is_refused_and_writes_nothing(
    cli: Any,  # noqa: F811
    runtime: Runtime,
    tmp_path: Path,
) -> None:
    book = make_book(runtime, "USD", TODAY)
    with runtime.connection() as conn:
        before = counts(conn, book.id)
    b = ("--book", str(book.id))
    refused(cli("journal-entries", "post", "Assets:Bank:Operating=10.00", *b))  # one posting
    refused(
        cli(
            "journal-entries",
            "post",
            "Assets:Bank:Operating=10.00",
            "Income:Services=-9.00",
            *b,
        ),
        "sum to zero",
    )
    refused(cli("journal-entries", "post", "Assets:Bank:Operating", *b), "ACCOUNT=AMOUNT")
    refused(cli("journal-entries", "post", "A=ten", "B=-ten", *b))
    (tmp_path / "bad.json").write_text("{not json")
    refused(cli("journal-entries", "post", "--file", str(tmp_path / "bad.json"), *b), "JSON")
    refused(cli("journal-entries", "post", "--file", str(tmp_path / "absent.json"), *b))
    with runtime.connection() as conn:
        assert counts(conn, book.id) == before


def test_recognition_run_from_the_cli(
    cli: Any,  # noqa: F811
    client: Any,  # noqa: F811
    runtime: Runtime,
) -> None:
    """90.00 of service Jan 10 → Apr 10 (90 days), invoiced and recognized through Jan 31:
    22 days earned, 22.00 from deferred revenue to income."""
    book = make_book(runtime, "USD", TODAY)
    headers = auth(book.admin_key)
    r = client.post("/v1/customers", json={"name": "C", "currency": "USD"}, headers=headers)
    customer = r.json()["id"]
    r = client.post(
        "/v1/invoices",
        json={
            "customer": customer,
            "auto_finalize": True,
            "lines": [
                {
                    "description": "Quarter",
                    "quantity": "1",
                    "unit_amount": "90.00",
                    "service_start": "2026-01-10",
                    "service_end": "2026-04-10",
                }
            ],
        },
        headers=headers,
    )
    assert r.status_code == 201, r.text
    assert client.post("/v1/clock", json={"now": "2026-01-31"}, headers=headers).status_code == 200
    run = ok(
        cli(
            "recognition",
            "run",
            "--through",
            "2026-01-31",
            "--book",
            str(book.id),
            "--format",
            "json",
        )
    )
    assert run["recognized"] == {"USD": "22.00"}
    balances = {}
    for account in ("Liabilities:Deferred-Revenue", "Income:Services"):
        b = client.get(f"/v1/balances?account={account}&as_of=2026-01-31", headers=headers)
        balances[account] = b.json()["balances"][0]["balance"]
    assert balances == {"Liabilities:Deferred-Revenue": "-68.00", "Income:Services": "-22.00"}


def test_keys_listed_and_revoked_on_the_cli(
    cli: Any,  # noqa: F811
    client: Any,  # noqa: F811
    runtime: Runtime,
    owner_conn: psycopg.Connection,
) -> None:
    book = make_book(runtime)
    auditor = new_key(runtime, book.id, Role.AUDITOR)
    assert client.get("/v1/accounts", headers=auth(auditor)).status_code == 200
    listed = ok(cli("keys", "list", "--book", str(book.id), "--format", "json"))["keys"]
    assert [k["role"] for k in listed] == ["admin", "auditor"]
    used = {k["role"]: k for k in listed}
    assert used["auditor"]["last_used_at"] is not None  # set by the request above
    assert used["auditor"]["revoked_at"] is None
    assert set(used["auditor"]) == {
        "key_id",
        "role",
        "label",
        "created_at",
        "last_used_at",
        "revoked_at",
    }
    assert "key_hash" not in json.dumps(listed) and auditor not in json.dumps(listed)
    fresh = new_key(runtime, book.id, Role.OPERATOR)
    fresh_id = ok(cli("keys", "list", "--book", str(book.id), "--format", "json"))["keys"][-1]
    revoked = ok(
        cli("keys", "revoke", fresh_id["key_id"], "--book", str(book.id), "--format", "json")
    )
    assert revoked["revoked_at"] is not None
    assert client.get("/v1/accounts", headers=auth(fresh)).status_code == 401
    refused(cli("keys", "revoke", str(uuid.uuid4()), "--book", str(book.id)), "does not exist")
    refused(cli("keys", "revoke", "not-an-id", "--book", str(book.id)), "does not exist")


def test_api_revoke_refuses_the_key_at_once_and_is_admin_only(
    client: Any,  # noqa: F811
    runtime: Runtime,
) -> None:
    book = make_book(runtime)
    other = make_book(runtime)
    operator = new_key(runtime, book.id, Role.OPERATOR)
    # Cached by this process: the revocation must still take effect on the next request.
    assert client.get("/v1/accounts", headers=auth(operator)).status_code == 200
    assert client.get("/v1/api-keys", headers=auth(operator)).status_code == 403
    keys = client.get("/v1/api-keys", headers=auth(book.admin_key))
    assert keys.status_code == 200, keys.text
    operator_id = next(k["key_id"] for k in keys.json()["data"] if k["role"] == "operator")
    assert client.delete(f"/v1/api-keys/{operator_id}", headers=auth(operator)).status_code == 403
    foreign = client.delete(f"/v1/api-keys/{operator_id}", headers=auth(other.admin_key))
    assert foreign.status_code == 404
    assert client.get("/v1/accounts", headers=auth(operator)).status_code == 200
    r = client.delete(f"/v1/api-keys/{operator_id}", headers=auth(book.admin_key))
    assert r.status_code == 200, r.text
    assert r.json()["revoked_at"] is not None
    assert client.get("/v1/accounts", headers=auth(operator)).status_code == 401
    again = client.delete(f"/v1/api-keys/{operator_id}", headers=auth(book.admin_key))
    assert again.status_code == 200 and again.json()["revoked_at"] == r.json()["revoked_at"]
    listed = client.get("/v1/api-keys", headers=auth(book.admin_key)).json()["data"]
    assert [k["revoked_at"] is not None for k in listed] == [False, True]


def test_key_routes_check_the_role_before_reading_the_body(
    client: Any,  # noqa: F811
    runtime: Runtime,
) -> None:
    """Key routes are written as the other write routes (`routes.command`): a
    non-admin's create or rotate is a 403 before its body is parsed."""
    book = make_book(runtime)
    operator = auth(new_key(runtime, book.id, Role.OPERATOR))
    made = client.post("/v1/api-keys", json={"bogus": 1}, headers=operator)
    assert made.status_code == 403, made.text
    rotated = client.post(
        f"/v1/api-keys/{uuid.uuid4()}/rotate", json={"grace_seconds": "x"}, headers=operator
    )
    assert rotated.status_code == 403, rotated.text
    bad = client.post("/v1/api-keys", json={"bogus": 1}, headers=auth(book.admin_key))
    assert bad.status_code == 400, bad.text


def _audit(runtime: Runtime, book: BookFixture, path: str, count: int) -> list[dict[str, Any]]:
    """The book's audit rows under `path`, oldest first, once `count` are there (the HTTP
    writer appends in batches every 0.2 s, after the response)."""
    from adapters.audit import AuditFilter, audit_json, audit_rows

    deadline = time.monotonic() + 10
    while True:
        with runtime.connection() as conn:
            rows = audit_rows(conn, book.id, AuditFilter(path=path), before=None, limit=100)
        if len(rows) >= count or time.monotonic() > deadline:
            return [audit_json(r) for r in reversed(rows)]
        time.sleep(0.05)


def test_keys_rotated_on_the_cli_and_the_api(
    cli: Any,  # noqa: F811
    client: Any,  # noqa: F811
    runtime: Runtime,
    owner_conn: psycopg.Connection,
) -> None:
    """Rotation: a new secret (shown once) with the old key's role and label; the old
    key refused at once, or from the end of a grace period; 403 for a non-admin, 404
    for an unknown key, 409 for a revoked one; each rotation in the audit log."""
    from adapters.keys import authenticate, list_keys

    book = make_book(runtime)
    b = ("--book", str(book.id))
    made = client.post(
        "/v1/api-keys", json={"role": "erp", "label": "netsuite"}, headers=auth(book.admin_key)
    )
    assert made.status_code == 201, made.text
    erp = made.json()
    assert (erp["role"], erp["label"], erp["revoked_at"]) == ("erp", "netsuite", None)
    assert erp["id"] == erp["key_id"] and erp["api_key"].startswith(f"ab_{book.id.hex}_")
    assert client.get("/v1/accounts", headers=auth(erp["api_key"])).status_code == 200
    with runtime.connection() as conn:  # stored hashed, never as given
        stored = conn.execute(
            "select key_hash from api_keys where book_id = %s and id = %s",
            (book.id, erp["key_id"]),
        ).fetchone()
    assert stored is not None and erp["api_key"] not in stored[0] and len(stored[0]) == 64

    # Over HTTP, no grace: the old key is refused at once, the new one works.
    rotated = client.post(
        f"/v1/api-keys/{erp['key_id']}/rotate", json={}, headers=auth(book.admin_key)
    )
    assert rotated.status_code == 201, rotated.text
    second = rotated.json()
    assert (second["role"], second["label"]) == ("erp", "netsuite")
    assert second["key_id"] != erp["key_id"] and second["api_key"] != erp["api_key"]
    assert second["rotated_from"]["key_id"] == erp["key_id"]
    assert second["rotated_from"]["revoked_at"] is not None
    assert client.get("/v1/accounts", headers=auth(erp["api_key"])).status_code == 401
    assert client.get("/v1/accounts", headers=auth(second["api_key"])).status_code == 200
    again = client.post(
        f"/v1/api-keys/{erp['key_id']}/rotate", json={}, headers=auth(book.admin_key)
    )
    assert again.status_code == 409 and again.json()["code"] == "key_revoked", again.text

    # On the CLI, with a grace period: both keys work until it ends, then the old one
    # gets 401 (the grace is ended here by moving its revoked_at into the past).
    on_cli = ok(
        cli("keys", "rotate", second["key_id"], "--grace-seconds", "3600", *b, "--format", "json")
    )
    third = on_cli["api_key"]
    assert (on_cli["role"], on_cli["label"]) == ("erp", "netsuite")
    assert on_cli["rotated_from"]["revoked_at"] > on_cli["created_at"]
    assert client.get("/v1/accounts", headers=auth(second["api_key"])).status_code == 200
    assert client.get("/v1/accounts", headers=auth(third)).status_code == 200
    with runtime.connection() as conn:
        in_grace = authenticate(conn, second["api_key"])
        conn.rollback()
    # A process caches a key no longer than it has left (auth.KeyCache).
    assert in_grace is not None and in_grace.seconds_left is not None
    assert 3000 < in_grace.seconds_left <= 3600
    owner_conn.execute(
        "update api_keys set revoked_at = now() - interval '1 second'"
        " where book_id = %s and id = %s",
        (book.id, second["key_id"]),
    )
    with open_client(runtime) as fresh:  # a process that has not cached it
        assert fresh.get("/v1/accounts", headers=auth(second["api_key"])).status_code == 401
        assert fresh.get("/v1/accounts", headers=auth(third)).status_code == 200
    refused(cli("keys", "rotate", second["key_id"], *b), "revoked")
    refused(cli("keys", "rotate", str(uuid.uuid4()), *b), "does not exist")
    refused(cli("keys", "rotate", on_cli["key_id"], "--grace-seconds", "-1", *b), "grace")

    # Revoking a key in its grace period cuts it off now.
    fourth = ok(
        cli("keys", "rotate", on_cli["key_id"], "--grace-seconds", "600", *b, "--format", "json")
    )
    assert (
        client.delete(f"/v1/api-keys/{on_cli['key_id']}", headers=auth(book.admin_key)).status_code
        == 200
    )
    assert client.get("/v1/accounts", headers=auth(third)).status_code == 401

    # Only admins; an unknown or foreign key is 404; a bad grace is 422.
    operator = new_key(runtime, book.id, Role.OPERATOR)
    assert (
        client.post("/v1/api-keys", json={"role": "operator"}, headers=auth(operator)).status_code
        == 403
    )
    forbidden = client.post(
        f"/v1/api-keys/{fourth['key_id']}/rotate", json={}, headers=auth(operator)
    )
    assert forbidden.status_code == 403
    assert (
        client.post(f"/v1/api-keys/{uuid.uuid4()}/rotate", headers=auth(book.admin_key)).status_code
        == 404
    )
    assert (
        client.post("/v1/api-keys/nonsense/rotate", headers=auth(book.admin_key)).status_code == 404
    )
    other = make_book(runtime)
    assert (
        client.post(
            f"/v1/api-keys/{fourth['key_id']}/rotate", headers=auth(other.admin_key)
        ).status_code
        == 404
    )
    bad_grace = client.post(
        f"/v1/api-keys/{fourth['key_id']}/rotate",
        json={"grace_seconds": 10**9},
        headers=auth(book.admin_key),
    )
    assert bad_grace.status_code == 422, bad_grace.text
    bad_role = client.post("/v1/api-keys", json={"role": "root"}, headers=auth(book.admin_key))
    assert bad_role.status_code == 422, bad_role.text

    with runtime.connection() as conn:
        keys = {str(k.key_id): k for k in list_keys(conn, book.id)}
    assert keys[fourth["key_id"]].revoked_at is None
    assert all(keys[k["key_id"]].revoked_at is not None for k in (erp, second, on_cli))

    # The audit log: the HTTP rotation under the admin's key, the CLI ones under the
    # OS user, each naming the key it created.
    api_rows = _audit(runtime, book, f"/v1/api-keys/{erp['key_id']}/rotate", 2)
    assert [(r["status"], r["created"], r["role"]) for r in api_rows] == [
        (201, [second["key_id"]], "admin"),
        (409, [], "admin"),
    ]
    cli_rows = _audit(runtime, book, "keys rotate", 5)
    assert [(r["path"], r["status"], r["created"]) for r in cli_rows] == [
        (f"keys rotate {second['key_id']}", 0, [on_cli["key_id"]]),
        ("keys rotate", 2, []),
        ("keys rotate", 2, []),
        ("keys rotate", 2, []),
        (f"keys rotate {on_cli['key_id']}", 0, [fourth["key_id"]]),
    ]
    assert {(r["method"], r["role"], r["key_id"]) for r in cli_rows} == {("CLI", "cli", None)}
    assert all(r["principal"].startswith("cli:") for r in cli_rows)


def test_a_payment_names_its_invoice_by_number(
    cli: Any,  # noqa: F811
    client: Any,  # noqa: F811
    runtime: Runtime,
) -> None:
    book = make_book(runtime, "USD", TODAY)
    headers = auth(book.admin_key)
    customer = client.post(
        "/v1/customers", json={"name": "C", "currency": "USD"}, headers=headers
    ).json()["id"]
    invoices = [
        client.post(
            "/v1/invoices",
            json={
                "customer": customer,
                "auto_finalize": True,
                "lines": [{"description": "Work", "quantity": "1", "unit_amount": amount}],
            },
            headers=headers,
        ).json()
        for amount in ("40.00", "60.00")
    ]
    paid = ok(
        cli(
            "payments",
            "create",
            "--customer",
            customer,
            "--amount",
            "60.00",
            "--currency",
            "USD",
            "--method",
            "card",
            "--invoice",
            invoices[1]["number"],
            "--book",
            str(book.id),
            "--format",
            "json",
        )
    )
    assert [(a["number"], a["amount"]) for a in paid["allocations"]] == [
        (invoices[1]["number"], "60.00")
    ]
    second = client.get(f"/v1/invoices/{invoices[1]['number']}", headers=headers).json()
    first = client.get(f"/v1/invoices/{invoices[0]['id']}", headers=headers).json()
    assert (second["amount_due"], first["amount_due"]) == ("0.00", "40.00")


def test_an_unwritable_output_file_is_an_error_not_a_traceback(
    cli: Any,  # noqa: F811
    runtime: Runtime,
    tmp_path: Path,
) -> None:
    book = make_book(runtime)
    out = tmp_path / "missing-folder" / "book.beancount"
    refused(cli("export", "beancount", "--out", str(out), "--book", str(book.id)), str(out))


def test_last_used_at_is_stamped_once_a_minute_not_on_every_lookup(runtime: Runtime) -> None:
    from adapters.keys import authenticate, list_keys

    book = make_book(runtime)
    stamps = []
    for _ in range(2):
        with runtime.connection() as conn:
            assert authenticate(conn, book.admin_key) is not None
            conn.commit()
            stamps.append(list_keys(conn, book.id)[0].last_used_at)
    assert stamps[0] is not None
    assert stamps[1] == stamps[0]  # the second lookup, within the minute, wrote nothing


def test_a_manual_entry_naming_a_billing_document_is_refused_on_the_cli(
    cli: Any,  # noqa: F811
    runtime: Runtime,
    billed: dict[str, Any],
    tmp_path: Path,
) -> None:
    """The CLI keeps POST /v1/journal-entries' rule: an invoice is settled only by the
    billing services, and a reference must exist in the book."""
    book = billed["book"]
    invoice = billed["invoices"][0]
    with runtime.connection() as conn:
        before = counts(conn, book.id)
    b = ("--book", str(book.id))
    for document in (f"invoice:{invoice['id']}", "garbage:doc"):
        (tmp_path / "entry.json").write_text(
            json.dumps(
                {
                    "postings": [
                        {"account": "Assets:Bank:Operating", "amount": "7.00", "currency": "USD"},
                        {
                            "account": "Assets:Receivable:Trade",
                            "amount": "-7.00",
                            "currency": "USD",
                            "document": document,
                        },
                    ]
                }
            )
        )
        refused(cli("journal-entries", "post", "--file", str(tmp_path / "entry.json"), *b))
    (tmp_path / "nul.json").write_text(
        '{"memo": "a\\u0000b", "postings": ['
        '{"account": "Assets:Bank:Operating", "amount": "1.00", "currency": "USD"},'
        ' {"account": "Income:Services", "amount": "-1.00", "currency": "USD"}]}'
    )
    refused(cli("journal-entries", "post", "--file", str(tmp_path / "nul.json"), *b), "NUL")
    with runtime.connection() as conn:
        assert counts(conn, book.id) == before
    shown = ok(cli("invoices", "show", invoice["id"], *b, "--format", "json"))
    assert shown["amount_due"] == invoice["amount_due"]
