"""Stripe's webhooks acted on, with exact entries: a payment posted by
payment_intent.succeeded when the charge's answer was lost; a failed intent;
a refund made in Stripe's dashboard; a dispute opened (108.00 + Stripe's 15.00
fee) then lost or won; a payout to the bank. A replayed event changes nothing.

Concurrency: the same event delivered twice at once, two events for one charge
at once, and a webhook racing the synchronous charge answer each post ONE
payment (payments.gateway_charge is unique per book)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from adapters.runtime import Runtime
from tests.conftest import BookFixture
from tests.integration.http_fixtures import assert_problem, auth, open_client
from tests.payments.helpers import (
    account_balance,
    create_invoice,
    entries_of_kind,
    table_counts,
)
from tests.payments.stripe_fixtures import (
    CLEARING,
    deliver,
    deliver_direct,
    payment_rows,
    stripe_customer,
)
from tests.payments.stripe_stub import StripeStub

AR = "Assets:Receivable:Trade"


@pytest.fixture
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


def _pay(client: Any, key: str, invoice: str) -> dict[str, Any]:
    paid = client.post(f"/v1/invoices/{invoice}/pay", json={}, headers=auth(key))
    assert paid.status_code == 200, paid.text
    result: dict[str, Any] = paid.json()
    return result


def _intent(stub: StripeStub) -> dict[str, Any]:
    [intent] = [o for o in stub.objects.values() if o["object"] == "payment_intent"]
    return intent


def _lost_answer(client: Any, key: str, stub: StripeStub) -> dict[str, Any]:
    """An invoice Stripe charged whose answer never arrived: its attempt is pending."""
    invoice = create_invoice(client, key, stripe_customer(client, key)["id"])
    stub.fault = "drop"
    tried = _pay(client, key, invoice["id"])
    assert [a["outcome"] for a in tried["attempts"]] == ["pending"]
    return invoice


def _paid(client: Any, key: str, stub: StripeStub) -> dict[str, Any]:
    """A 108.00 invoice paid by a Stripe charge; its charge as Stripe holds it."""
    invoice = create_invoice(client, key, stripe_customer(client, key)["id"])
    assert _pay(client, key, invoice["id"])["status"] == "paid"
    return dict(stub.objects[_intent(stub)["latest_charge"]])


def test_payment_intent_succeeded_posts_the_payment_the_lost_answer_did_not(
    client: Any, runtime: Runtime, stripe_book: BookFixture, stub: StripeStub
) -> None:
    key = stripe_book.admin_key
    invoice = _lost_answer(client, key, stub)
    event = stub.event("payment_intent.succeeded", _intent(stub))
    assert deliver(client, stripe_book, stub, event)["duplicate"] is False
    got = client.get(f"/v1/invoices/{invoice['id']}", headers=auth(key)).json()
    assert (got["status"], [a["outcome"] for a in got["attempts"]]) == ("paid", ["succeeded"])
    with runtime.connection() as conn:
        assert entries_of_kind(conn, stripe_book.id, "payment") == [
            [(CLEARING, "108.00"), (AR, "-108.00")]
        ]
        assert entries_of_kind(conn, stripe_book.id, "payment_fee") == [
            [(CLEARING, "-3.43"), ("Expenses:Payment-Fees", "3.43")]
        ]
        before = table_counts(conn, stripe_book.id)
    assert deliver(client, stripe_book, stub, event)["duplicate"] is True  # replayed
    again = client.post(f"/v1/invoices/{invoice['id']}/pay", json={}, headers=auth(key))
    assert_problem(again, 409)  # nothing left to pay: no second charge
    with runtime.connection() as conn:
        assert table_counts(conn, stripe_book.id) == before
    assert stub.intents_created == 1


def test_payment_intent_succeeded_after_the_answer_posted_it_changes_nothing(
    client: Any, runtime: Runtime, stripe_book: BookFixture, stub: StripeStub
) -> None:
    key = stripe_book.admin_key
    _paid(client, key, stub)
    with runtime.connection() as conn:
        before = table_counts(conn, stripe_book.id)
    deliver(client, stripe_book, stub, stub.event("payment_intent.succeeded", _intent(stub)))
    with runtime.connection() as conn:
        assert table_counts(conn, stripe_book.id) == before


def test_payment_intent_payment_failed_marks_the_pending_attempt_failed(
    client: Any, runtime: Runtime, stripe_book: BookFixture, stub: StripeStub
) -> None:
    key = stripe_book.admin_key
    invoice = _lost_answer(client, key, stub)
    intent = _intent(stub) | {
        "status": "requires_payment_method",
        "last_payment_error": {"type": "card_error", "code": "card_declined",
                               "decline_code": "insufficient_funds"},
    }  # fmt: skip
    with runtime.connection() as conn:
        before = table_counts(conn, stripe_book.id)
    deliver(client, stripe_book, stub, stub.event("payment_intent.payment_failed", intent))
    got = client.get(f"/v1/invoices/{invoice['id']}", headers=auth(key)).json()
    assert [(a["outcome"], a["code"]) for a in got["attempts"]] == [
        ("failed", "insufficient_funds")
    ]
    assert got["next_action"] == {"type": "retry", "on": "2026-02-05"}
    with runtime.connection() as conn:
        assert table_counts(conn, stripe_book.id) == before  # no entry, no payment


def test_an_event_for_another_books_intent_is_stored_and_changes_nothing(
    client: Any, runtime: Runtime, stripe_book: BookFixture, stub: StripeStub
) -> None:
    key = stripe_book.admin_key
    _lost_answer(client, key, stub)
    other = _intent(stub) | {"metadata": {"book": "00000000-0000-0000-0000-000000000000"}}
    with runtime.connection() as conn:
        before = table_counts(conn, stripe_book.id)
    assert deliver(client, stripe_book, stub, stub.event("payment_intent.succeeded", other))
    with runtime.connection() as conn:
        assert table_counts(conn, stripe_book.id) == before


def test_a_refund_made_in_stripes_dashboard_is_posted_once(
    client: Any, runtime: Runtime, stripe_book: BookFixture, stub: StripeStub
) -> None:
    key = stripe_book.admin_key
    charge = _paid(client, key, stub)
    payment = client.get("/v1/payments", headers=auth(key)).json()["data"][0]
    ours = client.post(
        "/v1/refunds", json={"payment": payment["id"], "amount": "54.00"}, headers=auth(key)
    )
    assert ours.status_code == 201, ours.text
    deliver(client, stripe_book, stub, stub.event("charge.refunded", stub.objects[charge["id"]]))
    with runtime.connection() as conn:  # Stripe's event for our own refund: nothing more
        assert len(entries_of_kind(conn, stripe_book.id, "refund")) == 1
    stub.refund_in_dashboard(charge["id"], 2700)  # 27.00 refunded in the dashboard
    event = stub.event("charge.refunded", stub.objects[charge["id"]])
    deliver(client, stripe_book, stub, event)
    deliver(client, stripe_book, stub, event)  # replayed
    with runtime.connection() as conn:
        assert entries_of_kind(conn, stripe_book.id, "refund") == [
            [
                (CLEARING, "-54.00"),
                ("Income:Contra:Refunds", "50.00"),
                ("Liabilities:Tax-Payable", "4.00"),
            ],
            [
                (CLEARING, "-27.00"),
                ("Income:Contra:Refunds", "25.00"),
                ("Liabilities:Tax-Payable", "2.00"),
            ],
        ]
    assert len(stub.objects[charge["id"]]["refunds"]["data"]) == 2  # none sent back


def _disputed(client: Any, runtime: Runtime, book: BookFixture, stub: StripeStub) -> dict[str, Any]:
    charge = _paid(client, book.admin_key, stub)
    dispute = stub.dispute(charge["id"])
    event = stub.event("charge.dispute.created", dispute)
    deliver(client, book, stub, event)
    assert deliver(client, book, stub, event)["duplicate"] is True
    [ours] = client.get("/v1/disputes", headers=auth(book.admin_key)).json()["data"]
    assert (ours["gateway"], ours["amount"], ours["fee"], ours["status"]) == (
        "stripe",
        "108.00",
        "15.00",
        "needs_response",
    )
    assert (ours["opened_on"], ours["evidence_due"]) == ("2026-02-02", "2026-02-08")
    with runtime.connection() as conn:
        assert entries_of_kind(conn, book.id, "dispute") == [
            [
                (CLEARING, "-123.00"),
                ("Assets:Disputed-Funds", "108.00"),
                ("Expenses:Dispute-Fees", "15.00"),
            ]
        ]
    return dispute


def test_a_dispute_opened_then_lost(
    client: Any, runtime: Runtime, stripe_book: BookFixture, stub: StripeStub
) -> None:
    dispute = _disputed(client, runtime, stripe_book, stub)
    event = stub.event("charge.dispute.closed", stub.close_dispute(dispute["id"], "lost"))
    deliver(client, stripe_book, stub, event)
    deliver(client, stripe_book, stub, stub.event("charge.dispute.closed", dispute))  # again
    with runtime.connection() as conn:
        assert entries_of_kind(conn, stripe_book.id, "dispute_lost") == [
            [
                ("Assets:Disputed-Funds", "-108.00"),
                ("Income:Contra:Disputes", "100.00"),
                ("Liabilities:Tax-Payable", "8.00"),
            ]
        ]
        assert account_balance(conn, stripe_book.id, "Assets:Disputed-Funds") == "0.00"
    [ours] = client.get("/v1/disputes", headers=auth(stripe_book.admin_key)).json()["data"]
    assert ours["status"] == "lost"


def test_an_operator_cannot_close_a_stripe_dispute(
    client: Any, runtime: Runtime, stripe_book: BookFixture, stub: StripeStub
) -> None:
    _disputed(client, runtime, stripe_book, stub)
    [ours] = client.get("/v1/disputes", headers=auth(stripe_book.admin_key)).json()["data"]
    refused = client.post(
        f"/v1/disputes/{ours['id']}/close",
        json={"outcome": "won"},
        headers=auth(stripe_book.admin_key),
    )
    assert_problem(refused, 409)
    with runtime.connection() as conn:
        assert entries_of_kind(conn, stripe_book.id, "dispute_won") == []


def test_a_webhook_that_cannot_reach_stripe_is_503_and_stored_only_when_acted_on(
    client: Any, runtime: Runtime, stripe_book: BookFixture, stub: StripeStub
) -> None:
    key = stripe_book.admin_key
    invoice = _lost_answer(client, key, stub)
    event = stub.event("payment_intent.succeeded", _intent(stub))
    stub.fault = "500"  # the charge (for its fee) cannot be fetched
    failed = client.post(
        f"/v1/webhooks/stripe/{stripe_book.id}",
        content=event,
        headers={"Content-Type": "application/json", "Stripe-Signature": stub.signature(event)},
    )
    assert_problem(failed, 503, "gateway_unavailable")  # Stripe sends it again later
    with runtime.connection() as conn:
        assert table_counts(conn, stripe_book.id)[4] == 0
        stored = conn.execute(
            "select count(*) from webhook_events where book_id = %s", (stripe_book.id,)
        ).fetchone()
        assert stored == (0,)
    assert deliver(client, stripe_book, stub, event)["duplicate"] is False
    got = client.get(f"/v1/invoices/{invoice['id']}", headers=auth(key)).json()
    assert got["status"] == "paid"


def test_a_dispute_opened_then_won(
    client: Any, runtime: Runtime, stripe_book: BookFixture, stub: StripeStub
) -> None:
    dispute = _disputed(client, runtime, stripe_book, stub)
    event = stub.event("charge.dispute.closed", stub.close_dispute(dispute["id"], "won"))
    deliver(client, stripe_book, stub, event)
    with runtime.connection() as conn:
        assert entries_of_kind(conn, stripe_book.id, "dispute_won") == [
            [(CLEARING, "108.00"), ("Assets:Disputed-Funds", "-108.00")]
        ]
        assert account_balance(conn, stripe_book.id, CLEARING) == "89.57"  # 104.57 − 15.00


def test_payout_paid_moves_the_net_to_the_bank_once(
    client: Any, runtime: Runtime, stripe_book: BookFixture, stub: StripeStub
) -> None:
    key = stripe_book.admin_key
    _paid(client, key, stub)
    arrival = int(datetime(2026, 2, 4, tzinfo=UTC).timestamp())
    event = stub.event("payout.paid", stub.payout(arrival))
    deliver(client, stripe_book, stub, event)
    deliver(client, stripe_book, stub, event)
    payouts = client.get("/v1/payouts", headers=auth(key)).json()["data"]
    assert [(p["gateway"], p["amount"], p["arrival_date"], p["status"]) for p in payouts] == [
        ("stripe", "104.57", "2026-02-04", "paid")
    ]
    with runtime.connection() as conn:
        assert entries_of_kind(conn, stripe_book.id, "payout") == [
            [("Assets:Bank:Operating", "104.57"), (CLEARING, "-104.57")]
        ]
        assert account_balance(conn, stripe_book.id, CLEARING) == "0.00"


def test_two_stripe_payouts_on_one_day_in_one_currency_are_both_posted(
    client: Any, runtime: Runtime, stripe_book: BookFixture, stub: StripeStub
) -> None:
    """An instant payout beside the automatic one: Stripe pays out twice that day."""
    key = stripe_book.admin_key
    arrival = int(datetime(2026, 2, 4, tzinfo=UTC).timestamp())
    _paid(client, key, stub)
    deliver(client, stripe_book, stub, stub.event("payout.paid", stub.payout(arrival)))
    invoice = create_invoice(client, key, stripe_customer(client, key)["id"])
    assert _pay(client, key, invoice["id"])["status"] == "paid"
    deliver(client, stripe_book, stub, stub.event("payout.paid", stub.payout(arrival)))
    payouts = client.get("/v1/payouts", headers=auth(key)).json()["data"]
    assert [(p["amount"], p["arrival_date"], p["status"]) for p in payouts] == [
        ("104.57", "2026-02-04", "paid"),
        ("104.57", "2026-02-04", "paid"),
    ]
    with runtime.connection() as conn:
        assert entries_of_kind(conn, stripe_book.id, "payout") == [
            [("Assets:Bank:Operating", "104.57"), (CLEARING, "-104.57")],
            [("Assets:Bank:Operating", "104.57"), (CLEARING, "-104.57")],
        ]
        assert account_balance(conn, stripe_book.id, CLEARING) == "0.00"


def test_verify_passes_after_stripe_charges_refunds_disputes_and_payouts(
    client: Any, runtime: Runtime, stripe_book: BookFixture, stub: StripeStub
) -> None:
    from adapters.services import verify_everything

    dispute = _disputed(client, runtime, stripe_book, stub)
    lost = stub.event("charge.dispute.closed", stub.close_dispute(dispute["id"], "lost"))
    deliver(client, stripe_book, stub, lost)
    arrival = int(datetime(2026, 2, 4, tzinfo=UTC).timestamp())
    deliver(client, stripe_book, stub, stub.event("payout.paid", stub.payout(arrival)))
    with runtime.connection() as conn:
        assert verify_everything(conn, stripe_book.id) == []
        assert account_balance(conn, stripe_book.id, CLEARING) == "0.00"


# --- concurrency ----------------------------------------------------------------------


def _at_once(count: int, work: Any) -> list[Any]:
    barrier = threading.Barrier(count)
    results: list[Any] = []

    def run() -> None:
        barrier.wait()
        results.append(work())

    threads = [threading.Thread(target=run) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_one_event_delivered_twice_at_once_posts_one_payment(
    client: Any, runtime: Runtime, stripe_book: BookFixture, stub: StripeStub
) -> None:
    _lost_answer(client, stripe_book.admin_key, stub)
    event = stub.event("payment_intent.succeeded", _intent(stub))
    done = _at_once(2, lambda: deliver_direct(runtime, stripe_book.id, stub, event))
    assert sorted(replayed for _, replayed in done) == [False, True]
    with runtime.connection() as conn:
        charge = _intent(stub)["latest_charge"]
        assert payment_rows(conn, stripe_book.id) == [(charge, "108.00", "stripe")]
        assert len(entries_of_kind(conn, stripe_book.id, "payment_fee")) == 1


def test_two_events_for_one_charge_at_once_post_one_payment(
    client: Any, runtime: Runtime, stripe_book: BookFixture, stub: StripeStub
) -> None:
    _lost_answer(client, stripe_book.admin_key, stub)
    events = [stub.event("payment_intent.succeeded", _intent(stub)) for _ in range(4)]
    pending = list(events)
    lock = threading.Lock()

    def one() -> tuple[str, bool]:
        with lock:
            event = pending.pop()
        return deliver_direct(runtime, stripe_book.id, stub, event)

    done = _at_once(4, one)
    assert sorted(replayed for _, replayed in done) == [False] * 4  # four distinct events
    with runtime.connection() as conn:
        assert len(payment_rows(conn, stripe_book.id)) == 1
        assert entries_of_kind(conn, stripe_book.id, "payment") == [
            [(CLEARING, "108.00"), (AR, "-108.00")]
        ]


def _lock_waiters(runtime: Runtime) -> int:
    with runtime.connection() as conn:
        row = conn.execute(
            "select count(*) from pg_stat_activity where datname = current_database()"
            " and wait_event_type = 'Lock'"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_webhook_racing_the_charge_answer_posts_one_payment(
    client: Any, runtime: Runtime, stripe_book: BookFixture, stub: StripeStub
) -> None:
    """Stripe sends payment_intent.succeeded before its answer to the create call
    reaches us: the webhook waits on the customer's lock the charge holds, then
    finds the payment the answer posted."""
    key = stripe_book.admin_key
    invoice = create_invoice(client, key, stripe_customer(client, key)["id"])
    delivered: list[tuple[str, bool]] = []
    webhook: list[threading.Thread] = []

    def race(intent: dict[str, Any]) -> None:
        event = stub.event("payment_intent.succeeded", intent)
        thread = threading.Thread(
            target=lambda: delivered.append(deliver_direct(runtime, stripe_book.id, stub, event))
        )
        webhook.append(thread)
        thread.start()
        for _ in range(500):  # until the webhook waits on the lock (or is done)
            if _lock_waiters(runtime) or delivered:
                break
            time.sleep(0.01)

    stub.on_intent = race
    assert _pay(client, key, invoice["id"])["status"] == "paid"
    webhook[0].join()
    assert [replayed for _, replayed in delivered] == [False]
    with runtime.connection() as conn:
        assert len(payment_rows(conn, stripe_book.id)) == 1
        assert len(entries_of_kind(conn, stripe_book.id, "payment")) == 1
        assert len(entries_of_kind(conn, stripe_book.id, "payment_fee")) == 1
        assert account_balance(conn, stripe_book.id, CLEARING) == "104.57"


def test_the_database_refuses_a_second_payment_for_one_gateway_charge(
    client: Any, runtime: Runtime, stripe_book: BookFixture, stub: StripeStub
) -> None:
    import psycopg

    _paid(client, stripe_book.admin_key, stub)
    with runtime.connection() as conn:
        charge, customer = conn.execute(
            "select gateway_charge, customer_id from payments where book_id = %s",
            (stripe_book.id,),
        ).fetchone() or (None, None)
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                "insert into payments (book_id, id, customer_id, amount, currency, method,"
                " received_on, gateway_charge) values (%s, gen_random_uuid(), %s, 1, 'USD',"
                " 'stripe', '2026-02-02', %s)",
                (stripe_book.id, customer, charge),
            )


def test_an_intent_that_required_action_is_paid_by_its_webhook_once_authenticated(
    client: Any, runtime: Runtime, stripe_book: BookFixture, stub: StripeStub
) -> None:
    key = stripe_book.admin_key
    customer = stripe_customer(client, key, "pm_card_threeDSecureRequired")
    invoice = create_invoice(client, key, customer["id"])
    tried = _pay(client, key, invoice["id"])
    assert [a["outcome"] for a in tried["attempts"]] == ["requires_action"]
    intent = stub.authenticate(_intent(stub)["id"])
    deliver(client, stripe_book, stub, stub.event("payment_intent.succeeded", intent))
    got = client.get(f"/v1/invoices/{invoice['id']}", headers=auth(key)).json()
    assert (got["status"], [a["outcome"] for a in got["attempts"]]) == ("paid", ["succeeded"])
    with runtime.connection() as conn:
        assert entries_of_kind(conn, stripe_book.id, "payment_fee") == [
            [(CLEARING, "-3.43"), ("Expenses:Payment-Fees", "3.43")]
        ]
        charges = conn.execute(
            "select id, status from gateway_charges where book_id = %s", (stripe_book.id,)
        ).fetchall()
    assert charges == [(intent["latest_charge"], "succeeded")]  # disputes can name it


def test_a_charge_whose_transaction_rolled_back_is_recorded_by_its_webhook(
    client: Any, runtime: Runtime, stripe_book: BookFixture, stub: StripeStub
) -> None:
    """Stripe charged, then our transaction died before its commit: the attempt and
    everything else rolled back. The PaymentIntent's metadata names the attempt, so
    the webhook records it and posts the money Stripe took, once."""
    from adapters.gateways.collection import pay_invoice
    from ledger.postgres.unit_of_work import unit_of_work
    from tests.payments.stripe_fixtures import TODAY

    key = stripe_book.admin_key
    invoice = create_invoice(client, key, stripe_customer(client, key)["id"])
    with unit_of_work(runtime.connection) as uow:
        pay_invoice(uow.conn, stripe_book.id, invoice["id"], None, TODAY)  # never committed
    with runtime.connection() as conn:
        assert table_counts(conn, stripe_book.id)[1:3] == (0, 0)  # no attempt, no charge
    intent = _intent(stub)
    deliver(client, stripe_book, stub, stub.event("payment_intent.succeeded", intent))
    got = client.get(f"/v1/invoices/{invoice['id']}", headers=auth(key)).json()
    assert got["status"] == "paid"
    assert [(a["id"], a["outcome"]) for a in got["attempts"]] == [
        (intent["metadata"]["attempt"], "succeeded")
    ]
    with runtime.connection() as conn:
        assert entries_of_kind(conn, stripe_book.id, "payment") == [
            [(CLEARING, "108.00"), (AR, "-108.00")]
        ]
        assert entries_of_kind(conn, stripe_book.id, "payment_fee") == [
            [(CLEARING, "-3.43"), ("Expenses:Payment-Fees", "3.43")]
        ]


def test_an_account_name_taken_twice_is_still_a_conflict(
    client: Any, stripe_book: BookFixture
) -> None:
    """Account ids follow from their names (so an account opened in a rolled-back
    transaction and opened again has the id a process may have kept): the same
    name again is still a 409, whichever constraint the database checks first."""
    body = {"name": "Assets:Clearing:Other"}
    first = client.post("/v1/accounts", json=body, headers=auth(stripe_book.admin_key))
    assert first.status_code == 201, first.text
    again = client.post("/v1/accounts", json=body, headers=auth(stripe_book.admin_key))
    assert_problem(again, 409)


def test_a_stripe_payout_reconciles_with_its_bank_statement_line(
    client: Any, runtime: Runtime, stripe_book: BookFixture, stub: StripeStub
) -> None:
    from tests.integration.test_reconciliation_matching import camt053

    key = stripe_book.admin_key
    _paid(client, key, stub)
    payout = stub.payout(int(datetime(2026, 2, 4, tzinfo=UTC).timestamp()))
    deliver(client, stripe_book, stub, stub.event("payout.paid", payout))
    lines = [("104.57", "2026-02-04", payout["id"], None, "STRIPE", "STRIPE PAYOUT")]
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
        [entry] = conn.execute(
            "select id from journal_entries where book_id = %s and metadata->>'kind' = 'payout'",
            (stripe_book.id,),
        ).fetchall()
    [match] = matched.json()["matches"]
    assert (match["rule"], {p["entry_id"] for p in match["postings"]}) == (
        "bank_reference",
        {str(entry[0])},
    )
