"""Telecom over HTTP: rate plans and versions, subscribers, a CDR batch with
a broken record, a rating run, the usage detail CSV; bad input writes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from adapters.runtime import Runtime
from tests.conftest import BookFixture
from tests.integration.http_fixtures import PROBLEM, auth, open_client
from tests.unit.test_telecom_rating import plan_body


@pytest.fixture(scope="module")
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


def cdr(cid: str, start: str, seconds: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": cid,
        "subscriber": "+447700900001",
        "event_type": "voice",
        "start": start,
        "duration_seconds": seconds,
        "destination": "+447700900123",
        "roaming": False,
        **extra,
    }


def _subscriber(client: Any, book: BookFixture) -> None:
    h = auth(book.admin_key)
    plan = client.post("/v1/rate-plans", json=plan_body(), headers=h)
    assert plan.status_code == 201, plan.text
    assert plan.json()["rates"][0]["increment"] == "60/60"
    customer = client.post("/v1/customers", json={"name": "Caller", "currency": "GBP"}, headers=h)
    body = {
        "subscriber": "+447700900001",
        "customer": customer.json()["id"],
        "rate_plan": "Mobile S",
    }
    sub = client.post("/v1/subscribers", json=body, headers=h)
    assert sub.status_code == 201, sub.text


def test_cdrs_rated_and_itemized(client: Any, book: BookFixture) -> None:
    h = auth(book.admin_key)
    _subscriber(client, book)
    newer = client.post(
        "/v1/rate-plans",
        json=plan_body(
            effective_from="2026-03-15",
            rates=[{"event_type": "voice", "unit_amount": "0.90", "increment": "60/1"}],
        ),
        headers=h,
    )
    assert newer.status_code == 201
    batch = [
        cdr("a", "2026-03-02T10:00:00+00:00", "61"),  # v1, peak, 60/60: 120 s → 1.20
        cdr("b", "2026-03-16T10:00:00+00:00", "61"),  # v2, 60/1: 61 s at 0.90 → 0.92
        cdr("c", "2026-03-16T10:00:00", "61"),  # no offset
    ]
    sent = client.post("/v1/cdrs", json={"cdrs": batch}, headers=h)
    assert sent.status_code == 200
    assert sent.json()["accepted"] == 2
    assert [(r["index"], r["id"]) for r in sent.json()["rejected"]] == [(2, "c")]
    resent = client.post("/v1/cdrs", json={"cdrs": batch[:2]}, headers=h)
    assert (resent.json()["accepted"], resent.json()["duplicates"]) == (0, ["a", "b"])
    run = client.post("/v1/cdr-ratings", json={"through": "2026-04-01"}, headers=h)
    assert run.status_code == 201
    assert (run.json()["rated"], run.json()["amounts"]) == (2, {"GBP": "2.12"})
    detail = client.get("/v1/subscribers/+447700900001/usage-detail", headers=h)
    assert detail.status_code == 200 and detail.headers["content-type"].startswith("text/csv")
    assert detail.text.splitlines() == [
        "id,start,event_type,destination,zone,band,quantity,billed_quantity,amount",
        "a,2026-03-02T10:00:00+00:00,voice,+447700900123,uk,peak,61,120,1.20",
        "b,2026-03-16T10:00:00+00:00,voice,+447700900123,uk,peak,61,61,0.92",
    ]


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/v1/rate-plans", plan_body(time_zone="Nowhere/Land"), 422),
        ("/v1/rate-plans", plan_body(), 409),  # the same version again
        ("/v1/rate-plans", {**plan_body(), "surprise": 1}, 400),
        ("/v1/subscribers", {"subscriber": "+1", "customer": "x", "rate_plan": "Mobile S"}, 404),
        (
            "/v1/cdrs",
            {"cdrs": [cdr(str(i), "2026-03-02T10:00:00+00:00", "1") for i in range(10_001)]},
            413,
        ),
        ("/v1/cdr-ratings", {"through": "soon"}, 400),
    ],
)
def test_bad_input_writes_nothing(
    client: Any, book: BookFixture, database_url: str, path: str, body: Any, status: int
) -> None:
    _subscriber(client, book)

    def count(conn: psycopg.Connection) -> Any:
        return conn.execute(
            "select (select count(*) from rate_plans where book_id = %(b)s),"
            " (select count(*) from telecom_subscribers where book_id = %(b)s),"
            " (select count(*) from cdrs where book_id = %(b)s),"
            " (select count(*) from cdr_rating_runs where book_id = %(b)s)",
            {"b": book.id},
        ).fetchone()

    with psycopg.connect(database_url) as conn:
        before = count(conn)
        answer = client.post(path, json=body, headers=auth(book.admin_key))
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"].startswith(PROBLEM)
        assert count(conn) == before
