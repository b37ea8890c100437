"""Usage events and meters over HTTP: idempotent ingestion (also under concurrent
resends), refusals per event, a batch too large, meters and a customer's usage."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import date
from typing import Any

import psycopg
import pytest

from adapters.runtime import Runtime
from tests.conftest import BookFixture, make_book
from tests.integration.http_fixtures import PROBLEM, auth, open_client


@pytest.fixture
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


@pytest.fixture
def sim_book(runtime: Runtime) -> BookFixture:
    return make_book(runtime, "USD", date(2026, 3, 15))


def _post(client: Any, key: str, path: str, body: Any, status: int = 201) -> Any:
    response = client.post(path, json=body, headers=auth(key))
    assert response.status_code == status, response.text
    return response.json()


def _setup(client: Any, book: BookFixture) -> str:
    """A customer with external id crm-1, and a meter for api_calls (sum)."""
    _post(
        client,
        book.admin_key,
        "/v1/customers",
        {"name": "Acme", "currency": "USD", "external_id": "crm-1"},
    )
    _post(client, book.admin_key, "/v1/meters", {"metric": "api_calls", "aggregation": "sum"})
    return "crm-1"


def _event(n: int, **kw: Any) -> dict[str, Any]:
    return {
        "id": f"ev-{n}",
        "customer": "crm-1",
        "metric": "api_calls",
        "quantity": "10",
        "timestamp": "2026-03-10T12:00:00Z",
        "properties": {"region": "eu"},
        **kw,
    }


def _stored(conn: psycopg.Connection, book_id: uuid.UUID) -> int:
    row = conn.execute(
        "select count(*) from usage_events where book_id = %s", (book_id,)
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_resent_batch_stores_nothing_and_names_its_duplicates(
    client: Any, sim_book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    _setup(client, sim_book)
    batch = [_event(1), _event(2), _event(3)]
    first = _post(client, sim_book.admin_key, "/v1/usage-events", batch, 200)
    assert (first["accepted"], first["duplicates"], first["rejected"]) == (3, [], [])
    again = _post(client, sim_book.admin_key, "/v1/usage-events", {"events": batch}, 200)
    assert (again["accepted"], sorted(again["duplicates"]), again["rejected"]) == (
        0,
        ["ev-1", "ev-2", "ev-3"],
        [],
    )
    assert _stored(owner_conn, sim_book.id) == 3


def test_the_same_id_with_other_content_is_a_conflict_and_not_stored(
    client: Any, sim_book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    _setup(client, sim_book)
    _post(client, sim_book.admin_key, "/v1/usage-events", [_event(1)], 200)
    answer = _post(
        client, sim_book.admin_key, "/v1/usage-events", [_event(1, quantity="11"), _event(2)], 200
    )
    assert answer["accepted"] == 1
    assert [(r["id"], r["reason"]) for r in answer["rejected"]] == [("ev-1", "conflict")]
    row = owner_conn.execute(
        "select quantity from usage_events where book_id = %s and id = 'ev-1'", (sim_book.id,)
    ).fetchone()
    assert row is not None and str(row[0]) == "10"


def test_bad_events_are_refused_one_by_one_while_the_rest_is_stored(
    client: Any, sim_book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    _setup(client, sim_book)
    batch = [
        _event(1, quantity="-1"),
        _event(2, quantity="ten"),
        _event(3, quantity=1.5),
        _event(4, metric="unknown_metric"),
        _event(5, customer="nobody"),
        _event(6, timestamp="2026-03-18T00:00:00Z"),  # beyond today + 1 day tolerance
        _event(7, timestamp="2026-03-10T12:00:00"),  # no offset
        {"customer": "crm-1", "metric": "api_calls", "quantity": "1"},  # no id
        _event(9),
        _event(10, timestamp="2026-03-16T23:00:00+00:00"),  # within the tolerance
    ]
    answer = _post(client, sim_book.admin_key, "/v1/usage-events", batch, 200)
    assert answer["accepted"] == 2
    assert [(r["id"], r["reason"]) for r in answer["rejected"]] == [
        ("ev-1", "invalid_quantity"),
        ("ev-2", "invalid_quantity"),
        ("ev-3", "invalid_quantity"),
        ("ev-6", "timestamp_in_future"),
        ("ev-7", "invalid_timestamp"),
        (None, "invalid_event"),
        ("ev-4", "unknown_metric"),
        ("ev-5", "unknown_customer"),
    ]
    assert _stored(owner_conn, sim_book.id) == 2


def test_a_customer_is_named_by_id_or_external_id(
    client: Any, sim_book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    _setup(client, sim_book)
    customer_id = client.get("/v1/customers", headers=auth(sim_book.admin_key)).json()["data"][0][
        "id"
    ]
    answer = _post(
        client, sim_book.admin_key, "/v1/usage-events", [_event(1, customer=customer_id)], 200
    )
    assert answer["accepted"] == 1
    # The same event sent with the external id is the same event.
    again = _post(client, sim_book.admin_key, "/v1/usage-events", [_event(1)], 200)
    assert again["duplicates"] == ["ev-1"]


def test_10001_events_are_refused_whole_with_413(
    client: Any, sim_book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    _setup(client, sim_book)
    response = client.post(
        "/v1/usage-events",
        json=[_event(n) for n in range(10_001)],
        headers=auth(sim_book.admin_key),
    )
    assert response.status_code == 413, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.json()["code"] == "batch_too_large"
    assert _stored(owner_conn, sim_book.id) == 0


def test_a_body_that_is_no_batch_is_refused(
    client: Any, sim_book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    _setup(client, sim_book)
    for body in ({"events": "x"}, {"event": []}, "x", 3):
        response = client.post("/v1/usage-events", json=body, headers=auth(sim_book.admin_key))
        assert response.status_code in (400, 422), (body, response.text)
    assert _stored(owner_conn, sim_book.id) == 0


def test_the_same_batch_sent_twice_at_once_stores_each_event_once(
    runtime: Runtime, sim_book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    with open_client(runtime) as c:
        _setup(c, sim_book)
    batch = [_event(n) for n in range(2000)]
    answers: list[dict[str, Any]] = []
    failures: list[str] = []
    barrier = threading.Barrier(4)

    def send(n: int) -> None:
        mine = batch if n % 2 else batch[::-1]  # also in the other order
        try:
            with open_client(runtime) as c:
                barrier.wait(timeout=120)
                response = c.post("/v1/usage-events", json=mine, headers=auth(sim_book.admin_key))
        except Exception as exc:  # reported below; a lost thread must not hang the run
            barrier.abort()
            failures.append(repr(exc))
            return
        if response.status_code != 200:
            failures.append(response.text)
        else:
            answers.append(response.json())

    threads = [threading.Thread(target=send, args=(n,), daemon=True) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert len(answers) == 4
    assert sum(a["accepted"] for a in answers) == 2000
    assert sum(len(a["duplicates"]) for a in answers) == 3 * 2000
    assert all(a["rejected"] == [] for a in answers)
    assert _stored(owner_conn, sim_book.id) == 2000


# --- meters ---------------------------------------------------------------------------


def test_meters_are_created_listed_and_checked(
    client: Any, sim_book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    key = sim_book.admin_key
    meter = _post(
        client,
        key,
        "/v1/meters",
        {
            "metric": "seats_seen",
            "aggregation": "unique_count",
            "property": "user",
            "filters": {"region": ["eu", "us"]},
            "group_by": ["plan"],
        },
    )
    assert (meter["metric"], meter["filters"], meter["group_by"]) == (
        "seats_seen",
        {"region": ["eu", "us"]},
        ["plan"],
    )
    listed = client.get("/v1/meters", headers=auth(key)).json()["data"]
    assert [m["metric"] for m in listed] == ["seats_seen"]
    for bad in (
        {"metric": "x", "aggregation": "avg"},
        {"metric": "x", "aggregation": "unique_count"},
        {"metric": "bad name", "aggregation": "sum"},
        {"metric": "x", "aggregation": "sum", "filters": {"a": []}},
        {"metric": "x", "aggregation": "sum", "group_by": "region"},
    ):
        response = client.post("/v1/meters", json=bad, headers=auth(key))
        assert response.status_code in (400, 422), (bad, response.text)  # 400: not the shape
    duplicate = client.post(
        "/v1/meters", json={"metric": "seats_seen", "aggregation": "sum"}, headers=auth(key)
    )
    assert duplicate.status_code == 409
    row = owner_conn.execute("select count(*) from meters where book_id = %s", (sim_book.id,))
    assert row.fetchone() == (1,)


def test_unique_count_of_a_property_over_a_month_with_filters_and_groups(
    client: Any, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    _post(client, key, "/v1/customers", {"name": "A", "currency": "USD", "external_id": "crm-1"})
    _post(
        client,
        key,
        "/v1/meters",
        {
            "metric": "active_users",
            "aggregation": "unique_count",
            "property": "user",
            "filters": {"env": "prod"},
            "group_by": ["region"],
        },
    )
    events = []
    for n, (user, region, env, day) in enumerate(
        [
            ("u1", "eu", "prod", "2026-02-01"),
            ("u1", "eu", "prod", "2026-02-20"),  # the same user again: counted once
            ("u2", "eu", "prod", "2026-02-28"),
            ("u3", "us", "prod", "2026-02-10"),
            ("u4", "us", "test", "2026-02-10"),  # filtered out
            ("u5", "us", "prod", "2026-03-01"),  # next month
            ("u6", "eu", "prod", "2026-01-31"),  # previous month
        ]
    ):
        events.append(
            {
                "id": f"e{n}",
                "customer": "crm-1",
                "metric": "active_users",
                "quantity": "1",
                "timestamp": f"{day}T10:00:00Z",
                "properties": {"user": user, "region": region, "env": env},
            }
        )
    assert _post(client, key, "/v1/usage-events", events, 200)["accepted"] == 7
    usage = client.get(
        "/v1/customers/crm-1/usage",
        params={"metric": "active_users", "from": "2026-02-01", "to": "2026-03-01"},
        headers=auth(key),
    )
    assert usage.status_code == 200, usage.text
    body = usage.json()
    assert body["quantity"] == "3"
    assert [(g["group"], g["quantity"]) for g in body["groups"]] == [
        ({"region": "eu"}, "2"),
        ({"region": "us"}, "1"),
    ]
    bad = client.get(
        "/v1/customers/crm-1/usage",
        params={"metric": "nothing", "from": "2026-02-01", "to": "2026-03-01"},
        headers=auth(key),
    )
    assert bad.status_code == 404
    backwards = client.get(
        "/v1/customers/crm-1/usage",
        params={"metric": "active_users", "from": "2026-03-01", "to": "2026-02-01"},
        headers=auth(key),
    )
    assert backwards.status_code == 422


def test_sum_max_count_and_last(client: Any, sim_book: BookFixture) -> None:
    key = sim_book.admin_key
    _post(client, key, "/v1/customers", {"name": "A", "currency": "USD", "external_id": "crm-1"})
    for metric, aggregation in (("s", "sum"), ("m", "max"), ("c", "count"), ("l", "last")):
        _post(client, key, "/v1/meters", {"metric": metric, "aggregation": aggregation})
    events = [
        {
            "id": f"{metric}{n}",
            "customer": "crm-1",
            "metric": metric,
            "quantity": q,
            "timestamp": f"2026-03-0{day}T00:00:00Z",
        }
        for metric in ("s", "m", "c", "l")
        for n, (q, day) in enumerate([("5", 3), ("7.5", 1), ("2", 2)])
    ]
    assert _post(client, key, "/v1/usage-events", events, 200)["accepted"] == 12
    got = {
        metric: client.get(
            "/v1/customers/crm-1/usage",
            params={"metric": metric, "from": "2026-03-01", "to": "2026-04-01"},
            headers=auth(key),
        ).json()["quantity"]
        for metric in ("s", "m", "c", "l")
    }
    assert got == {"s": "14.5", "m": "7.5", "c": "3", "l": "5"}
