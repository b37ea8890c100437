"""Events in the outbox and their webhook deliveries, to a real local HTTP receiver.

The worker runs in the test (WebhookWorker.deliver_due) with a clock the test
moves, so the retry schedule is checked without waiting for it.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from datetime import date as Date
from typing import Any

import pytest

from adapters.runtime import Runtime
from adapters.webhooks.worker import WebhookWorker
from billing.postgres.customers import CustomerSpec, upsert_customer
from ledger.postgres.unit_of_work import unit_of_work
from tests.billing.test_http_invoices import draft, finalize, line
from tests.conftest import APP_ROLE, BookFixture, make_book
from tests.integration.http_fixtures import assert_problem, auth, open_client
from tests.integration.webhook_receiver import Receiver, receiver


@pytest.fixture(scope="module")
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


@pytest.fixture
def sim(runtime: Runtime) -> BookFixture:
    return make_book(runtime, "USD", Date(2026, 1, 10))


class Clock:
    """The worker's now: stopped a minute after the queued deliveries were made
    (they are due then), moved only by the test."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC) + timedelta(minutes=1)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)


def endpoint(client: Any, book: BookFixture, rx: Receiver, **extra: Any) -> dict[str, Any]:
    r = client.post(
        "/v1/webhook-endpoints",
        json={"url": rx.url, "allow_private_network": True, **extra},
        headers=auth(book.admin_key),
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    assert body["secret"].startswith("whsec_")
    rx.secret = body["secret"]
    listed = client.get("/v1/webhook-endpoints", headers=auth(book.admin_key)).json()["data"]
    assert [e["id"] for e in listed][-1] == body["id"] and "secret" not in listed[-1]
    return body


def settings(client: Any, book: BookFixture, **values: Any) -> None:
    r = client.patch("/v1/book/settings", json=values, headers=auth(book.admin_key))
    assert r.status_code == 200, r.text


def customer(client: Any, book: BookFixture, name: str, **extra: Any) -> dict[str, Any]:
    r = client.post(
        "/v1/customers",
        json={"name": name, "currency": "USD", **extra},
        headers=auth(book.admin_key),
    )
    assert r.status_code in (200, 201), r.text
    body: dict[str, Any] = r.json()
    return body


def all_events(client: Any, book: BookFixture) -> list[dict[str, Any]]:
    """Every event of the book, oldest first, read page by page (2 a page)."""
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/events", params=params, headers=auth(book.admin_key)).json()
        out += page["data"]
        cursor = page["next_cursor"]
        if cursor is None:
            return out[::-1]


def attempts(client: Any, book: BookFixture, endpoint_id: str) -> list[dict[str, Any]]:
    r = client.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries", headers=auth(book.admin_key))
    assert r.status_code == 200, r.text
    found: list[dict[str, Any]] = r.json()["data"][::-1]
    return found


def test_every_event_of_a_billing_scenario_is_delivered_signed_and_in_order(
    client: Any, runtime: Runtime, sim: BookFixture
) -> None:
    headers = auth(sim.admin_key)
    with receiver() as rx:
        hook = endpoint(client, sim, rx)
        acme = customer(client, sim, "Acme", external_id="crm-1", tax_rate="0.10")
        customer(client, sim, "Acme Inc", external_id="crm-1")
        invoice = finalize(
            client, sim, draft(client, sim, acme["id"], line("Work", "1", "100"))["id"]
        )
        paid = client.post(
            "/v1/payments",
            json={"customer": acme["id"], "amount": "110.00", "currency": "USD",
                  "method": "bank_transfer", "invoice": invoice["id"]},
            headers=headers,
        )  # fmt: skip
        assert paid.status_code == 201, paid.text
        refund = client.post(
            "/v1/refunds", json={"payment": paid.json()["id"], "amount": "10.00"}, headers=headers
        )
        assert refund.status_code == 201, refund.text
        assert client.post("/v1/periods/2026-01/close", headers=headers).status_code == 200
        # A refused request writes no event.
        assert_problem(client.post("/v1/customers", json={"name": "X"}, headers=headers), 400)

        events = all_events(client, sim)
        assert [e["type"] for e in events] == [
            "customer.created",
            "customer.updated",
            "invoice.finalized",
            "payment.succeeded",
            "invoice.paid",
            "payment.refunded",
            "period.closed",
        ]
        assert events[1]["data"]["previous_attributes"] == {"name": "Acme"}
        assert events[1]["data"]["object"]["tax_rate"] == "0.10"  # the merge kept it
        assert events[4]["data"]["object"]["id"] == invoice["id"]
        assert events[4]["data"]["object"]["amount_due"] == "0.00"
        one = client.get(f"/v1/events/{events[2]['id']}", headers=headers).json()
        assert one == events[2] and one["data"]["object"]["object"] == "invoice"
        only = client.get("/v1/events", params={"type": "invoice.paid"}, headers=headers).json()
        assert [e["id"] for e in only["data"]] == [events[4]["id"]]

        worker = WebhookWorker(runtime.connection, books=[sim.id])
        assert worker.deliver_due() == len(events)
        assert worker.deliver_due() == 0  # nothing left: each delivered once
        assert all(r.verified and r.header_id == r.event_id for r in rx.received)
        assert list(rx.unique()) == [e["id"] for e in events]
        log = attempts(client, sim, hook["id"])
        assert [(a["event"], a["status"], a["response_code"]) for a in log] == [
            (e["id"], "succeeded", 200) for e in events
        ]
        # Redelivery queues the event again; the receiver de-duplicates by id.
        again = client.post(f"/v1/events/{events[0]['id']}/redeliver", headers=headers)
        assert again.status_code == 201, again.text
        assert worker.deliver_due() == 1
        assert len(rx.received) == len(events) + 1 and len(rx.unique()) == len(events)
        worker.stop()


def test_an_event_of_a_rolled_back_transaction_is_never_written(
    client: Any, runtime: Runtime, sim: BookFixture
) -> None:
    with receiver() as rx:
        endpoint(client, sim, rx)
        with unit_of_work(runtime.connection) as uow:
            upsert_customer(uow.conn, sim.id, CustomerSpec(name="Ghost", currency="USD"))
            seen = uow.conn.execute(
                "select count(*) from events where book_id = %s", (sim.id,)
            ).fetchone()
            assert seen == (1,)  # written in the transaction, with its delivery
            # no commit: the unit of work rolls back
        with runtime.connection() as conn:
            counts = conn.execute(
                "select (select count(*) from events where book_id = %(b)s),"
                " (select count(*) from webhook_deliveries where book_id = %(b)s)",
                {"b": sim.id},
            ).fetchone()
        assert counts == (0, 0)
        assert all_events(client, sim) == []
        worker = WebhookWorker(runtime.connection, books=[sim.id])
        assert worker.deliver_due() == 0 and rx.received == []
        worker.stop()


def test_500_three_times_then_200_arrives_on_the_4th_attempt_on_the_book_schedule(
    client: Any, runtime: Runtime, sim: BookFixture
) -> None:
    settings(client, sim, webhook_retry_seconds=[5, 10, 20])
    with receiver() as rx:
        rx.answers = [500, 500, 500]
        hook = endpoint(client, sim, rx)
        customer(client, sim, "Flaky Receiver Co")
        clock = Clock()
        worker = WebhookWorker(runtime.connection, books=[sim.id], clock=clock)
        for wait in (5, 10, 20):
            assert worker.deliver_due() == 1
            assert worker.deliver_due() == 0  # not due before its delay
            clock.advance(wait - 1)
            assert worker.deliver_due() == 0
            clock.advance(1)
        assert worker.deliver_due() == 1
        worker.stop()
        log = attempts(client, sim, hook["id"])
        assert [(a["status"], a["response_code"]) for a in log] == [
            ("failed", 500), ("failed", 500), ("failed", 500), ("succeeded", 200)
        ]  # fmt: skip
        times = [datetime.fromisoformat(a["attempted_at"]) for a in log]
        assert [(b - a).total_seconds() for a, b in itertools.pairwise(times)] == [
            5, 10, 20
        ]  # fmt: skip
        assert len(rx.received) == 4 and len(rx.unique()) == 1
        got = client.get(f"/v1/webhook-endpoints/{hook['id']}", headers=auth(sim.admin_key))
        assert (got.json()["status"], got.json()["consecutive_failures"]) == ("enabled", 0)


def test_a_receiver_that_never_answers_gets_disabled(
    client: Any, runtime: Runtime, sim: BookFixture
) -> None:
    settings(client, sim, webhook_retry_seconds=[1, 1, 1, 1, 1], webhook_disable_after=3)
    with receiver() as rx:
        rx.hang = True
        hook = endpoint(client, sim, rx)
        customer(client, sim, "Silent Receiver Co")
        clock = Clock()
        worker = WebhookWorker(runtime.connection, books=[sim.id], clock=clock, timeout=0.3)
        for _ in range(5):
            worker.deliver_due()
            clock.advance(1)
        worker.stop()
        log = attempts(client, sim, hook["id"])
        assert [(a["status"], a["response_code"]) for a in log] == [("failed", None)] * 3
        assert all("Timeout" in a["error"] for a in log)
        got = client.get(f"/v1/webhook-endpoints/{hook['id']}", headers=auth(sim.admin_key))
        body = got.json()
        assert body["status"] == "disabled"
        assert body["disabled_reason"].startswith("3 consecutive failed deliveries")


_KILLABLE_WORKER = """
import sys, uuid
from adapters.database import DatabaseSettings
from adapters.runtime import Runtime
from adapters.webhooks.worker import WebhookWorker
runtime = Runtime(DatabaseSettings(sys.argv[1], sys.argv[2]), min_size=1, max_size=2)
WebhookWorker(runtime.pool.connection, books=[uuid.UUID(sys.argv[3])]).deliver_due()
"""


def test_killing_the_worker_mid_delivery_loses_no_event(
    client: Any, runtime: Runtime, sim: BookFixture, database_url: str
) -> None:
    with receiver() as rx:
        endpoint(client, sim, rx)
        for name in ("One", "Two", "Three"):
            customer(client, sim, name)
        rx.hang = True
        process = subprocess.Popen(
            [sys.executable, "-c", _KILLABLE_WORKER, database_url, APP_ROLE, str(sim.id)]
        )
        try:
            assert rx.arrived.wait(60), "the worker never sent the first event"
        finally:
            process.kill()
            process.wait()
        rx.hang = False
        rx.release.set()
        worker = WebhookWorker(runtime.connection, books=[sim.id])
        for _ in range(200):  # until PostgreSQL has rolled back the killed session
            worker.deliver_due()
            with runtime.connection() as conn:
                left = conn.execute(
                    "select count(*) from webhook_deliveries where book_id = %s"
                    " and status <> 'succeeded'",
                    (sim.id,),
                ).fetchone()
            if left == (0,):
                break
            rx.arrived.wait(0.05)
        worker.stop()
        events = all_events(client, sim)
        assert list(rx.unique()) == [e["id"] for e in events] and len(events) == 3
        assert rx.received[0].event_id == rx.received[1].event_id  # sent again: at least once


def test_private_unresolvable_and_bad_targets_are_refused(
    client: Any, runtime: Runtime, sim: BookFixture
) -> None:
    headers = auth(sim.admin_key)
    for url in ("http://127.0.0.1:9/x", "http://10.0.0.7/hook", "http://[::1]/x",
                "http://169.254.169.254/latest"):  # fmt: skip
        problem = assert_problem(
            client.post("/v1/webhook-endpoints", json={"url": url}, headers=headers),
            422,
            "invalid_webhook",
        )
        assert "allow_private_network" in problem["detail"]
    unresolvable = {"url": "http://no-such-host.invalid/hook", "allow_private_network": False}
    assert_problem(client.post("/v1/webhook-endpoints", json=unresolvable, headers=headers), 422)
    bad_type = {"url": "http://127.0.0.1:9/x", "allow_private_network": True, "events": ["x.y"]}
    assert_problem(client.post("/v1/webhook-endpoints", json=bad_type, headers=headers), 422)
    with unit_of_work(runtime.connection) as uow:
        from adapters.keys import Role, create_key

        _, operator = create_key(uow.conn, sim.id, Role.OPERATOR)
        uow.commit()
    private = {"url": "http://127.0.0.1:9/x", "allow_private_network": True}
    assert_problem(client.post("/v1/webhook-endpoints", json=private, headers=auth(operator)), 403)
    assert client.get("/v1/webhook-endpoints", headers=headers).json()["data"] == []
    missing = client.post(f"/v1/events/evt_{uuid.uuid4().hex}/redeliver", headers=headers)
    assert_problem(missing, 404)


def test_the_readme_receiver_verifies_real_deliveries(
    client: Any, runtime: Runtime, sim: BookFixture
) -> None:
    """The dozen-line receiver in README.md answers 200 to a signed delivery, 400 to a
    delivery signed with another secret."""
    import re
    import socket
    import threading
    from pathlib import Path

    readme = Path(__file__).parents[2].joinpath("README.md").read_text()
    section = readme.split("## Events and webhooks", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    assert len([x for x in code.group(1).splitlines() if x.strip()]) <= 12
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with receiver() as rx:  # only for its URL shape; the README's server is dialled
        hook = endpoint(client, sim, rx)
    source = code.group(1).replace('b"whsec_..."', repr(hook["secret"].encode()))
    source = source.replace('(("", 8000)', f'(("127.0.0.1", {port})')
    threading.Thread(target=exec, args=(source, {}), daemon=True).start()
    with unit_of_work(runtime.connection) as uow:
        uow.conn.execute(
            "update webhook_endpoints set url = %s where book_id = %s",
            (f"http://127.0.0.1:{port}/", sim.id),
        )
        uow.commit()
    customer(client, sim, "Readme Co")
    worker = WebhookWorker(runtime.connection, books=[sim.id])
    for _ in range(100):  # until the README's server listens
        if worker.deliver_due() and attempts(client, sim, hook["id"])[-1]["response_code"]:
            break
        worker.clock = lambda: datetime.now(UTC) + timedelta(days=1)  # retry at once
    with unit_of_work(runtime.connection) as uow:
        uow.conn.execute(
            "update webhook_endpoints set secret = 'whsec_other' where book_id = %s", (sim.id,)
        )
        uow.commit()
    customer(client, sim, "Forged Co")
    worker.deliver_due()
    worker.stop()
    codes = [a["response_code"] for a in attempts(client, sim, hook["id"]) if a["response_code"]]
    assert codes == [200, 400]


def test_two_workers_at_once_send_each_delivery_once(
    client: Any, runtime: Runtime, sim: BookFixture
) -> None:
    """Claims are FOR UPDATE SKIP LOCKED: two servers' workers never send the same
    delivery twice when both succeed."""
    import threading

    with receiver() as rx:
        endpoint(client, sim, rx)
        for n in range(20):
            customer(client, sim, f"Parallel {n}")
        workers = [WebhookWorker(runtime.connection, books=[sim.id]) for _ in range(2)]
        sent: list[int] = []
        threads = [
            threading.Thread(target=lambda w=w: sent.append(w.deliver_due())) for w in workers
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for w in workers:
            w.stop()
        assert sum(sent) == 20
        assert len(rx.received) == 20 and len(rx.unique()) == 20


def _deliveries(runtime: Runtime, book: BookFixture, endpoint_id: str) -> list[tuple[Any, ...]]:
    with runtime.connection() as conn:
        rows = conn.execute(
            "select status, attempts, event_id from webhook_deliveries"
            " where book_id = %s and endpoint_id = %s order by event_sequence",
            (book.id, uuid.UUID(endpoint_id)),
        ).fetchall()
        conn.rollback()
    return rows


def test_a_hanging_receiver_holds_no_transaction_and_does_not_stall_another_endpoint(
    client: Any, runtime: Runtime, sim: BookFixture, database_url: str
) -> None:
    """Deliveries are leased and sent outside any transaction: while one endpoint's
    receiver hangs, another endpoint's deliveries all arrive, no session of the
    database is idle in transaction, and the hanging delivery's row is not locked."""
    import threading

    import psycopg

    with receiver() as slow, receiver() as fast:
        slow.hang = True
        slow_hook, fast_hook = endpoint(client, sim, slow), endpoint(client, sim, fast)
        for n in range(3):
            customer(client, sim, f"Hang {n}")
        # No re-polling while it hangs: the worker's session is then idle or in a claim.
        worker = WebhookWorker(runtime.connection, books=[sim.id], timeout=60, poll_seconds=600)
        sent: list[int] = []
        thread = threading.Thread(target=lambda: sent.append(worker.deliver_due()))
        thread.start()
        try:
            assert slow.arrived.wait(60), "the hanging endpoint was never dialled"
            for _ in range(1200):  # until the other endpoint's batch is recorded
                if [r[0] for r in _deliveries(runtime, sim, fast_hook["id"])] == ["succeeded"] * 3:
                    break
                fast.arrived.wait(0.05)
            assert [r[0] for r in _deliveries(runtime, sim, fast_hook["id"])] == ["succeeded"] * 3
            assert len(fast.received) == 3 and len(slow.received) == 1  # still hanging
            # As the superuser: the app role does not see other logins' sessions' state.
            with psycopg.connect(database_url) as conn:
                for _ in range(1200):  # a claim in flight ends at once; a send's would not
                    open_tx = conn.execute(
                        "select count(*) from pg_stat_activity where datname = current_database()"
                        " and state like 'idle in transaction%%' and pid <> pg_backend_pid()"
                    ).fetchone()
                    conn.rollback()
                    if open_tx == (0,):
                        break
                    fast.arrived.wait(0.05)
                assert open_tx == (0,)
                leased = conn.execute(
                    "select status from webhook_deliveries where book_id = %s"
                    " and endpoint_id = %s for update nowait",
                    (sim.id, uuid.UUID(slow_hook["id"])),
                ).fetchall()  # the old worker held the row locked: LockNotAvailable
                assert leased == [("sending",)] * 3
                conn.rollback()
        except psycopg.errors.LockNotAvailable:
            raise AssertionError("the delivery being sent is row-locked") from None
        finally:
            slow.release.set()
            thread.join()
        worker.stop()
        assert sent == [6]
        assert [r[:2] for r in _deliveries(runtime, sim, slow_hook["id"])] == [("succeeded", 1)] * 3
        assert list(slow.unique()) == list(fast.unique())  # each endpoint: in event order


def test_a_worker_dead_after_claiming_is_replaced_once_its_lease_lapses(
    client: Any, runtime: Runtime, sim: BookFixture
) -> None:
    """A worker claims and sends but never records (it died): no other worker sends the
    delivery while the lease holds; once it lapses the next worker sends the same
    event id, body and signature, and the dead worker's late result changes nothing."""
    with receiver() as rx:
        hook = endpoint(client, sim, rx)
        customer(client, sim, "Lease Co")
        clock = Clock()
        dead = WebhookWorker(runtime.connection, books=[sim.id], clock=clock)
        [batch] = dead._claim(endpoints=1, limit=10, busy=[])
        results = dead._send_batch(batch)  # sent, never recorded
        assert [r[1:] for r in results] == [(200, None)] and len(rx.received) == 1
        assert _deliveries(runtime, sim, hook["id"])[0][:2] == ("sending", 0)
        successor = WebhookWorker(runtime.connection, books=[sim.id], clock=clock)
        assert successor.deliver_due() == 0  # the lease holds (its backend is alive)
        assert len(rx.received) == 1
        with unit_of_work(runtime.connection) as uow:
            uow.conn.execute(
                "update webhook_deliveries set lease_until = clock_timestamp() - interval '1 s'"
                " where book_id = %s",
                (sim.id,),
            )
            uow.commit()
        assert successor.deliver_due() == 1
        first, again = rx.received
        assert again.event_id == first.event_id == again.header_id
        assert (again.raw, again.signature) == (first.raw, first.signature) and again.verified
        assert _deliveries(runtime, sim, hook["id"])[0][:2] == ("succeeded", 1)
        assert dead._record(batch, results) == 1  # its late result: logged, state untouched
        assert _deliveries(runtime, sim, hook["id"])[0][:2] == ("succeeded", 1)
        log = attempts(client, sim, hook["id"])
        assert [(a["status"], a["response_code"]) for a in log] == [("succeeded", 200)] * 2
        assert successor.deliver_due() == 0 and len(rx.received) == 2
        dead.stop()
        successor.stop()


def test_two_workers_with_small_batches_over_three_endpoints_send_each_delivery_once(
    client: Any, runtime: Runtime, sim: BookFixture
) -> None:
    """Two workers claiming small batches at once, each with two senders, interleave
    over three endpoints; while leases hold none sends a delivery another claimed."""
    import threading
    from contextlib import ExitStack

    with ExitStack() as stack:
        rxs = [stack.enter_context(receiver()) for _ in range(3)]
        hooks = [endpoint(client, sim, rx) for rx in rxs]
        for n in range(30):
            customer(client, sim, f"Concurrent {n}")
        workers = [
            WebhookWorker(runtime.connection, books=[sim.id], senders=2, batch=3) for _ in range(2)
        ]
        start = threading.Barrier(2)
        sent: list[int] = []

        def run(w: WebhookWorker) -> None:
            start.wait()
            sent.append(w.deliver_due())

        threads = [threading.Thread(target=run, args=(w,)) for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for w in workers:
            w.stop()
        assert sum(sent) == 90
        for rx, hook in zip(rxs, hooks, strict=True):
            assert len(rx.received) == 30 and len(rx.unique()) == 30
            assert [r[:2] for r in _deliveries(runtime, sim, hook["id"])] == [("succeeded", 1)] * 30


def test_a_failure_ends_its_batch_and_the_objects_next_event_waits_for_its_retry(
    client: Any, runtime: Runtime, sim: BookFixture
) -> None:
    """A's creation fails: the rest of the batch goes back unsent; B's event is sent
    at once, A's update waits until A's creation is retried and arrives after it."""
    with receiver() as rx:
        rx.answers = [500]
        hook = endpoint(client, sim, rx)
        customer(client, sim, "Batch A", external_id="batch-a")
        customer(client, sim, "Batch B")
        customer(client, sim, "Batch A2", external_id="batch-a")
        created_a, created_b, updated_a = (e["id"] for e in all_events(client, sim))
        clock = Clock()
        worker = WebhookWorker(runtime.connection, books=[sim.id], clock=clock)
        assert worker.deliver_due() == 2
        assert [r.event_id for r in rx.received] == [created_a, created_b]
        assert [r[:2] for r in _deliveries(runtime, sim, hook["id"])] == [
            ("pending", 1),
            ("succeeded", 1),
            ("pending", 0),  # released unsent, behind A's retry
        ]
        clock.advance(60)
        assert worker.deliver_due() == 2
        worker.stop()
        assert [r.event_id for r in rx.received] == [created_a, created_b, created_a, updated_a]
        log = attempts(client, sim, hook["id"])
        assert [(a["event"], a["response_code"]) for a in log] == [
            (created_a, 500), (created_b, 200), (created_a, 200), (updated_a, 200)
        ]  # fmt: skip
        got = client.get(f"/v1/webhook-endpoints/{hook['id']}", headers=auth(sim.admin_key))
        assert got.json()["consecutive_failures"] == 0
