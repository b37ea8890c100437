"""The console's reconciliation page (issue 12 item 4) on the statement of
test_reconciliation_matching: unmatched lines beside the auto-match rules'
candidates; accept, undo, auto-match and entry-from-line forms write through
the store functions the API calls; CSRF and the accountant role apply.
And the customer page: invoices, payments, credit and a statement."""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from adapters.keys import Role
from adapters.runtime import Runtime
from tests.billing.insight_fixtures import golden_book
from tests.conftest import BookFixture, make_book
from tests.integration.http_fixtures import auth, new_key, open_client
from tests.integration.test_console import sign_in
from tests.integration.test_reconciliation_matching import (
    BANK,
    STATEMENT_LINES,
    _ledger_counts,
    _post_book,
    camt053,
)

PAGE = "/console/reconciliation"


@pytest.fixture
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


@pytest.fixture
def scenario(runtime: Runtime, client: Any) -> tuple[BookFixture, dict[str, str], dict[str, Any]]:
    book = make_book(runtime)
    ids = _post_book(runtime, book)
    uploaded = client.post(
        "/v1/bank-statements",
        files={"file": ("jan.xml", camt053(STATEMENT_LINES))},
        data={"account": BANK},
        headers=auth(book.admin_key),
    )
    assert uploaded.status_code == 201, uploaded.text
    return book, ids, uploaded.json()


def _rows(page: str) -> dict[str, str]:
    """Bank reference → the HTML of its unmatched line's row."""
    body = page.split('<table id="lines">', 1)[1].split("</table>", 1)[0]
    row = r'<tr data-line="[^"]+" data-reference="([^"]*)">(.*?)</tr>'
    return dict(re.findall(row, body, re.S))


def _candidates(row: str) -> list[tuple[str, str]]:
    """(rule, postings value) of each candidate form in a row."""
    found = re.findall(
        r'class="candidate" data-rule="([a-z_]+)">.*?name="postings" value="([^"]+)"', row, re.S
    )
    return [(rule, html.unescape(value)) for rule, value in found]


def _live(client: Any, book: BookFixture) -> list[dict[str, Any]]:
    answer = client.get(f"/v1/reconciliation/matches?account={BANK}", headers=auth(book.admin_key))
    assert answer.status_code == 200
    return list(answer.json()["data"])


def test_lines_beside_candidates_accept_and_undo(
    client: Any,
    app_conn: psycopg.Connection,
    scenario: tuple[BookFixture, dict[str, str], dict[str, Any]],
) -> None:
    book, ids, statement = scenario
    line_id = {x["bank_reference"]: x["id"] for x in statement["lines"]}
    token = sign_in(client, book.admin_key)
    page = client.get(PAGE)
    assert page.status_code == 200, page.text
    rows = _rows(page.text)
    assert set(rows) == {x[2] for x in STATEMENT_LINES}  # nothing matched yet
    # The rules' proposals, ambiguous ones included: the two Initech payments, the one
    # booked on the line's day (Jan 16) before the one a day earlier.
    assert _candidates(rows["BR-0008"]) == [
        ("amount_date_counterparty", f"{ids['p8b']}:1"),
        ("amount_date_counterparty", f"{ids['p8a']}:1"),
    ]
    assert _candidates(rows["BANKREF-001"])[0] == ("bank_reference", f"{ids['p1']}:1")
    both = ",".join(sorted(f"{ids[p]}:1" for p in ("p5", "p6")))
    assert _candidates(rows["BR-0005"]) == [("invoice_number", both)]
    # Hooli paid 18 days after the booking: outside the rule's window, a same-amount candidate.
    assert _candidates(rows["BR-0010"]) == [("amount", f"{ids['p10']}:1")]
    assert _candidates(rows["BR-0009"]) == []  # 19.98 against 19.99: nothing
    assert 'data-amount="-12.50">-$12.50</td>' in rows["BR-FEE"]
    assert '<option value="Expenses:Payment-Fees" selected>' in rows["BR-FEE"]
    # A payment the bank split over two lines is offered on both, accepting both lines.
    split_lines = ",".join(sorted((line_id["BR-0077-1"], line_id["BR-0077-2"])))
    for ref in ("BR-0077-1", "BR-0077-2"):
        assert _candidates(rows[ref])[0] == ("bank_reference", f"{ids['split']}:1")
        assert f'name="lines" value="{split_lines}"' in rows[ref]

    ledger_before = _ledger_counts(app_conn, book.id)
    form = {"csrf": token, "account": BANK, "line": line_id["BR-0008"]}
    # Without the session's token nothing is written.
    forged = client.post(
        f"{PAGE}/match",
        data={**form, "csrf": "forged", "postings": f"{ids['p8b']}:1"},
        follow_redirects=False,
    )
    assert forged.status_code == 403 and _live(client, book) == []
    # Amounts that differ are refused with the API's message; nothing written.
    wrong = client.post(
        f"{PAGE}/match", data={**form, "postings": f"{ids['p1']}:1"}, follow_redirects=False
    )
    assert wrong.status_code == 422 and "sum to 50.00 but the postings to 120.00" in wrong.text
    assert _live(client, book) == []
    # Accept the second Initech payment.
    accepted = client.post(
        f"{PAGE}/match", data={**form, "postings": f"{ids['p8b']}:1"}, follow_redirects=False
    )
    assert (accepted.status_code, accepted.headers["location"]) == (
        303,
        f"{PAGE}?account=Assets%3ABank%3AOperating",
    )
    (match,) = _live(client, book)
    assert match["rule"] == "manual" and match["amount"] == "50.00"
    assert [x["id"] for x in match["lines"]] == [line_id["BR-0008"]]
    assert [(p["entry_id"], p["line_no"]) for p in match["postings"]] == [(ids["p8b"], 1)]
    after = client.get(f"{PAGE}?account={BANK}").text
    assert "BR-0008" not in _rows(after) and f'data-match="{match["id"]}"' in after
    # The same line again: already matched, 409.
    again = client.post(
        f"{PAGE}/match", data={**form, "postings": f"{ids['p8a']}:1"}, follow_redirects=False
    )
    assert again.status_code == 409
    # Undo it: the line is unmatched again. Matching never touches the ledger.
    undone = client.post(
        f"{PAGE}/matches/{match['id']}/undo",
        data={"csrf": token, "account": BANK},
        follow_redirects=False,
    )
    assert undone.status_code == 303
    assert _live(client, book) == []
    assert "BR-0008" in _rows(client.get(PAGE).text)
    assert _ledger_counts(app_conn, book.id) == ledger_before
    split = client.post(
        f"{PAGE}/match",
        data={
            "csrf": token,
            "account": BANK,
            "lines": split_lines,
            "postings": f"{ids['split']}:1",
        },
        follow_redirects=False,
    )
    assert split.status_code == 303
    (match,) = _live(client, book)
    assert sorted(x["id"] for x in match["lines"]) == split_lines.split(",")
    # Auto-match from the page finds the rest of what the API's auto-match finds (8 in all).
    auto = client.post(f"{PAGE}/auto-match", data={"csrf": token, "account": BANK})
    assert auto.status_code == 200
    assert len(_live(client, book)) == 8
    assert set(_rows(auto.text)) == {"BR-0008", "BR-0009", "BR-0010", "BR-FEE", "BR-UNKNOWN",
                                     "BR-INT"}  # fmt: skip


def test_entry_for_a_bank_fee_line(
    client: Any,
    app_conn: psycopg.Connection,
    scenario: tuple[BookFixture, dict[str, str], dict[str, Any]],
) -> None:
    book, _, statement = scenario
    line = next(x for x in statement["lines"] if x["bank_reference"] == "BR-FEE")
    token = sign_in(client, book.admin_key)
    page = client.get(PAGE).text
    action = f"{PAGE}/lines/{statement['id']}/{line['id']}/entry"
    assert f'action="{action}"' in page
    assert '<option value="Expenses:Payment-Fees">' in page
    bad = client.post(
        action,
        data={"csrf": token, "account": BANK, "counter_account": "Expenses:Nope"},
        follow_redirects=False,
    )
    assert bad.status_code == 404 and _live(client, book) == []
    r = client.post(
        action,
        data={"csrf": token, "account": BANK, "counter_account": "Expenses:Payment-Fees",
              "memo": "Bank fee January"},
        follow_redirects=False,
    )  # fmt: skip
    assert r.status_code == 303, r.text
    (match,) = _live(client, book)
    assert match["rule"] == "created_entry"
    entry_id = uuid.UUID(match["entry_id"])
    postings = app_conn.execute(
        "select a.name, p.amount, p.currency from postings p join accounts a"
        " on a.book_id = p.book_id and a.id = p.account_id"
        " where p.book_id = %s and p.entry_id = %s order by p.line_no",
        (book.id, entry_id),
    ).fetchall()
    # The fee leaves the bank (credit) and is an expense (debit).
    assert postings == [
        (BANK, Decimal("-12.50"), "USD"),
        ("Expenses:Payment-Fees", Decimal("12.50"), "USD"),
    ]
    memo = app_conn.execute(
        "select memo from journal_entries where book_id = %s and id = %s", (book.id, entry_id)
    ).fetchone()
    assert memo == ("Bank fee January",)
    assert "BR-FEE" not in _rows(client.get(PAGE).text)


def test_auditors_and_operators_may_not_reconcile(
    runtime: Runtime,
    client: Any,
    app_conn: psycopg.Connection,
    scenario: tuple[BookFixture, dict[str, str], dict[str, Any]],
) -> None:
    book, ids, statement = scenario
    line = statement["lines"][0]
    accountant = new_key(runtime, book.id, Role.ACCOUNTANT)
    sign_in(client, accountant)
    assert client.get(PAGE).status_code == 200
    for role in (Role.AUDITOR, Role.OPERATOR):
        client.cookies.clear()
        token = sign_in(client, new_key(runtime, book.id, role))
        assert client.get(PAGE).status_code == 403
        r = client.post(
            f"{PAGE}/match",
            data={"csrf": token, "account": BANK, "line": line["id"],
                  "postings": f"{ids['p1']}:1"},
            follow_redirects=False,
        )  # fmt: skip
        assert r.status_code == 403 and f"{role.value} key may not reconcile" in r.text
        assert client.post(f"{PAGE}/auto-match", data={"csrf": token, "account": BANK},
                           follow_redirects=False).status_code == 403  # fmt: skip
    assert _live(client, book) == []
    client.cookies.clear()
    assert client.get(PAGE, follow_redirects=False).status_code == 303  # no session


def test_customer_page(runtime: Runtime, client: Any) -> None:
    book = golden_book(runtime, client, second_name="<script>alert(1)</script>")
    customers = client.get("/v1/customers", headers=auth(book.admin_key)).json()["data"]
    first = next(c for c in customers if c["name"] == "First")
    paid = client.post(
        "/v1/payments",
        json={"customer": first["id"], "amount": "1000.00", "currency": "USD",
              "method": "bank_transfer", "reference": "WIRE-1"},
        headers=auth(book.admin_key),
    )  # fmt: skip
    assert paid.status_code == 201, paid.text
    sign_in(client, book.admin_key)
    listed = client.get("/console/customers").text
    for c in customers:
        assert f'href="/console/customers/{c["id"]}"' in listed
        api = client.get(f"/v1/customers/{c['id']}", headers=auth(book.admin_key)).json()
        statement = client.get(
            f"/v1/customers/{c['id']}/statement?from=2026-01-01&to=2026-07-06",
            headers=auth(book.admin_key),
        ).json()
        page = client.get(f"/console/customers/{c['id']}?from=2026-01-01&to=2026-07-06")
        assert page.status_code == 200, page.text
        text = page.text
        assert "<script>alert" not in text
        assert f'id="balance-due" class="num" data-amount="{api["balance_due"]}"' in text
        assert f'id="credit-balance" class="num" data-amount="{api["credit_balance"]}"' in text
        opening = re.search(r'<tr id="opening">.*?data-amount="([-0-9.]+)"', text, re.S)
        closing = re.search(r'<tr id="closing">.*?data-amount="([-0-9.]+)"', text, re.S)
        assert opening and closing
        assert (opening.group(1), closing.group(1)) == (
            statement["opening_balance"],
            statement["closing_balance"],
        )
        body = text.split('<table id="statement">', 1)[1].split("</table>", 1)[0]
        assert body.count("<tr>") == len(statement["lines"]) + 1  # + the header row
        invoices = client.get(
            f"/v1/invoices?customer={c['id']}", headers=auth(book.admin_key)
        ).json()["data"]
        numbers = re.findall(r'/document">(INV-[^<]+|draft)<', text)
        assert numbers == [i["number"] or "draft" for i in invoices]
        payments = client.get(
            f"/v1/payments?customer={c['id']}", headers=auth(book.admin_key)
        ).json()["data"]
        shown = text.split('<table id="customer-payments">', 1)[1].split("</table>", 1)[0]
        assert shown.count('data-amount="') == len(payments)
    text = client.get(f"/console/customers/{first['id']}?from=2026-01-01&to=2026-07-06").text
    assert "Jan 1, 2026" in text and "WIRE-1" in text  # en_US unless the book says otherwise
    credit = re.search(r'id="credit-balance" class="num" data-amount="([0-9.]+)">([^<]+)<', text)
    assert credit is not None and Decimal(credit.group(1)) > 0  # paid more than was due
    assert credit.group(2) == f"${Decimal(credit.group(1)):,.2f}"
    assert client.get("/console/customers/nope").status_code == 404
    bad = client.get(f"/console/customers/{first['id']}?from=2026-07-01&to=2026-01-01")
    assert bad.status_code == 400
