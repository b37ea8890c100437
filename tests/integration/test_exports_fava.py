"""Fava (the Beancount web UI auditors use) opens the export without errors."""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path

import pytest
from fava.application import create_app
from fava.core import FavaLedger

from adapters.demo import run_demo
from adapters.exports.beancount import ExportRange, begin_snapshot, export_beancount
from adapters.runtime import Runtime

pytestmark = pytest.mark.slow


def test_fava_opens_a_demo_export(runtime: Runtime, tmp_path: Path) -> None:
    summary = run_demo(runtime, customers_count=6, months=3, seed=5, start=date(2026, 1, 1))
    path = tmp_path / "book.beancount"
    with runtime.connection() as conn:
        begin_snapshot(conn)
        path.write_text(
            "".join(export_beancount(conn, uuid.UUID(str(summary["book_id"])), ExportRange()))
        )
        conn.rollback()
    ledger = FavaLedger(str(path))
    assert ledger.errors == [], [str(e.message) for e in ledger.errors[:5]]
    app = create_app([path], load=True)
    client = app.test_client()
    index = client.get("/", follow_redirects=True)
    assert index.status_code == 200
    base = index.request.path.rsplit("/", 2)[0]
    assert client.get(f"{base}/no-such-page/").status_code == 404  # the check can fail
    for page in ("income_statement", "balance_sheet", "journal", "errors"):
        response = client.get(f"{base}/{page}/")
        assert response.status_code == 200, page
