"""Cards through the fake gateway, worked examples with exact entries: a 108.00
invoice (100.00 + 8.00 tax) charged with pm_card_visa posts Clearing 108.00 |
AR 108.00 and Payment-Fees 3.43 | Clearing 3.43; its payout two business days
later moves 104.57 to the bank and clearing is back at zero; a refund goes back
through the gateway; a dispute opens 7 days after a pm_card_createDispute charge
and is won or lost; declines post nothing and schedule a retry."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from adapters.gateways.collection import pay_invoice
from adapters.runtime import Runtime
from adapters.services import verify_everything
from billing.errors import DocumentState
from ledger.postgres.sealer import seal_pending
from ledger.postgres.unit_of_work import unit_of_work
from tests.conftest import BookFixture, make_book
from tests.integration.http_fixtures import assert_problem, auth, open_client
from tests.integration.test_exports_beancount import export_text, load
from tests.payments.helpers import (
    account_balance,
    add_card,
    create_customer,
    create_invoice,
    entries_of_kind,
    table_counts,
)

CLEARING = "Assets:Clearing:Fake"


@pytest.fixture
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


@pytest.fixture
def sim_book(runtime: Runtime) -> BookFixture:
    return make_book(runtime, "USD", date(2026, 2, 2))  # a Monday


def _move_clock(client: Any, key: str, to: str) -> None:
    moved = client.post("/v1/clock", json={"now": to}, headers=auth(key))
    assert moved.status_code == 200, moved.text


def _auto_customer(client: Any, key: str, token: str = "pm_card_visa") -> dict[str, Any]:
    customer = create_customer(client, key, "charge_automatically")
    add_card(client, key, customer["id"], token)
    return customer


def test_finalizing_for_charge_automatically_charges_108_with_fee_3_43(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    customer = _auto_customer(client, key)
    invoice = create_invoice(client, key, customer["id"])
    assert (invoice["status"], invoice["amount_paid"], invoice["amount_due"]) == (
        "paid",
        "108.00",
        "0.00",
    )
    [attempt] = invoice["attempts"]
    assert (attempt["at"], attempt["outcome"], attempt["code"], attempt["amount"]) == (
        "2026-02-02",
        "succeeded",
        None,
        "108.00",
    )
    assert invoice["next_action"] is None
    with runtime.connection() as conn:
        assert entries_of_kind(conn, sim_book.id, "payment") == [
            [(CLEARING, "108.00"), ("Assets:Receivable:Trade", "-108.00")]
        ]
        assert entries_of_kind(conn, sim_book.id, "payment_fee") == [
            [(CLEARING, "-3.43"), ("Expenses:Payment-Fees", "3.43")]
        ]
        assert account_balance(conn, sim_book.id, CLEARING) == "104.57"
    got = client.get(f"/v1/invoices/{invoice['id']}", headers=auth(key)).json()
    assert [a["outcome"] for a in got["attempts"]] == ["succeeded"]


def test_payout_two_business_days_later_empties_clearing(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    create_invoice(client, key, _auto_customer(client, key)["id"])
    _move_clock(client, key, "2026-02-03")
    payouts = client.get("/v1/payouts", headers=auth(key)).json()["data"]
    assert [(p["amount"], p["arrival_date"], p["status"]) for p in payouts] == [
        ("104.57", "2026-02-04", "pending")
    ]
    _move_clock(client, key, "2026-02-06")
    payouts = client.get("/v1/payouts", headers=auth(key)).json()["data"]
    assert [(p["amount"], p["arrival_date"], p["status"]) for p in payouts] == [
        ("104.57", "2026-02-04", "paid")
    ]
    with runtime.connection() as conn:
        assert entries_of_kind(conn, sim_book.id, "payout") == [
            [("Assets:Bank:Operating", "104.57"), (CLEARING, "-104.57")]
        ]
        assert account_balance(conn, sim_book.id, CLEARING) == "0.00"
    _move_clock(client, key, "2026-02-10")  # nothing paid twice
    with runtime.connection() as conn:
        assert len(entries_of_kind(conn, sim_book.id, "payout")) == 1


def test_a_fake_gateway_payout_reconciles_with_its_bank_statement_line(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    from tests.integration.test_reconciliation_matching import camt053

    key = sim_book.admin_key
    create_invoice(client, key, _auto_customer(client, key)["id"])
    _move_clock(client, key, "2026-02-06")
    [payout] = client.get("/v1/payouts", headers=auth(key)).json()["data"]
    assert (payout["amount"], payout["status"]) == ("104.57", "paid")
    lines = [("104.57", "2026-02-04", payout["id"], None, "FAKE GATEWAY", "PAYOUT")]
    uploaded = client.post(
        "/v1/bank-statements",
        files={"file": ("feb.xml", camt053(lines))},
        data={"account": "Assets:Bank:Operating"},
        headers=auth(key),
    )
    assert uploaded.status_code == 201, uploaded.text
    matched = client.post(
        "/v1/reconciliation/auto-match",
        json={"statement": uploaded.json()["id"]},
        headers=auth(key),
    )
    assert matched.status_code == 200, matched.text
    with runtime.connection() as conn:
        [(entry,)] = conn.execute(
            "select id from journal_entries where book_id = %s and metadata->>'kind' = 'payout'",
            (sim_book.id,),
        ).fetchall()
    [match] = matched.json()["matches"]  # one statement line, one payout
    assert (match["rule"], {p["entry_id"] for p in match["postings"]}) == (
        "bank_reference",
        {str(entry)},
    )


def test_a_send_invoice_customer_is_not_charged_at_finalization_but_can_pay_now(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    customer = create_customer(client, key)  # send_invoice
    card = add_card(client, key, customer["id"])
    invoice = create_invoice(client, key, customer["id"])
    assert (invoice["status"], invoice["attempts"]) == ("open", [])
    paid = client.post(
        f"/v1/invoices/{invoice['id']}/pay", json={"payment_method": card["id"]}, headers=auth(key)
    )
    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == "paid"
    again = client.post(f"/v1/invoices/{invoice['id']}/pay", json={}, headers=auth(key))
    assert_problem(again, 409)
    with runtime.connection() as conn:
        assert len(entries_of_kind(conn, sim_book.id, "payment")) == 1


@pytest.mark.parametrize(
    ("token", "outcome", "code"),
    [
        ("pm_card_chargeDeclined", "failed", "generic_decline"),
        ("pm_card_chargeDeclinedInsufficientFunds", "failed", "insufficient_funds"),
        ("pm_card_authenticationRequired", "requires_action", "authentication_required"),
    ],
)
def test_a_decline_posts_nothing_and_schedules_retries_3_5_7_days_after(
    client: Any, runtime: Runtime, sim_book: BookFixture, token: str, outcome: str, code: str
) -> None:
    key = sim_book.admin_key
    customer = _auto_customer(client, key, token)
    with runtime.connection() as conn:
        entries_before = table_counts(conn, sim_book.id)[3]
    invoice = create_invoice(client, key, customer["id"])
    assert (invoice["status"], invoice["amount_due"]) == ("open", "108.00")
    assert [(a["outcome"], a["code"]) for a in invoice["attempts"]] == [(outcome, code)]
    assert invoice["next_action"] == {"type": "retry", "on": "2026-02-05"}
    with runtime.connection() as conn:
        counts = table_counts(conn, sim_book.id)
        assert counts[3] == entries_before + 1  # the invoice's own entry, nothing else
        assert counts[4] == 0  # no payment
    _move_clock(client, key, "2026-02-05")
    retried = client.post(f"/v1/invoices/{invoice['id']}/pay", json={}, headers=auth(key)).json()
    assert retried["next_action"] == {"type": "retry", "on": "2026-02-07"}
    _move_clock(client, key, "2026-02-09")
    last = client.post(f"/v1/invoices/{invoice['id']}/pay", json={}, headers=auth(key)).json()
    assert len(last["attempts"]) == 3  # retries used up: dunning's first reminder is next
    assert last["next_action"] == {"type": "reminder", "on": "2026-03-01"}


def test_a_card_past_its_expiry_is_declined_as_expired_card_and_posts_nothing(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    customer = create_customer(client, key, "charge_automatically")
    attached = client.post(
        f"/v1/customers/{customer['id']}/payment-methods",
        json={
            "type": "card",
            "gateway": "fake",
            "token": "pm_card_visa",
            "exp_month": 2,
            "exp_year": 2026,
            "default": True,
        },
        headers=auth(key),
    )
    assert attached.status_code == 201, attached.text
    _move_clock(client, key, "2026-03-02")  # the card was good through February
    invoice = create_invoice(client, key, customer["id"])
    got = client.get(f"/v1/invoices/{invoice['id']}", headers=auth(key)).json()
    assert got["amount_due"] == "108.00"
    [attempt] = got["attempts"]
    assert (attempt["outcome"], attempt["code"]) == ("failed", "expired_card")
    with runtime.connection() as conn:
        assert entries_of_kind(conn, sim_book.id, "payment") == []
        assert account_balance(conn, sim_book.id, CLEARING) == "0.00"


def test_retry_days_follow_the_book_setting(client: Any, sim_book: BookFixture) -> None:
    key = sim_book.admin_key
    changed = client.patch(
        "/v1/book/settings", json={"dunning": {"retry_days": [1, 2]}}, headers=auth(key)
    )
    assert changed.status_code == 200, changed.text
    customer = _auto_customer(client, key, "pm_card_chargeDeclined")
    invoice = create_invoice(client, key, customer["id"])
    assert invoice["next_action"] == {"type": "retry", "on": "2026-02-03"}


def test_fee_follows_the_book_setting(client: Any, runtime: Runtime, sim_book: BookFixture) -> None:
    key = sim_book.admin_key
    client.patch(
        "/v1/book/settings",
        json={"fake_gateway_fee": {"percent": "1.5", "fixed": "0.25"}},
        headers=auth(key),
    )
    create_invoice(client, key, _auto_customer(client, key)["id"])
    with runtime.connection() as conn:  # 108.00 × 1.5 % = 1.62 + 0.25
        assert entries_of_kind(conn, sim_book.id, "payment_fee") == [
            [(CLEARING, "-1.87"), ("Expenses:Payment-Fees", "1.87")]
        ]


def test_refund_goes_back_through_the_gateway_and_the_payout_nets_it(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    create_invoice(client, key, _auto_customer(client, key)["id"])
    payment = client.get("/v1/payments", headers=auth(key)).json()["data"][0]
    assert payment["method"] == "fake"
    refunded = client.post(
        "/v1/refunds", json={"payment": payment["id"], "amount": "108.00"}, headers=auth(key)
    )
    assert refunded.status_code == 201, refunded.text
    with runtime.connection() as conn:
        assert entries_of_kind(conn, sim_book.id, "refund") == [
            [
                (CLEARING, "-108.00"),
                ("Income:Contra:Refunds", "100.00"),
                ("Liabilities:Tax-Payable", "8.00"),
            ]
        ]
        refunds = conn.execute(
            "select type, amount from gateway_balance_transactions where book_id = %s"
            " order by type",
            (sim_book.id,),
        ).fetchall()
        assert [(t, f"{a:.2f}") for t, a in refunds] == [
            ("charge", "104.57"),
            ("refund", "-108.00"),
        ]
    _move_clock(client, key, "2026-02-04")
    payouts = client.get("/v1/payouts", headers=auth(key)).json()["data"]
    assert [(p["amount"], p["status"]) for p in payouts] == [("-3.43", "paid")]
    with runtime.connection() as conn:
        assert entries_of_kind(conn, sim_book.id, "payout") == [
            [("Assets:Bank:Operating", "-3.43"), (CLEARING, "3.43")]
        ]
        assert account_balance(conn, sim_book.id, CLEARING) == "0.00"


def _disputed(client: Any, key: str) -> dict[str, Any]:
    create_invoice(client, key, _auto_customer(client, key, "pm_card_createDispute")["id"])
    _move_clock(client, key, "2026-02-08")
    assert client.get("/v1/disputes", headers=auth(key)).json()["data"] == []
    _move_clock(client, key, "2026-02-09")
    [dispute] = client.get("/v1/disputes", headers=auth(key)).json()["data"]
    return dispute


def test_dispute_opens_7_days_after_the_charge_then_is_lost(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    dispute = _disputed(client, key)
    assert (
        dispute["status"],
        dispute["amount"],
        dispute["fee"],
        dispute["opened_on"],
        dispute["evidence_due"],  # 21 days to respond, as the fake gateway gives
    ) == ("needs_response", "108.00", "15.00", "2026-02-09", "2026-03-02")
    with runtime.connection() as conn:
        assert entries_of_kind(conn, sim_book.id, "dispute") == [
            [
                ("Assets:Clearing:Fake", "-123.00"),
                ("Assets:Disputed-Funds", "108.00"),
                ("Expenses:Dispute-Fees", "15.00"),
            ]
        ]
    closed = client.post(
        f"/v1/disputes/{dispute['id']}/close", json={"outcome": "lost"}, headers=auth(key)
    )
    assert closed.status_code == 200, closed.text
    assert closed.json()["status"] == "lost"
    with runtime.connection() as conn:
        assert entries_of_kind(conn, sim_book.id, "dispute_lost") == [
            [
                ("Assets:Disputed-Funds", "-108.00"),
                ("Income:Contra:Disputes", "100.00"),
                ("Liabilities:Tax-Payable", "8.00"),
            ]
        ]
        assert account_balance(conn, sim_book.id, "Assets:Disputed-Funds") == "0.00"
    again = client.post(
        f"/v1/disputes/{dispute['id']}/close", json={"outcome": "won"}, headers=auth(key)
    )
    assert_problem(again, 409)
    with runtime.connection() as conn:  # each step is an event (issue 13: dispute.*)
        events = conn.execute(
            "select type, object_id from events where book_id = %s and type like 'dispute.%%'"
            " order by sequence",
            (sim_book.id,),
        ).fetchall()
    assert events == [("dispute.created", dispute["id"]), ("dispute.closed", dispute["id"])]
    _move_clock(client, key, "2026-02-11")  # the dispute's debit leaves with a payout
    with runtime.connection() as conn:
        assert account_balance(conn, sim_book.id, CLEARING) == "0.00"


def test_a_lost_dispute_on_a_prepaid_year_takes_unearned_revenue_first(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    """A lost dispute splits as a refund does (ACCOUNTING.md): unearned revenue first,
    then earned revenue to contra-revenue, and the tax it carried."""
    key = sim_book.admin_key
    customer = _auto_customer(client, key, "pm_card_createDispute")
    created = client.post(
        "/v1/invoices",
        json={
            "customer": customer["id"],
            "lines": [
                {
                    "description": "Annual plan",
                    "unit_amount": "1200.00",
                    "service_start": "2026-02-02",
                    "service_end": "2027-02-02",
                },
                {"description": "Setup", "unit_amount": "100.00"},
            ],
            "auto_finalize": True,
        },
        headers=auth(key),
    )
    assert created.status_code == 201, created.text
    assert created.json()["total"] == "1404.00"  # 1,300.00 and 8 % tax
    _move_clock(client, key, "2026-02-09")
    [dispute] = client.get("/v1/disputes", headers=auth(key)).json()["data"]
    assert dispute["amount"] == "1404.00"
    closed = client.post(
        f"/v1/disputes/{dispute['id']}/close", json={"outcome": "lost"}, headers=auth(key)
    )
    assert closed.status_code == 200, closed.text
    with runtime.connection() as conn:
        assert entries_of_kind(conn, sim_book.id, "dispute_lost") == [
            [
                ("Assets:Disputed-Funds", "-1404.00"),
                ("Income:Contra:Disputes", "100.00"),
                ("Liabilities:Deferred-Revenue", "1200.00"),
                ("Liabilities:Tax-Payable", "8.00"),  # each line's own tax
                ("Liabilities:Tax-Payable", "96.00"),
            ]
        ]
        assert account_balance(conn, sim_book.id, "Liabilities:Deferred-Revenue") == "0.00"
        assert verify_everything(conn, sim_book.id) == []


def test_dispute_won_gives_the_funds_back_to_clearing(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    dispute = _disputed(client, key)
    refused = client.post(
        f"/v1/disputes/{dispute['id']}/close", json={"outcome": "maybe"}, headers=auth(key)
    )
    assert_problem(refused, 422)
    closed = client.post(
        f"/v1/disputes/{dispute['id']}/close", json={"outcome": "won"}, headers=auth(key)
    )
    assert closed.json()["status"] == "won"
    with runtime.connection() as conn:
        assert entries_of_kind(conn, sim_book.id, "dispute_won") == [
            [("Assets:Clearing:Fake", "108.00"), ("Assets:Disputed-Funds", "-108.00")]
        ]
    _move_clock(client, key, "2026-02-13")
    with runtime.connection() as conn:
        assert account_balance(conn, sim_book.id, CLEARING) == "0.00"
        assert account_balance(conn, sim_book.id, "Assets:Bank:Operating") == "89.57"


def test_a_disputed_payment_is_not_refunded_until_the_dispute_is_won(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    dispute = _disputed(client, key)
    payment = client.get("/v1/payments", headers=auth(key)).json()["data"][0]
    body = {"payment": payment["id"], "amount": "8.00"}
    with runtime.connection() as conn:
        before = table_counts(conn, sim_book.id)
    assert_problem(client.post("/v1/refunds", json=body, headers=auth(key)), 409)
    with runtime.connection() as conn:
        assert table_counts(conn, sim_book.id) == before
    client.post(f"/v1/disputes/{dispute['id']}/close", json={"outcome": "won"}, headers=auth(key))
    refunded = client.post("/v1/refunds", json=body, headers=auth(key))
    assert refunded.status_code == 201, refunded.text


def test_a_dispute_after_a_partial_refund_is_for_what_was_not_refunded(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    create_invoice(client, key, _auto_customer(client, key, "pm_card_createDispute")["id"])
    payment = client.get("/v1/payments", headers=auth(key)).json()["data"][0]
    refund = {"payment": payment["id"], "amount": "40.00"}
    assert client.post("/v1/refunds", json=refund, headers=auth(key)).status_code == 201
    _move_clock(client, key, "2026-02-09")
    [dispute] = client.get("/v1/disputes", headers=auth(key)).json()["data"]
    assert (dispute["amount"], dispute["fee"]) == ("68.00", "15.00")
    lost = client.post(
        f"/v1/disputes/{dispute['id']}/close", json={"outcome": "lost"}, headers=auth(key)
    )
    assert lost.status_code == 200, lost.text
    with runtime.connection() as conn:
        assert account_balance(conn, sim_book.id, "Assets:Disputed-Funds") == "0.00"
        [lost_entry] = entries_of_kind(conn, sim_book.id, "dispute_lost")
        assert ("Assets:Disputed-Funds", "-68.00") in lost_entry


def test_a_lost_dispute_after_a_credit_kept_as_credit_takes_that_credit_back(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    """108.00 charged, 10.80 credited to the customer's balance, then the cardholder wins
    108.00: 97.20 comes off the invoice's lines, 10.80 out of the customer's credit."""
    key = sim_book.admin_key
    dispute = _disputed(client, key)
    [invoice] = client.get("/v1/invoices", headers=auth(key)).json()["data"]
    credit = {
        "invoice": invoice["id"],
        "amount": "10.80",
        "reason": "service",
        "credit_to": "customer_credit",
    }
    made = client.post("/v1/credit-notes", json=credit, headers=auth(key))
    assert made.status_code == 201, made.text
    lost = client.post(
        f"/v1/disputes/{dispute['id']}/close", json={"outcome": "lost"}, headers=auth(key)
    )
    assert lost.status_code == 200, lost.text
    with runtime.connection() as conn:
        assert entries_of_kind(conn, sim_book.id, "dispute_lost") == [
            [
                ("Assets:Disputed-Funds", "-108.00"),
                ("Income:Contra:Disputes", "90.00"),
                ("Liabilities:Customer-Credit", "10.80"),
                ("Liabilities:Tax-Payable", "7.20"),
            ]
        ]
        assert account_balance(conn, sim_book.id, "Liabilities:Customer-Credit") == "0.00"


def test_64_concurrent_pay_attempts_charge_and_allocate_once(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    customer = create_customer(client, key)
    add_card(client, key, customer["id"])
    invoice = create_invoice(client, key, customer["id"])
    barrier = threading.Barrier(64)
    outcomes: list[str] = []

    def attempt() -> None:
        barrier.wait()
        try:
            with unit_of_work(runtime.connection) as uow:
                pay_invoice(uow.conn, sim_book.id, invoice["id"], None, date(2026, 2, 2))
                uow.commit()
            outcomes.append("paid")
        except DocumentState:
            outcomes.append("refused")

    threads = [threading.Thread(target=attempt) for _ in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["paid"] + ["refused"] * 63
    got = client.get(f"/v1/invoices/{invoice['id']}", headers=auth(key)).json()
    assert (got["amount_paid"], got["amount_due"]) == ("108.00", "0.00")
    with runtime.connection() as conn:
        counts = table_counts(conn, sim_book.id)
        assert (counts[1], counts[2], counts[4]) == (1, 1, 1)  # one attempt, charge, payment
        assert entries_of_kind(conn, sim_book.id, "payment") == [
            [(CLEARING, "108.00"), ("Assets:Receivable:Trade", "-108.00")]
        ]


def test_verify_passes_after_charges_refunds_payouts_and_disputes(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    create_invoice(client, key, _auto_customer(client, key)["id"])
    create_invoice(client, key, _auto_customer(client, key, "pm_card_chargeDeclined")["id"])
    payment = client.get("/v1/payments", headers=auth(key)).json()["data"][0]
    client.post(
        "/v1/refunds", json={"payment": payment["id"], "amount": "50.00"}, headers=auth(key)
    )
    dispute = _disputed(client, key)
    client.post(f"/v1/disputes/{dispute['id']}/close", json={"outcome": "lost"}, headers=auth(key))
    _move_clock(client, key, "2026-02-20")
    with runtime.connection() as conn:
        assert verify_everything(conn, sim_book.id) == []
        assert account_balance(conn, sim_book.id, CLEARING) == "0.00"
    seal_pending(runtime.connection, sim_book.id)
    with runtime.connection() as conn:
        (entries,) = conn.execute(
            "select count(*) from journal_entries where book_id = %s", (sim_book.id,)
        ).fetchone()
    # The auditor's file and the ERP feed carry every one of these entries.
    gateway_accounts = {
        CLEARING,
        "Expenses:Payment-Fees",
        "Assets:Disputed-Funds",
        "Expenses:Dispute-Fees",
        "Assets:Bank:Operating",
    }
    text = export_text(runtime, sim_book.id)
    load(text)  # beancount's loader: zero errors
    assert all(f" {account} " in text for account in gateway_accounts), text
    feed = client.get(
        "/v1/exports/journal", params={"format": "jsonl", "limit": 1000}, headers=auth(key)
    )
    assert feed.status_code == 200, feed.text
    fed = [json.loads(line) for line in feed.text.splitlines()]
    assert len(fed) == entries
    assert gateway_accounts <= {p["account"] for e in fed for p in e["lines"]}


def test_a_billing_run_charges_charge_automatically_subscribers_once(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    product = client.post("/v1/products", json={"name": "Plan"}, headers=auth(key)).json()
    price = client.post(
        "/v1/prices",
        json={
            "product": product["id"],
            "currency": "USD",
            "charge_model": "flat",
            "unit_amount": "100.00",
            "interval": "month",
        },
        headers=auth(key),
    ).json()
    auto = _auto_customer(client, key)
    manual = create_customer(client, key)
    add_card(client, key, manual["id"])  # send_invoice: has a card, is not charged
    for who in (auto, manual):
        created = client.post(
            "/v1/subscriptions",
            json={"customer": who["id"], "items": [{"price": price["id"]}]},
            headers=auth(key),
        )
        assert created.status_code == 201, created.text
    run = client.post("/v1/billing-runs", json={}, headers=auth(key))
    assert run.status_code == 201, run.text
    assert run.json()["invoices_created"] == 2
    invoices = client.get("/v1/invoices", headers=auth(key)).json()["data"]
    by_customer = {i["customer"]: i for i in invoices}
    assert (by_customer[auto["id"]]["status"], by_customer[manual["id"]]["status"]) == (
        "paid",
        "open",
    )
    client.post("/v1/billing-runs", json={}, headers=auth(key))  # nothing charged twice
    with runtime.connection() as conn:
        assert entries_of_kind(conn, sim_book.id, "payment") == [
            [(CLEARING, "108.00"), ("Assets:Receivable:Trade", "-108.00")]
        ]
        assert table_counts(conn, sim_book.id)[1] == 1  # one attempt


def test_a_card_on_a_gateway_not_built_is_not_auto_charged_and_pay_is_422(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    customer = create_customer(client, key, "charge_automatically")
    created = client.post(
        f"/v1/customers/{customer['id']}/payment-methods",
        json={"type": "card", "gateway": "stripe", "token": "pm_123", "last4": "4242",
              "default": True},
        headers=auth(key),
    )  # fmt: skip
    assert created.status_code == 201, created.text
    invoice = create_invoice(client, key, customer["id"])
    assert (invoice["status"], invoice["attempts"]) == ("open", [])
    refused = client.post(f"/v1/invoices/{invoice['id']}/pay", json={}, headers=auth(key))
    assert_problem(refused, 422)
    with runtime.connection() as conn:
        assert table_counts(conn, sim_book.id)[1:3] == (0, 0)  # no attempt, no charge
