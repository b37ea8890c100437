"""Ingestion's fast path (billing.postgres.usage._checked and _ingest_checked): a batch
whose events are all good is checked without an object per event and inserted
without ON CONFLICT; it stores and answers exactly what the event-by-event path does.
Any bad event, an id twice in the batch, or an unknown customer or metric sends the
batch down the event-by-event path, which names each refusal and stores the rest;
an id stored before makes the insert go again with ON CONFLICT."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from adapters.runtime import Runtime
from billing.postgres import usage as usage_store
from billing.postgres.usage import IngestResult, create_meter, ingest
from billing.usage import event_moment
from ledger.postgres.unit_of_work import unit_of_work
from tests.billing.test_subscriptions import customer
from tests.conftest import BookFixture, make_book

TODAY = date(2026, 3, 15)
FIRST = date(2026, 1, 1)


def _book(runtime: Runtime) -> tuple[BookFixture, str]:
    """A book with customers crm-1 (named by external id) and one named by its id."""
    book = make_book(runtime, "USD", TODAY)
    with unit_of_work(runtime.connection) as uow:
        customer(uow.conn, book.id, external_id="crm-1")
        by_id = customer(uow.conn, book.id, external_id="crm-2")
        create_meter(uow.conn, book.id, "api_calls", "sum")
        create_meter(uow.conn, book.id, "gb", "max")
        uow.commit()
    return book, by_id


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


def _mixed(by_id: str) -> list[dict[str, Any]]:
    without_quantity = _event(4)
    del without_quantity["quantity"]
    without_properties = _event(5, metric="gb", quantity=" 2.50 ")
    del without_properties["properties"]
    return [
        _event(1),
        _event(2, customer=by_id, quantity=3, properties={}),
        _event(3, quantity="0", timestamp="2026-03-16T23:59:59+05:30"),
        without_quantity,
        without_properties,
        _event(6, properties={"a": {"b": [1, "x", None]}, "ü": "ß"}),
        _event(7, timestamp="2026-01-01T00:00:00+00:00", quantity="0.000000000001"),
        {**_event(8), "id": "ëvent/8 with spaces"},
    ]


def _send(runtime: Runtime, book: BookFixture, batch: list[Any]) -> IngestResult:
    with unit_of_work(runtime.connection) as uow:
        result = ingest(uow.conn, book.id, batch)
        uow.commit()
    return result


def _rows(runtime: Runtime, book: BookFixture) -> list[tuple[Any, ...]]:
    with runtime.connection() as conn:
        return conn.execute(
            "select e.id, c.external_id, e.metric, e.quantity, e.occurred_at, e.properties"
            " from usage_events e join customers c on c.book_id = e.book_id"
            " and c.id = e.customer_id where e.book_id = %s order by e.id",
            (book.id,),
        ).fetchall()


def _answer(result: IngestResult) -> tuple[Any, ...]:
    return (result.accepted, result.duplicates, result.rejected)


def _event_by_event(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(usage_store, "_checked", lambda *_: None)


def test_a_good_batch_is_checked_as_a_whole_and_stored_as_event_by_event(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, fast_by_id = _book(runtime)
    batch = _mixed(fast_by_id)
    assert usage_store._checked(batch, FIRST, TODAY) is not None
    first = _send(runtime, fast, batch)
    assert _answer(first) == (8, [], [])
    # Resent, with one event changed and one new: ON CONFLICT after the plain insert failed.
    again = [*batch[:-1], {**batch[-1], "quantity": "11"}, _event(9)]
    second = _send(runtime, fast, again)

    _event_by_event(monkeypatch)
    slow, slow_by_id = _book(runtime)
    slow_batch = _mixed(slow_by_id)
    assert _answer(_send(runtime, slow, slow_batch)) == _answer(first)
    slow_again = [*slow_batch[:-1], {**slow_batch[-1], "quantity": "11"}, _event(9)]
    assert _answer(_send(runtime, slow, slow_again)) == _answer(second)
    assert _rows(runtime, fast) == _rows(runtime, slow)

    assert (second.accepted, len(second.duplicates)) == (1, 7)
    assert [(r.id, r.reason) for r in second.rejected] == [("ëvent/8 with spaces", "conflict")]
    assert len(_rows(runtime, fast)) == 9


@pytest.mark.parametrize(
    "bad",
    [
        {"quantity": "-1"},
        {"quantity": "ten"},
        {"quantity": "NaN"},
        {"quantity": "1e-13"},
        {"quantity": 1.5},
        {"quantity": True},
        {"quantity": None},
        {"timestamp": "2026-03-10T12:00:00"},  # no offset
        {"timestamp": "2026-03-17T00:00:01Z"},  # past today and the day's tolerance
        {"timestamp": "2025-12-31T23:59:59Z"},  # before the book's first day
        {"timestamp": 5},
        {"timestamp": "yesterday"},
        {"id": ""},
        {"id": " "},
        {"id": "x" * 256},
        {"id": 5},
        {"customer": " "},
        {"metric": "has space"},
        {"properties": [1]},
        {"properties": None},
        {"extra": 1},
        {"id": "ev-1"},  # twice in the batch
    ],
)
def test_any_bad_event_sends_the_batch_event_by_event(bad: dict[str, Any]) -> None:
    assert usage_store._checked([_event(1), _event(2)], FIRST, TODAY) is not None
    assert usage_store._checked([_event(1), _event(2, **bad)], FIRST, TODAY) is None
    assert usage_store._checked([_event(1), "not an event"], FIRST, TODAY) is None


def test_a_batch_whose_every_timestamp_is_naive_goes_event_by_event() -> None:
    # The timestamps are parsed in one pass and compared with the book's window: a
    # batch of naive ones only must fail as a mix of naive and aware ones does.
    naive = {"timestamp": "2026-03-10T12:00:00"}
    assert usage_store._checked([_event(1, **naive), _event(2, **naive)], FIRST, TODAY) is None
    spaced = {"timestamp": "2026-03-10 12:00:00.5+01:00"}  # what fromisoformat reads
    checked = usage_store._checked([_event(1, **spaced)], FIRST, TODAY)
    assert checked is not None
    assert checked.times == [event_moment(spaced["timestamp"])]


@pytest.mark.parametrize("unknown", [{"customer": "nobody"}, {"metric": "unmetered"}])
def test_an_unknown_customer_or_metric_is_refused_alone_and_the_rest_stored(
    runtime: Runtime, unknown: dict[str, str]
) -> None:
    book, _ = _book(runtime)
    batch = [_event(1), _event(2, **unknown), _event(3)]
    assert usage_store._checked(batch, FIRST, TODAY) is not None
    with unit_of_work(runtime.connection) as uow:
        checked = usage_store._checked(batch, FIRST, TODAY)
        assert checked is not None
        assert usage_store._ingest_checked(uow.conn, book.id, checked) is None
        uow.commit()
    assert _rows(runtime, book) == []  # the fast path wrote nothing
    result = _send(runtime, book, batch)
    reason = "unknown_customer" if "customer" in unknown else "unknown_metric"
    assert (result.accepted, [(r.id, r.reason) for r in result.rejected]) == (
        2,
        [("ev-2", reason)],
    )
    assert [r[0] for r in _rows(runtime, book)] == ["ev-1", "ev-3"]


def test_an_empty_batch_stores_nothing(runtime: Runtime) -> None:
    book, _ = _book(runtime)
    assert _answer(_send(runtime, book, [])) == (0, [], [])
    assert _rows(runtime, book) == []
