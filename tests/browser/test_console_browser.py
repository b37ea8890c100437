"""The console in a real browser: Playwright driving Debian's Chromium
(`apt-get install chromium`, `pip install playwright`; Playwright's own browser
download is not used). Skipped, saying why, when either is missing.

Screenshots go to $CONSOLE_SCREENSHOTS (default: pytest's tmp dir)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from adapters.keys import Role
from adapters.runtime import Runtime
from tests.billing.insight_fixtures import golden_book
from tests.conftest import BookFixture, make_book
from tests.integration.http_fixtures import auth, new_key, open_client
from tests.integration.test_reconciliation_matching import (
    BANK,
    STATEMENT_LINES,
    _post_book,
    camt053,
)

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        sync_playwright is None, reason="playwright is not installed (pip install playwright)"
    ),
    pytest.mark.skipif(
        not (Path(CHROMIUM).exists() or shutil.which("chromium")),
        reason=f"no Chromium at {CHROMIUM} (apt-get install -y chromium)",
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(runtime: Runtime) -> Iterator[str]:
    import uvicorn

    from adapters.http.app import create_app

    port = _free_port()
    config = uvicorn.Config(
        create_app(runtime, run_sealer=False), host="127.0.0.1", port=port, log_level="warning"
    )
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not running.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    running.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def book(runtime: Runtime) -> BookFixture:
    with open_client(runtime) as client:
        return golden_book(runtime, client)


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("CONSOLE_SCREENSHOTS", str(tmp_path)))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def page(server: str) -> Iterator[Any]:
    assert sync_playwright is not None
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium") or CHROMIUM)
        context = browser.new_context(base_url=server)
        yield context.new_page()
        browser.close()


def _sign_in(page: Any, key: str) -> None:
    page.goto("/console/sign-in")
    page.fill("input[name=api_key]", key)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/console/?$"))


def test_dashboard_shows_the_apis_figures(
    runtime: Runtime, page: Any, book: BookFixture, shots: Path
) -> None:
    _sign_in(page, book.admin_key)
    page.screenshot(path=str(shots / "dashboard.png"), full_page=True)
    with open_client(runtime) as client:
        api = client.get("/v1/metrics/mrr", headers=auth(book.admin_key)).json()
    for month in api["months"]:
        cell = page.locator(f'tr[data-month="{month["month"]}"] td[data-field="end"]')
        assert cell.get_attribute("data-amount") == month["end"]
        assert cell.inner_text().strip() == f"${Decimal(month['end']):,.2f}"
    assert page.locator("#arr").get_attribute("data-amount") == api["months"][-1]["arr"]
    bars = page.locator('svg rect.end[data-label="2026-07"]')
    assert bars.get_attribute("data-value") == "200.00"


def test_customer_invoice_and_trial_balance_drill(
    page: Any, book: BookFixture, shots: Path
) -> None:
    _sign_in(page, book.admin_key)
    page.click("text=Customers")
    page.click("text=First")
    page.screenshot(path=str(shots / "customer-invoices.png"), full_page=True)
    page.click("a[href$='/document'] >> nth=0")
    assert "INV-" in page.content()
    page.goto("/console/reports/trial-balance?as_of=2026-07-06")
    page.click("text=Assets:Receivable:Trade")
    page.screenshot(path=str(shots / "account-entries.png"), full_page=True)
    assert page.locator("#entries tbody tr").count() > 0


def test_auditor_cannot_close_a_period(
    runtime: Runtime, page: Any, book: BookFixture, shots: Path
) -> None:
    auditor = new_key(runtime, book.id, Role.AUDITOR)
    _sign_in(page, auditor)
    page.goto("/console/audit")
    assert page.locator("#periods form").count() == 0
    token = page.locator("input[name=csrf]").first.get_attribute("value")
    answer = page.request.post(
        "/console/audit/periods/2026-01/close", form={"csrf": token}, max_redirects=0
    )
    assert answer.status == 403
    page.screenshot(path=str(shots / "auditor-audit.png"), full_page=True)


@pytest.fixture(scope="module")
def reconciling(runtime: Runtime) -> BookFixture:
    """test_reconciliation_matching's book and January statement."""
    book = make_book(runtime)
    _post_book(runtime, book)
    with open_client(runtime) as client:
        uploaded = client.post(
            "/v1/bank-statements",
            files={"file": ("jan.xml", camt053(STATEMENT_LINES))},
            data={"account": BANK},
            headers=auth(book.admin_key),
        )
    assert uploaded.status_code == 201, uploaded.text
    return book


def _live_matches(runtime: Runtime, book: BookFixture) -> list[dict[str, Any]]:
    with open_client(runtime) as client:
        answer = client.get("/v1/reconciliation/matches", headers=auth(book.admin_key))
    return list(answer.json()["data"])


def test_reconcile_one_statement_line_and_undo_it(
    runtime: Runtime, page: Any, reconciling: BookFixture, shots: Path
) -> None:
    accountant = new_key(runtime, reconciling.id, Role.ACCOUNTANT)
    _sign_in(page, accountant)
    page.click("text=Reconciliation")
    page.wait_for_url(re.compile(r".*/console/reconciliation/?"))
    line = page.locator('tr[data-reference="BR-0008"]')
    assert line.locator("form.candidate").count() == 2  # the two Initech payments
    page.screenshot(path=str(shots / "reconciliation.png"), full_page=True)
    line.locator("form.candidate >> nth=0 >> button").click()
    page.wait_for_load_state()
    assert page.locator('tr[data-reference="BR-0008"]').count() == 0
    (match,) = _live_matches(runtime, reconciling)
    assert match["rule"] == "manual" and match["amount"] == "50.00"
    assert match["lines"][0]["bank_reference"] == "BR-0008"
    row = page.locator(f'tr[data-match="{match["id"]}"]')
    assert row.locator("td.num").get_attribute("data-amount") == "50.00"
    page.screenshot(path=str(shots / "reconciliation-matched.png"), full_page=True)
    row.locator("button", has_text="Undo").click()
    page.wait_for_load_state()
    assert page.locator('tr[data-reference="BR-0008"]').count() == 1
    assert page.locator("#matches tr[data-match]").count() == 0
    assert _live_matches(runtime, reconciling) == []
    page.screenshot(path=str(shots / "reconciliation-undone.png"), full_page=True)


def test_customer_page_shows_the_apis_statement(
    runtime: Runtime, page: Any, book: BookFixture, shots: Path
) -> None:
    _sign_in(page, book.admin_key)
    page.click("text=Customers")
    page.click("text=First")
    page.wait_for_url(re.compile(r".*/console/customers/[0-9a-f-]+$"))
    customer_id = page.url.rsplit("/", 1)[1]
    with open_client(runtime) as client:
        statement = client.get(
            f"/v1/customers/{customer_id}/statement?from=2026-01-01",
            headers=auth(book.admin_key),
        ).json()
        api = client.get(f"/v1/customers/{customer_id}", headers=auth(book.admin_key)).json()
    assert page.locator("#customer-name").inner_text().startswith("First")
    assert page.locator("#balance-due").get_attribute("data-amount") == api["balance_due"]
    closing = page.locator("#closing td.num")
    assert closing.get_attribute("data-amount") == statement["closing_balance"]
    assert closing.inner_text() == f"${Decimal(statement['closing_balance']):,.2f}"
    assert page.locator("#statement tbody tr").count() == len(statement["lines"]) + 2
    page.screenshot(path=str(shots / "customer.png"), full_page=True)
