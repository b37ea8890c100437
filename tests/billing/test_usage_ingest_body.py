"""A request body decoded straight into typed events (billing.postgres.usage.decode_batch
and ingest_decoded): it stores, to the digit and the byte of the properties' JSON,
what the plain-JSON path stores for the same batch; anything that is no batch of
well-formed events is left to that path, and the route answers it as it always did."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from datetime import date
from typing import Any

import msgspec
import pytest

from adapters.http import usage_api
from adapters.input_limits import MAX_DEPTH, needs_decoding
from adapters.runtime import Runtime
from billing.postgres import usage as usage_store
from billing.postgres.usage import BatchTooLarge, IngestResult, decode_batch, ingest_decoded
from ledger.postgres.unit_of_work import unit_of_work
from tests.billing.test_usage_ingest_checked import _book, _event, _mixed, _send
from tests.conftest import BookFixture
from tests.integration.http_fixtures import PROBLEM, auth, open_client

FIRST = date(2026, 1, 1)
TODAY = date(2026, 3, 15)

# Properties whose JSON text is not what encoding their decoded value writes:
# numbers with a fraction or an exponent, escapes, spacing, a key given twice.
ODD_PROPERTIES = (
    b'{ "a" : 1.10, "b": 1e2, "c": "\\u00e9\\n\\/", "d": -0, "e": 12345678901234567890123,'
    b' "f": 1E-5, "g": true, "h": null, "b": 2, "i": [1, 2.50, {"j": "\\ud83d\\ude00"}]}'
)


def _body(batch: list[dict[str, Any]], odd: str | None = None) -> bytes:
    """The batch as JSON; the event with id `odd` gets ODD_PROPERTIES as sent text."""
    sent = [{k: v for k, v in e.items() if k != "properties" or e["id"] != odd} for e in batch]
    text = json.dumps(sent).encode()
    if odd is not None:
        marker = json.dumps({"id": odd}).encode()[1:-1]  # "id": "…"
        text = text.replace(marker, marker + b', "properties": ' + ODD_PROPERTIES, 1)
    return text


def _stored(runtime: Runtime, book: BookFixture) -> list[tuple[Any, ...]]:
    with runtime.connection() as conn:
        return conn.execute(
            "select id, customer_id, metric, quantity::text, occurred_at, properties::text"
            " from usage_events where book_id = %s order by id",
            (book.id,),
        ).fetchall()


def _send_body(runtime: Runtime, book: BookFixture, body: bytes) -> IngestResult | None:
    events = decode_batch(body)
    assert events is not None
    with unit_of_work(runtime.connection) as uow:
        result = ingest_decoded(uow.conn, book.id, events)
        uow.commit()
    return result


def _same_customers(rows: list[tuple[Any, ...]], other: list[tuple[Any, ...]]) -> bool:
    return [r[2:] for r in rows] == [r[2:] for r in other]


def test_a_decoded_body_stores_what_the_plain_json_path_stores(runtime: Runtime) -> None:
    typed, typed_by_id = _book(runtime)
    plain, plain_by_id = _book(runtime)
    batch = _mixed(typed_by_id)
    body = _body(batch, odd="ev-1")
    answer = _send_body(runtime, typed, body)
    assert answer is not None and (answer.accepted, answer.duplicates) == (len(batch), [])
    plain_body = _body(_mixed(plain_by_id), odd="ev-1")
    _send(runtime, plain, msgspec.json.decode(plain_body))  # the route's decode before
    stored, expected = _stored(runtime, typed), _stored(runtime, plain)
    assert _same_customers(stored, expected)
    odd = next(r for r in stored if r[0] == "ev-1")
    assert odd[5] == (
        '{"a": 1.1, "b": 2, "c": "é\\n/", "d": 0, "e": 12345678901234567890123,'
        ' "f": 0.00001, "g": true, "h": null, "i": [1, 2.5, {"j": "😀"}]}'
    )
    assert {r[3] for r in stored} == {"10", "3", "0", "1", "2.50", "0.000000000001"}


def test_a_resent_body_is_duplicates_and_other_content_a_conflict(runtime: Runtime) -> None:
    book, _ = _book(runtime)
    batch = [_event(n) for n in range(1, 4)]
    _send_body(runtime, book, _body(batch, odd="ev-2"))
    again = _send_body(runtime, book, _body([*batch[:2], _event(3, quantity="11")], odd="ev-2"))
    assert again is not None
    assert (again.accepted, again.duplicates) == (0, ["ev-1", "ev-2"])
    assert [(r.id, r.reason) for r in again.rejected] == [("ev-3", "conflict")]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"null",
        b"3",
        b'{"events": "x"}',
        b'{"event": []}',
        b'{"events": [], "x": 1}',
        b"[1]",
        b'[{"id": "z"}]',
        json.dumps([_event(1, quantity=1.5)]).encode(),
        json.dumps([_event(1, quantity=None)]).encode(),
        json.dumps([_event(1, timestamp=5)]).encode(),
        json.dumps([_event(1, extra=1)]).encode(),
        json.dumps([_event(1, id=5)]).encode(),
    ],
)
def test_a_body_that_is_no_batch_of_well_formed_events_is_left_to_the_plain_path(
    body: bytes,
) -> None:
    assert decode_batch(body) is None


@pytest.mark.parametrize(
    "properties",
    [b"[1]", b"null", b'"x"', b'{"a": "\\ud800"}', b'{"a": "\xff"}'],
)
def test_properties_that_are_no_json_object_fail_the_typed_check(properties: bytes) -> None:
    text = _body([_event(1)]).replace(b'{"region": "eu"}', properties)
    events = decode_batch(text)
    if events is not None:  # well-formed JSON: the columns refuse it
        assert usage_store.checked_json(events, FIRST, TODAY) is None


def test_a_good_batch_in_either_form_is_decoded_into_untracked_events() -> None:
    batch = [_event(1), _event(2, quantity=7)]
    for body in (json.dumps(batch).encode(), json.dumps({"events": batch}).encode()):
        events = decode_batch(body)
        assert events is not None and [e.id for e in events] == ["ev-1", "ev-2"]
        # 10,000 tracked objects per batch set off full collections of the server heap.
        assert not gc.is_tracked(events[0])
        assert usage_store.checked_json(events, FIRST, TODAY) is not None


def test_10001_typed_events_are_too_many() -> None:
    with pytest.raises(BatchTooLarge):
        decode_batch(json.dumps([_event(n) for n in range(10_001)]).encode())


def test_only_a_body_that_may_break_an_input_limit_is_decoded_by_the_input_check() -> None:
    big = _body([_event(n) for n in range(2000)])
    assert not needs_decoding(big)
    assert needs_decoding(big.replace(b'"eu"', b'"e\\u0000u"', 1))
    deep = b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1)
    assert needs_decoding(deep)
    assert needs_decoding(big.replace(b'"region"', b'"metadata"', 1))


# --- over HTTP -------------------------------------------------------------------------


@pytest.fixture
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


def test_a_good_batch_over_http_is_never_decoded_as_plain_json(
    client: Any, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    book, _ = _book(runtime)

    def refuse(*_: Any) -> list[Any]:
        raise AssertionError("decoded as plain JSON")

    monkeypatch.setattr(usage_api, "batch_of", refuse)
    body = _body([_event(n) for n in range(50)], odd="ev-3")
    answer = client.post("/v1/usage-events", content=body, headers=auth(book.admin_key))
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == 50


def test_bodies_that_are_no_batch_get_the_problems_they_always_got(
    client: Any, runtime: Runtime
) -> None:
    book, _ = _book(runtime)
    headers = {**auth(book.admin_key), "Content-Type": "application/json"}

    def problem(body: bytes) -> tuple[int, str, Any, str]:
        r = client.post("/v1/usage-events", content=body, headers=headers)
        assert r.headers["content-type"].startswith(PROBLEM)
        found = r.json()
        return r.status_code, found["code"], found.get("errors"), found["detail"]

    failed = "Validation failed for POST /v1/usage-events"
    assert problem(b"") == (
        400,
        "validation_error",
        [{"message": "'data'", "key": "data", "source": "body"}],
        f"{failed}: 'data'",
    )
    assert problem(b"[") == (400, "http_error", None, "Input data was truncated")
    assert problem(b'{"events": "x"}') == (
        400,
        "validation_error",
        [{"message": "Expected `array`, got `str`", "key": "events", "source": "body"}],
        f"{failed}: Expected `array`, got `str`",
    )
    assert problem(b"null")[2] == [
        {"message": "Expected `object | array`, got `null`", "key": "data", "source": "body"}
    ]
    plain = client.post(
        "/v1/usage-events",
        content=json.dumps([_event(1)]),
        headers={**auth(book.admin_key), "Content-Type": "text/plain"},
    )
    assert (plain.status_code, plain.json()["code"]) == (415, "unsupported_media_type")


def test_an_idempotency_key_replays_the_same_events_sent_with_other_spacing(
    client: Any, runtime: Runtime
) -> None:
    book, _ = _book(runtime)
    headers = {**auth(book.admin_key), "Idempotency-Key": "usage-1"}
    first = client.post("/v1/usage-events", content=json.dumps([_event(1)]), headers=headers)
    again = client.post(
        "/v1/usage-events", content=json.dumps([_event(1)], indent=2), headers=headers
    )
    other = client.post("/v1/usage-events", content=json.dumps([_event(2)]), headers=headers)
    assert (first.status_code, first.json()["accepted"]) == (200, 1)
    assert (again.status_code, again.headers.get("idempotent-replayed")) == (200, "true")
    assert again.json() == first.json()
    assert other.status_code == 409
