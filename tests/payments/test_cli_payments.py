"""The payment commands: payment-methods add|list|detach, invoices finalize
(auto-collection) and pay, clock advance (payouts, disputes), payouts list,
disputes list|close; bad input exits 2 and writes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from adapters.runtime import Runtime
from tests.conftest import BookFixture, make_book
from tests.payments.helpers import account_balance, entries_of_kind, table_counts

pytestmark = pytest.mark.slow  # each command is a fresh Python process


def test_cli_card_collection_end_to_end(runtime: Runtime, database_url: str) -> None:
    book: BookFixture = make_book(runtime, "USD", date(2026, 2, 2))
    cli = Path(sys.executable).with_name("activebilling")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTIVEBILLING_")}
    env["DATABASE_URL"] = database_url

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(cli), *args, "--book", str(book.id), "--format", "json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def ok(*args: str) -> Any:
        done = run(*args)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    customer = ok(
        "customers", "create", "--name", "Acme", "--currency", "USD", "--tax-rate", "0.08"
    )["id"]
    with runtime.connection() as conn:
        before = table_counts(conn, book.id)
    bad = run(
        "payment-methods", "add", "--customer", customer, "--type", "us_bank_account",
        "--routing-number", "110000001", "--account-number", "1234",
    )  # fmt: skip
    assert bad.returncode == 2 and "routing_number" in bad.stderr
    pan = run(
        "payment-methods", "add", "--customer", customer, "--type", "card",
        "--token", "4242424242424242",
    )  # fmt: skip
    assert pan.returncode == 2 and "card number" in pan.stderr
    with runtime.connection() as conn:
        assert table_counts(conn, book.id) == before
    card = ok(
        "payment-methods", "add", "--customer", customer, "--type", "card",
        "--token", "pm_card_createDispute", "--default",
    )  # fmt: skip
    assert (card["last4"], card["default"]) == ("4242", True)
    listed = ok("payment-methods", "list", "--customer", customer)["payment_methods"]
    assert [p["id"] for p in listed] == [card["id"]]
    draft = ok("invoices", "create", "--customer", customer, "--line", "Work", "1", "100.00")
    opened = ok("invoices", "finalize", draft["id"])
    assert (opened["status"], opened["attempts"]) == ("open", [])  # send_invoice: not charged
    paid = ok("invoices", "pay", draft["id"])
    assert (paid["status"], [a["outcome"] for a in paid["attempts"]]) == ("paid", ["succeeded"])
    ok("clock", "advance", "--to", "2026-02-09")
    payouts = ok("payouts", "list")["payouts"]
    assert [(p["amount"], p["arrival_date"], p["status"]) for p in payouts] == [
        ("104.57", "2026-02-04", "paid"),
        ("-123.00", "2026-02-11", "pending"),  # the dispute's amount and fee leave
    ]
    [dispute] = ok("disputes", "list")["disputes"]
    assert dispute["status"] == "needs_response"
    closed = ok("disputes", "close", dispute["id"], "--outcome", "won")
    assert closed["status"] == "won"
    payouts = ok("payouts", "list")["payouts"]
    assert [(p["amount"], p["status"]) for p in payouts] == [
        ("104.57", "paid"),
        ("-15.00", "pending"),  # the funds came back; the fee stays with the gateway
    ]
    with runtime.connection() as conn:
        assert entries_of_kind(conn, book.id, "dispute_won") == [
            [("Assets:Clearing:Fake", "108.00"), ("Assets:Disputed-Funds", "-108.00")]
        ]
        assert account_balance(conn, book.id, "Assets:Disputed-Funds") == "0.00"
    detached = ok("payment-methods", "detach", card["id"], "--customer", customer)
    assert detached["detached_at"] is not None
    assert ok("payment-methods", "list", "--customer", customer)["payment_methods"] == []
