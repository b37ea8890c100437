"""Dunning runs on a simulated clock, worked examples with exact entries. The book
starts Monday Feb 2, 2026; invoices are 100.00 + 8 % tax = 108.00, net 30 (due
Mar 4). A declined card is retried on days 3, 5 and 7 after the first failure;
reminders go out 3 days before and 1, 7, 14 days after the due date, once each;
late fees are their own invoices; a subscription is suspended and resumed by
payment; an invoice is written off after N days."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from adapters.keys import Role
from adapters.runtime import Runtime
from adapters.services import verify_everything
from tests.conftest import BookFixture, make_book
from tests.integration.http_fixtures import assert_problem, auth, new_key, open_client
from tests.payments.helpers import add_card, create_customer, create_invoice, entries_of_kind

CLEARING = "Assets:Clearing:Fake"
AR = "Assets:Receivable:Trade"


@pytest.fixture
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


@pytest.fixture
def sim_book(runtime: Runtime) -> BookFixture:
    return make_book(runtime, "USD", date(2026, 2, 2))


def _clock(client: Any, key: str, to: str) -> None:
    moved = client.post("/v1/clock", json={"now": to}, headers=auth(key))
    assert moved.status_code == 200, moved.text


def _dun(client: Any, key: str, as_of: str) -> dict[str, Any]:
    done = client.post("/v1/dunning-runs", json={"as_of": as_of}, headers=auth(key))
    assert done.status_code == 201, done.text
    result: dict[str, Any] = done.json()
    return result


def _settings(client: Any, key: str, change: dict[str, Any]) -> None:
    changed = client.patch("/v1/book/settings", json=change, headers=auth(key))
    assert changed.status_code == 200, changed.text


def _invoice(client: Any, key: str, ref: str) -> dict[str, Any]:
    got = client.get(f"/v1/invoices/{ref}", headers=auth(key))
    assert got.status_code == 200, got.text
    result: dict[str, Any] = got.json()
    return result


def _steps(runtime: Runtime, book: BookFixture) -> list[tuple[str, str, str]]:
    with runtime.connection() as conn:
        rows = conn.execute(
            "select step, as_of::text, outcome from dunning_steps where book_id = %s"
            " order by on_date, step",
            (book.id,),
        ).fetchall()
    return [tuple(r) for r in rows]


def _count(runtime: Runtime, book: BookFixture, table: str) -> int:
    with runtime.connection() as conn:
        row = conn.execute(f"select count(*) from {table} where book_id = %s", (book.id,))
        found = row.fetchone()
    assert found is not None
    return int(found[0])


def test_declined_card_retried_on_days_3_5_7_then_paid_with_a_new_card(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    customer = create_customer(client, key, "charge_automatically", email="ap@acme.test")
    add_card(client, key, customer["id"], "pm_card_chargeDeclinedInsufficientFunds")
    invoice = create_invoice(client, key, customer["id"])
    assert invoice["next_action"] == {"type": "retry", "on": "2026-02-05"}
    assert _dun(client, key, "2026-02-02")["retries"] == 0  # the first failure is today's
    for day, outcomes in (
        ("2026-02-05", ["failed"] * 2),
        ("2026-02-07", ["failed"] * 3),
    ):
        _clock(client, key, day)
        first = _dun(client, key, day)
        assert (first["retries"], first["retries_succeeded"]) == (1, 0)
        again = _dun(client, key, day)  # the same day again: nothing new
        assert (again["retries"], again["reminders"]) == (0, 0)
        seen = _invoice(client, key, invoice["id"])
        assert [a["outcome"] for a in seen["attempts"]] == outcomes
        assert {a["code"] for a in seen["attempts"]} == {"insufficient_funds"}
    assert _invoice(client, key, invoice["id"])["next_action"] == {
        "type": "retry",
        "on": "2026-02-09",
    }
    add_card(client, key, customer["id"], "pm_card_visa")  # becomes the default
    _clock(client, key, "2026-02-09")
    done = _dun(client, key, "2026-02-09")
    assert (done["retries"], done["retries_succeeded"]) == (1, 1)
    paid = _invoice(client, key, invoice["id"])
    assert [(a["at"], a["outcome"]) for a in paid["attempts"]] == [
        ("2026-02-02", "failed"),
        ("2026-02-05", "failed"),
        ("2026-02-07", "failed"),
        ("2026-02-09", "succeeded"),
    ]
    assert (paid["status"], paid["amount_due"], paid["next_action"]) == ("paid", "0.00", None)
    with runtime.connection() as conn:
        assert entries_of_kind(conn, sim_book.id, "payment") == [
            [(CLEARING, "108.00"), (AR, "-108.00")]
        ]
        assert entries_of_kind(conn, sim_book.id, "payment_fee") == [
            [(CLEARING, "-3.43"), ("Expenses:Payment-Fees", "3.43")]
        ]
    assert _dun(client, key, "2026-02-09")["invoices"] == 0


def test_reminders_queued_on_their_days_exactly_once_each(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    customer = create_customer(client, key, email="ap@acme.test")
    invoice = create_invoice(client, key, customer["id"])
    assert invoice["next_action"] == {"type": "reminder", "on": "2026-03-01"}
    _clock(client, key, "2026-02-28")
    assert _dun(client, key, "2026-02-28")["reminders"] == 0
    _clock(client, key, "2026-03-01")
    assert _dun(client, key, "2026-03-01")["reminders"] == 1
    assert _dun(client, key, "2026-03-01")["reminders"] == 0
    [message] = client.get("/v1/messages", headers=auth(key)).json()["data"]
    assert (message["kind"], message["recipient"], message["status"]) == (
        "reminder:-3",
        "ap@acme.test",
        "queued",
    )
    assert message["invoice"] == invoice["id"] and message["attempts"] == 0
    assert message["subject"] == f"Invoice {invoice['number']} is due on 2026-03-04"
    assert "Amount due: 108.00 USD" in message["body"]
    assert _invoice(client, key, invoice["id"])["next_action"] == {
        "type": "reminder",
        "on": "2026-03-05",
    }
    _clock(client, key, "2026-03-05")
    assert _dun(client, key, "2026-03-05")["reminders"] == 1
    # A run that catches up over +7 and +14 sends only the latest; +7 is skipped for good.
    _clock(client, key, "2026-03-20")
    assert _dun(client, key, "2026-03-20")["reminders"] == 1
    assert _dun(client, key, "2026-03-20")["reminders"] == 0
    listed = client.get(f"/v1/messages?invoice={invoice['id']}", headers=auth(key)).json()
    assert [m["kind"] for m in listed["data"]] == ["reminder:-3", "reminder:+1", "reminder:+14"]
    assert "14 days overdue" in listed["data"][2]["subject"]
    assert _steps(runtime, sim_book) == [
        ("reminder:-3", "2026-03-01", "done"),
        ("reminder:+1", "2026-03-05", "done"),
        ("reminder:+7", "2026-03-20", "skipped"),
        ("reminder:+14", "2026-03-20", "done"),
    ]
    seen = _invoice(client, key, invoice["id"])
    assert seen["next_action"] is None
    assert [(s["step"], s["on"], s["as_of"], s["outcome"]) for s in seen["dunning_steps"]] == [
        ("reminder:-3", "2026-03-01", "2026-03-01", "done"),
        ("reminder:+1", "2026-03-05", "2026-03-05", "done"),
        ("reminder:+7", "2026-03-11", "2026-03-20", "skipped"),
        ("reminder:+14", "2026-03-18", "2026-03-20", "done"),
    ]
    assert seen["dunning_steps"][0]["detail"] == {"message": listed["data"][0]["id"]}
    bad = client.get("/v1/messages?status=lost", headers=auth(key))
    assert_problem(bad, 422)


def test_late_fee_is_its_own_invoice_charged_once(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    _settings(client, key, {"dunning": {"late_fee": {"percent": "1.5"}}})
    customer = create_customer(client, key)  # no e-mail: reminders are skipped, not queued
    invoice = create_invoice(client, key, customer["id"])
    _clock(client, key, "2026-03-04")
    assert _dun(client, key, "2026-03-04")["late_fees"] == 0  # due today, not late yet
    _clock(client, key, "2026-03-05")
    assert _dun(client, key, "2026-03-05")["late_fees"] == 1
    assert _dun(client, key, "2026-03-05")["late_fees"] == 0
    _clock(client, key, "2026-04-30")
    assert _dun(client, key, "2026-04-30")["late_fees"] == 0  # the fee invoice is not fined
    found = client.get(f"/v1/invoices?customer={customer['id']}", headers=auth(key)).json()
    fees = [i for i in found["data"] if i["id"] != invoice["id"]]
    [fee] = fees
    # 1.5 % of the 108.00 still due = 1.62, taxed at the customer's 8 %: 0.13
    assert (fee["total"], fee["issue_date"], fee["status"]) == ("1.75", "2026-03-05", "open")
    assert fee["lines"][0]["description"] == f"Late fee on invoice {invoice['number']}"
    with runtime.connection() as conn:
        postings = conn.execute(
            "select a.name, p.amount::text from postings p"
            " join accounts a on a.book_id = p.book_id and a.id = p.account_id"
            " where p.book_id = %s and p.document = %s order by a.name",
            (sim_book.id, f"invoice:{fee['id']}"),
        ).fetchall()
    assert postings == [
        (AR, "1.75"),
        ("Income:Late-Fees", "-1.62"),
        ("Liabilities:Tax-Payable", "-0.13"),
    ]
    assert _count(runtime, sim_book, "messages") == 0
    shown = _invoice(client, key, invoice["id"])["dunning_steps"]
    assert [(s["step"], s["outcome"], s["detail"]) for s in shown] == [
        ("reminder:-3", "skipped", {"reason": "the customer has no e-mail address"}),
        ("late_fee", "done", {"invoice": fee["id"]}),
        ("reminder:+1", "skipped", {"reason": "the customer has no e-mail address"}),
        ("reminder:+7", "skipped", {}),  # a later reminder was due in the same run
        ("reminder:+14", "skipped", {"reason": "the customer has no e-mail address"}),
    ]
    with runtime.connection() as conn:
        assert verify_everything(conn, sim_book.id) == []


def test_write_off_after_n_days_through_the_write_off_path(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    quiet = {"reminder_days_before_due": [], "reminder_days_after_due": []}
    _settings(client, key, {"dunning": {"write_off_after_days": 30, **quiet}})
    customer = create_customer(client, key)
    invoice = create_invoice(client, key, customer["id"])
    _clock(client, key, "2026-04-02")
    assert _invoice(client, key, invoice["id"])["next_action"] == {
        "type": "write_off",
        "on": "2026-04-03",
    }
    assert _dun(client, key, "2026-04-02")["written_off"] == 0
    _clock(client, key, "2026-04-03")
    assert _dun(client, key, "2026-04-03")["written_off"] == 1
    assert _dun(client, key, "2026-04-03")["written_off"] == 0
    gone = _invoice(client, key, invoice["id"])
    assert (gone["status"], gone["amount_due"], gone["next_action"]) == (
        "uncollectible",
        "0.00",
        None,
    )
    with runtime.connection() as conn:
        rows = conn.execute(
            "select a.name, p.amount::text, p.effective_date::text from postings p"
            " join accounts a on a.book_id = p.book_id and a.id = p.account_id"
            " where p.book_id = %s and p.dimensions->>'via' = 'write_off'"
            " order by a.name, p.amount",
            (sim_book.id,),
        ).fetchall()
    # No service period: all of it was earned, so net and tax go to Credit-Losses.
    assert rows == [
        (AR, "-108.00", "2026-04-03"),
        ("Expenses:Credit-Losses", "8.00", "2026-04-03"),
        ("Expenses:Credit-Losses", "100.00", "2026-04-03"),
    ]
    with runtime.connection() as conn:
        assert verify_everything(conn, sim_book.id) == []


def _subscription(client: Any, key: str, customer: str) -> dict[str, Any]:
    product = client.post("/v1/products", json={"name": "Plan"}, headers=auth(key)).json()
    price = client.post(
        "/v1/prices",
        json={
            "product": product["id"],
            "currency": "USD",
            "charge_model": "flat",
            "unit_amount": "30.00",
            "interval": "month",
        },
        headers=auth(key),
    ).json()
    created = client.post(
        "/v1/subscriptions",
        json={"customer": customer, "items": [{"price": price["id"]}]},
        headers=auth(key),
    )
    assert created.status_code == 201, created.text
    result: dict[str, Any] = created.json()
    return result


def _bill(client: Any, key: str) -> int:
    run = client.post("/v1/billing-runs", json={}, headers=auth(key))
    assert run.status_code == 201, run.text
    return int(run.json()["invoices_created"])


def test_suspension_stops_billing_new_periods_and_payment_resumes_it(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    _settings(client, key, {"dunning": {"suspend_after_days": 20, "past_due_after_days": 3}})
    customer = create_customer(client, key, payment_terms_days=10, tax_rate="0.00")
    sub = _subscription(client, key, customer["id"])
    assert _bill(client, key) == 1  # Feb 2 → Mar 2, due Feb 12
    [feb] = client.get(f"/v1/invoices?customer={customer['id']}", headers=auth(key)).json()["data"]
    for day, expected in (("2026-02-14", "active"), ("2026-02-15", "past_due")):  # due + 3
        _clock(client, key, day)
        _dun(client, key, day)
        got = client.get(f"/v1/subscriptions/{sub['id']}", headers=auth(key)).json()
        assert got["status"] == expected, day
    with runtime.connection() as conn:
        events = conn.execute(
            "select type from events where book_id = %s and type like 'subscription.%%'"
            " order by sequence",
            (sim_book.id,),
        ).fetchall()
    assert [e[0] for e in events] == ["subscription.created", "subscription.past_due"]
    with runtime.connection() as conn:  # the invoice says so too, once (issue 13's event)
        overdue = conn.execute(
            "select object_id from events where book_id = %s and type = 'invoice.overdue'",
            (sim_book.id,),
        ).fetchall()
    assert overdue == [(feb["id"],)]
    assert _invoice(client, key, feb["id"])["next_action"] == {
        "type": "reminder",
        "on": "2026-02-19",
    }
    _clock(client, key, "2026-03-04")
    assert _dun(client, key, "2026-03-04")["suspended"] == 1  # Feb 12 + 20
    assert _dun(client, key, "2026-03-04")["suspended"] == 0
    got = client.get(f"/v1/subscriptions/{sub['id']}", headers=auth(key)).json()
    assert got["status"] == "suspended"
    # March 2's period started before the suspension: billed; April's is not.
    assert _bill(client, key) == 1
    _clock(client, key, "2026-04-10")
    assert _bill(client, key) == 0
    _clock(client, key, "2026-05-10")
    assert _bill(client, key) == 0
    paid = client.post(
        "/v1/payments",
        json={
            "customer": customer["id"],
            "amount": "60.00",
            "currency": "USD",
            "method": "bank_transfer",
            "allocations": [
                {"invoice": i["id"], "amount": "30.00"}
                for i in client.get(
                    f"/v1/invoices?customer={customer['id']}", headers=auth(key)
                ).json()["data"]
            ],
        },
        headers=auth(key),
    )
    assert paid.status_code == 201, paid.text
    resumed = client.get(f"/v1/subscriptions/{sub['id']}", headers=auth(key)).json()
    assert resumed["status"] == "active"
    # Resumed May 10: April's period, wholly suspended, is skipped; May's (May 2 → Jun 2)
    # is billed in full, nothing prorated.
    assert _bill(client, key) == 1
    invoices = client.get(f"/v1/invoices?customer={customer['id']}", headers=auth(key)).json()
    assert sorted(
        (i["lines"][0]["service_start"], i["lines"][0]["service_end"], i["total"])
        for i in invoices["data"]
    ) == [
        ("2026-02-02", "2026-03-02", "30.00"),
        ("2026-03-02", "2026-04-02", "30.00"),
        ("2026-05-02", "2026-06-02", "30.00"),
    ]
    with runtime.connection() as conn:
        assert verify_everything(conn, sim_book.id) == []


def test_bad_input_is_refused_and_writes_nothing(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    customer = create_customer(client, key, email="ap@acme.test")
    create_invoice(client, key, customer["id"])
    after_today = client.post("/v1/dunning-runs", json={"as_of": "2026-02-03"}, headers=auth(key))
    assert_problem(after_today, 422)
    assert "after the book's today" in after_today.json()["detail"]
    too_early = client.post("/v1/dunning-runs", json={"as_of": "1990-01-01"}, headers=auth(key))
    assert_problem(too_early, 422)
    not_a_date = client.post("/v1/dunning-runs", json={"as_of": "soon"}, headers=auth(key))
    assert not_a_date.status_code in (400, 422)
    auditor = new_key(runtime, sim_book.id, Role.AUDITOR)
    assert_problem(client.post("/v1/dunning-runs", json={}, headers=auth(auditor)), 403)
    assert client.get("/v1/messages", headers=auth(auditor)).status_code == 200
    for change in (
        {"dunning": {"late_fee": {"fixed": "5.00", "percent": "1"}}},
        {"dunning": {"late_fee": {"fixed": 5}}},
        {"dunning": {"suspend_after_days": 30, "write_off_after_days": 10}},
        {"dunning": {"reminder_days_after_due": [-1]}},
        {"dunning": {"past_due_after_days": -1}},
        {"smtp": {"host": "mail.test", "port": 0}},
        {"smtp": {"from": "not an address"}},
        {"smtp": {"host": "mail.test"}},
    ):
        refused = client.patch("/v1/book/settings", json=change, headers=auth(key))
        assert_problem(refused, 422)
    assert _count(runtime, sim_book, "dunning_steps") == 0
    assert _count(runtime, sim_book, "messages") == 0
    book = client.get("/v1/book", headers=auth(key)).json()
    assert "dunning" not in book["settings"] and "smtp" not in book["settings"]


def test_partial_capture_charges_the_amount_and_leaves_the_rest_due(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    customer = create_customer(client, key)
    add_card(client, key, customer["id"], "pm_card_visa")
    invoice = create_invoice(client, key, customer["id"])
    pay = f"/v1/invoices/{invoice['id']}/pay"
    for amount in ("0", "108.01", "10.001", "-5"):
        assert_problem(client.post(pay, json={"amount": amount}, headers=auth(key)), 422)
    with runtime.connection() as conn:
        assert entries_of_kind(conn, sim_book.id, "payment") == []
    part = client.post(pay, json={"amount": "50.00"}, headers=auth(key))
    assert part.status_code == 200, part.text
    body = part.json()
    assert (body["status"], body["amount_paid"], body["amount_due"]) == ("open", "50.00", "58.00")
    assert [(a["amount"], a["outcome"]) for a in body["attempts"]] == [("50.00", "succeeded")]
    rest = client.post(pay, json={}, headers=auth(key)).json()
    assert (rest["status"], rest["amount_due"]) == ("paid", "0.00")
    with runtime.connection() as conn:
        assert entries_of_kind(conn, sim_book.id, "payment") == [
            [(CLEARING, "50.00"), (AR, "-50.00")],
            [(CLEARING, "58.00"), (AR, "-58.00")],
        ]
        # 2.9 % + 0.30: 50.00 → 1.75; 58.00 → 1.98 (1.682 + 0.30, half-up)
        assert entries_of_kind(conn, sim_book.id, "payment_fee") == [
            [(CLEARING, "-1.75"), ("Expenses:Payment-Fees", "1.75")],
            [(CLEARING, "-1.98"), ("Expenses:Payment-Fees", "1.98")],
        ]


def test_two_runs_at_once_for_one_day_queue_each_reminder_once(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    from adapters.dunning import run_dunning

    key = sim_book.admin_key
    for n in range(3):
        customer = create_customer(client, key, email=f"ap{n}@acme.test")
        create_invoice(client, key, customer["id"])
    _clock(client, key, "2026-03-01")
    barrier = threading.Barrier(2)
    results: list[dict[str, Any]] = []

    def dun() -> None:
        barrier.wait()
        results.append(
            run_dunning(runtime.connection, sim_book.id, date(2026, 3, 1), date(2026, 3, 1))
        )

    threads = [threading.Thread(target=dun) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Each invoice is its own transaction: the runs may share the work, never double it.
    assert sum(r["reminders"] for r in results) == 3
    assert _count(runtime, sim_book, "messages") == 3
    assert _count(runtime, sim_book, "dunning_steps") == 3


def test_a_card_customers_late_fee_is_charged_and_retried_like_any_invoice(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    quiet = {"reminder_days_before_due": [], "reminder_days_after_due": []}
    _settings(client, key, {"dunning": {"late_fee": {"fixed": "10.00"}, **quiet}})
    customer = create_customer(client, key, "charge_automatically", tax_rate="0.00")
    add_card(client, key, customer["id"], "pm_card_chargeDeclined")
    invoice = create_invoice(client, key, customer["id"])  # declined at finalization
    _clock(client, key, "2026-03-05")
    done = _dun(client, key, "2026-03-05")
    # One catch-up retry of the invoice (declined again), then the late fee.
    assert (done["retries"], done["retries_succeeded"], done["late_fees"]) == (1, 0, 1)
    listed = client.get(f"/v1/invoices?customer={customer['id']}", headers=auth(key)).json()
    [fee] = [i for i in listed["data"] if i["id"] != invoice["id"]]
    fee = _invoice(client, key, fee["id"])
    assert (fee["total"], [(a["at"], a["outcome"]) for a in fee["attempts"]]) == (
        "10.00",
        [("2026-03-05", "failed")],
    )
    assert fee["next_action"] == {"type": "retry", "on": "2026-03-08"}
    add_card(client, key, customer["id"], "pm_card_visa")
    _clock(client, key, "2026-03-08")
    assert _dun(client, key, "2026-03-08")["retries_succeeded"] == 1
    assert _invoice(client, key, fee["id"])["status"] == "paid"
    with runtime.connection() as conn:
        assert entries_of_kind(conn, sim_book.id, "payment") == [
            [(CLEARING, "10.00"), (AR, "-10.00")]
        ]
        # 2.9 % of 10.00 + 0.30 = 0.59
        assert entries_of_kind(conn, sim_book.id, "payment_fee") == [
            [(CLEARING, "-0.59"), ("Expenses:Payment-Fees", "0.59")]
        ]


def test_a_payment_waits_for_a_billing_run_holding_its_suspended_subscription(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    """Subscriptions before customers, in both: a billing run claims a subscription
    (suspended, with a period due before its suspension) and then locks its customer
    (a credit holder: `_lock_credit_holders`); a payment of that customer locks the
    customer's suspended subscriptions before the customer (to resume them). Before,
    the payment locked the customer, posted, and only then the subscription in
    `resume_settled`: each waited for the other's lock (deadlock detected)."""
    import uuid
    from datetime import date
    from decimal import Decimal

    from billing.postgres.billing_runs import _claim
    from billing.postgres.credit_notes import lock_customer
    from billing.postgres.payments import create_payment

    key = sim_book.admin_key
    customer = create_customer(client, key, payment_terms_days=10, tax_rate="0.00")
    sub = _subscription(client, key, customer["id"])
    assert _bill(client, key) == 1  # Feb 2 → Mar 2, due Feb 12
    _clock(client, key, "2026-03-04")
    book_id, sub_id, customer_id = sim_book.id, uuid.UUID(sub["id"]), uuid.UUID(customer["id"])
    with runtime.connection() as conn:  # suspended Mar 4 by dunning; Mar 2's period not billed
        conn.execute(
            "update subscriptions set suspended_on = '2026-03-04' where book_id = %s and id = %s",
            (book_id, sub_id),
        )
        conn.commit()
    outcome: list[object] = []

    def pay() -> None:
        try:
            with runtime.connection() as conn:
                create_payment(
                    conn, book_id, str(customer_id), Decimal("30.00"), "USD", "bank_transfer",
                    date(2026, 3, 4),
                )  # fmt: skip
                conn.commit()
            outcome.append("paid")
        except Exception as exc:
            outcome.append(exc)

    with runtime.connection() as run:
        claimed = _claim(run, book_id, date(2026, 3, 4), [sub_id], 0, ())
        assert [r["id"] for r in claimed] == [sub_id]
        payer = threading.Thread(target=pay)
        payer.start()
        _until_one_waits_for_a_lock(runtime)
        lock_customer(run, book_id, customer_id)  # the run's next lock: no deadlock
        run.commit()
    payer.join(30)
    assert outcome == ["paid"]
    got = client.get(f"/v1/subscriptions/{sub['id']}", headers=auth(key)).json()
    assert got["status"] == "active"  # paid up: resumed by the payment


def _until_one_waits_for_a_lock(runtime: Runtime) -> None:
    with runtime.connection() as watch:
        for _ in range(400):
            waiting = watch.execute(
                "select count(*) from pg_stat_activity where datname = current_database()"
                " and wait_event_type = 'Lock'"
            ).fetchone()
            watch.rollback()
            if waiting == (1,):
                return
            threading.Event().wait(0.05)
    raise AssertionError(f"{waiting} sessions wait for a lock")


def test_a_dunning_suspension_waits_for_a_billing_run_holding_the_subscription(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    """A dunning run locks the invoice's subscription (it may suspend it) before the
    customer, as a billing run does; before, it locked the customer, then the
    subscription to suspend it, while the run held it and waited for the customer."""
    import uuid
    from datetime import date

    from adapters.dunning import run_dunning
    from billing.postgres.billing_runs import _claim
    from billing.postgres.credit_notes import lock_customer

    key = sim_book.admin_key
    _settings(client, key, {"dunning": {"suspend_after_days": 20}})
    customer = create_customer(client, key, payment_terms_days=10, tax_rate="0.00")
    sub = _subscription(client, key, customer["id"])
    assert _bill(client, key) == 1  # Feb 2 → Mar 2, due Feb 12: suspended Mar 4
    _clock(client, key, "2026-03-04")
    book_id, sub_id, customer_id = sim_book.id, uuid.UUID(sub["id"]), uuid.UUID(customer["id"])
    outcome: list[object] = []

    def dun() -> None:
        try:
            day = date(2026, 3, 4)
            outcome.append(run_dunning(runtime.connection, book_id, day, day)["suspended"])
        except Exception as exc:
            outcome.append(exc)

    with runtime.connection() as run:
        claimed = _claim(run, book_id, date(2026, 3, 4), [sub_id], 0, ())
        assert [r["id"] for r in claimed] == [sub_id]  # Mar 2's period is due
        dunning = threading.Thread(target=dun)
        dunning.start()
        _until_one_waits_for_a_lock(runtime)
        lock_customer(run, book_id, customer_id)  # the run's next lock: no deadlock
        run.commit()
    dunning.join(30)
    assert outcome == [1]
    got = client.get(f"/v1/subscriptions/{sub['id']}", headers=auth(key)).json()
    assert got["status"] == "suspended"
