"""The console (issue 12 item 4): sign-in with an API key, no page without a
session, CSRF on every form, escaped output, the key's role, and dashboard
figures equal to the API's."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from adapters.console import session as sessions
from adapters.keys import Role
from adapters.runtime import Runtime
from tests.billing.insight_fixtures import golden_book
from tests.conftest import BookFixture
from tests.integration.http_fixtures import auth, new_key, open_client

PAGES = (
    "/console/",
    "/console/customers",
    "/console/invoices",
    "/console/reconciliation",
    "/console/reports/trial-balance",
    "/console/audit",
)


@pytest.fixture
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


def _token(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, html
    return found.group(1)


def sign_in(client: Any, key: str) -> str:
    """Signs in; answers the session's CSRF token (from the dashboard's forms)."""
    form = client.get("/console/sign-in")
    assert form.status_code == 200
    assert '<input type="password" id="api_key" name="api_key"' in form.text
    r = client.post(
        "/console/sign-in",
        data={"api_key": key, "csrf": _token(form.text)},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/console"
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("ab_console="))
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    assert not cookie.startswith('ab_console="')  # nothing to quote
    assert f"Max-Age={sessions.SESSION_SECONDS}" in cookie and "Path=/console" in cookie
    page = client.get("/console/")
    assert page.status_code == 200, page.text
    return _token(page.text)


@pytest.fixture
def book(runtime: Runtime, client: Any) -> BookFixture:
    return golden_book(runtime, client, second_name="<script>alert(1)</script>")


def test_no_page_without_a_session(client: Any, book: BookFixture) -> None:
    for path in PAGES:
        r = client.get(path, follow_redirects=False)
        assert (r.status_code, r.headers.get("location")) == (303, "/console/sign-in"), path
    # A forged or expired session is no session.
    now = int(time.time())
    forged = sessions.sign(
        sessions.Session(book.id, uuid.uuid4(), "t", now + 60), secret=b"someone else's"
    )
    client.cookies.set("ab_console", forged)
    assert client.get("/console/", follow_redirects=False).status_code == 303
    key_id = uuid.uuid4()
    expired = sessions.sign(sessions.Session(book.id, key_id, "t", now - 1))
    assert sessions.verify(expired, now) is None
    assert sessions.verify(sessions.sign(sessions.Session(book.id, key_id, "t", now + 60)), now)


def test_sign_in_and_every_page(client: Any, book: BookFixture) -> None:
    sign_in(client, book.admin_key)
    for path in PAGES:
        r = client.get(path)
        assert r.status_code == 200, (path, r.text)
        assert r.headers["content-type"].startswith("text/html")
        assert "cdn" not in r.text.lower() and "<script" not in r.text.replace("&lt;script", "")
    css = client.get("/console/static/console.css")
    assert css.status_code == 200 and ".num" in css.text
    bad = client.post(
        "/console/sign-in", data={"api_key": "ab_nope", "csrf": "x"}, follow_redirects=False
    )
    assert bad.status_code == 403  # no sign-in form token in the cookie any more


def test_wrong_key_is_refused(client: Any, book: BookFixture) -> None:
    form = client.get("/console/sign-in")
    r = client.post(
        "/console/sign-in",
        data={"api_key": f"ab_{book.id.hex}_wrong", "csrf": _token(form.text)},
        follow_redirects=False,
    )
    assert r.status_code == 401 and "not valid" in r.text
    assert "ab_console=" not in "".join(r.headers.get_list("set-cookie"))


def test_output_is_escaped(client: Any, book: BookFixture) -> None:
    sign_in(client, book.admin_key)
    page = client.get("/console/customers?q=script").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)</script>" not in page
    assert "First" not in page  # the search kept only the matching customer
    invoices = client.get("/console/invoices").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in invoices
    assert "<script>" not in invoices


def test_dashboard_figures_equal_the_apis_mrr(client: Any, book: BookFixture) -> None:
    sign_in(client, book.admin_key)
    page = client.get("/console/").text
    api = client.get("/v1/metrics/mrr", headers=auth(book.admin_key)).json()
    shown = {
        (month, field): value
        for month, row in re.findall(r'<tr data-month="([^"]+)">(.*?)</tr>', page, re.S)
        for field, value in re.findall(r'data-field="([a-z]+)" data-amount="([-0-9.]+)">', row)
    }
    expected = {
        (m["month"], f): m[f]
        for m in api["months"]
        for f in ("start", "new", "expansion", "contraction", "churn", "reactivation", "end", "arr")
    }
    # A year through July; months before the first MRR have no row in any currency.
    assert shown == expected and len(api["months"]) == 7
    assert (
        shown[("2026-05", "churn")] == "-150.00" and shown[("2026-07", "reactivation")] == "100.00"
    )
    # Money in the book's locale (en_US by default), the exact figure beside it.
    assert 'id="arr" class="num" data-amount="2400.00">$2,400.00</strong>' in page
    assert 'data-field="churn" data-amount="-150.00">-$150.00</td>' in page
    # The chart's bars carry the same figures.
    assert 'data-label="2026-07" data-value="200.00"' in page
    cash = client.get("/v1/forecasts/cash?weeks=13", headers=auth(book.admin_key)).json()
    nets = re.findall(r'data-field="net" data-amount="([-0-9.]+)">', page)
    assert nets == [w["net"] for w in cash["weeks"]]


def test_forms_need_their_csrf_token_and_the_role_applies(
    runtime: Runtime, client: Any, book: BookFixture
) -> None:
    token = sign_in(client, book.admin_key)
    path = "/console/audit/periods/2026-01/close"
    r = client.post(path, data={"csrf": "forged"}, follow_redirects=False)
    assert r.status_code == 403
    assert client.post(path, data={}, follow_redirects=False).status_code == 403
    assert client.post("/console/sign-out", data={}, follow_redirects=False).status_code == 403
    periods = client.get("/v1/periods", headers=auth(book.admin_key)).json()["data"]
    assert {"period": "2026-01", "status": "closed"} not in periods
    # The admin's form closes it.
    r = client.post(path, data={"csrf": token}, follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (303, "/console/audit")
    periods = client.get("/v1/periods", headers=auth(book.admin_key)).json()["data"]
    assert {"period": "2026-01", "status": "closed"} in periods
    # An auditor sees the audit page without the forms, and a forged post is refused.
    auditor = new_key(runtime, book.id, Role.AUDITOR)
    client.cookies.clear()
    token = sign_in(client, auditor)
    assert "/reopen" not in client.get("/console/audit").text
    r = client.post(
        "/console/audit/periods/2026-01/reopen", data={"csrf": token}, follow_redirects=False
    )
    assert r.status_code == 403 and "auditor key may not" in r.text
    periods = client.get("/v1/periods", headers=auth(book.admin_key)).json()["data"]
    assert {"period": "2026-01", "status": "closed"} in periods
    # Signing out ends the session.
    r = client.post("/console/sign-out", data={"csrf": token}, follow_redirects=False)
    assert r.status_code == 303
    assert client.get("/console/", follow_redirects=False).status_code == 303


def test_invoices_filter_document_and_trial_balance_drill(client: Any, book: BookFixture) -> None:
    sign_in(client, book.admin_key)
    listed = client.get("/console/invoices?status=open").text
    links = re.findall(r'href="(/console/invoices/[^"]+/document)">(INV-[^<]+)<', listed)
    assert links
    document = client.get(links[0][0])
    assert document.status_code == 200 and links[0][1] in document.text
    assert client.get("/console/invoices?status=nonsense").status_code == 400
    tb = client.get("/console/reports/trial-balance?as_of=2026-07-06").text
    drill = re.search(
        r'href="(/console/reports/trial-balance/entries\?account=Assets%3AReceivable[^"]*)"', tb
    )
    assert drill is not None, tb
    entries = client.get(drill.group(1).replace("&amp;", "&"))
    assert entries.status_code == 200
    assert "invoice:" in entries.text and "Assets:Receivable" in entries.text


def test_invoice_and_customer_lists_paginate(
    client: Any, book: BookFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from adapters.console import pages

    monkeypatch.setattr(pages, "PAGE", 2)
    sign_in(client, book.admin_key)
    seen: list[str] = []
    url: str | None = "/console/invoices"
    while url is not None:
        html = client.get(url).text
        numbers = re.findall(r'/document">(INV-[^<]+|draft)<', html)
        assert 0 < len(numbers) <= 2
        seen += numbers
        found = re.search(r'id="next-page" href="([^"]+)"', html)
        url = found.group(1).replace("&amp;", "&") if found else None
    listed = client.get("/v1/invoices", headers=auth(book.admin_key)).json()["data"]
    assert seen == [i["number"] or "draft" for i in listed] and len(seen) > 2
    monkeypatch.setattr(pages, "PAGE", 1)  # the book has two customers
    first = client.get("/console/customers").text
    assert "Next page" in first
    after = re.search(r'href="(/console/customers\?[^"]+)">Next page', first)
    assert after is not None
    rest = client.get(after.group(1).replace("&amp;", "&")).text
    assert ("First" in first) != ("First" in rest) and "Next page" not in rest
