"""POST /v1/webhooks/stripe/{book_id}: Stripe's signature is the authentication;
a tampered, stale or unsigned event is 400 and stores nothing; a replayed event
id changes nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from adapters.gateways.stripe_signature import sign
from adapters.runtime import Runtime
from tests.conftest import BookFixture, make_book
from tests.integration.http_fixtures import assert_problem, auth, open_client

SECRET = "whsec_test_secret"


@pytest.fixture
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


@pytest.fixture
def stripe_book(runtime: Runtime, client: Any) -> BookFixture:
    book = make_book(runtime)
    changed = client.patch(
        "/v1/book/settings",
        json={"stripe": {"webhook_secret": SECRET}},
        headers=auth(book.admin_key),
    )
    assert changed.status_code == 200, changed.text
    return book


def _events(runtime: Runtime, book: BookFixture) -> list[tuple[str, str]]:
    with runtime.connection() as conn:
        rows = conn.execute(
            "select event_id, type from webhook_events where book_id = %s order by event_id",
            (book.id,),
        ).fetchall()
    return [(r[0], r[1]) for r in rows]


def _post(client: Any, book: BookFixture, body: bytes, header: str | None) -> Any:
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers["Stripe-Signature"] = header
    return client.post(f"/v1/webhooks/stripe/{book.id}", content=body, headers=headers)


def test_a_signed_event_is_stored_once_and_its_replay_changes_nothing(
    client: Any, runtime: Runtime, stripe_book: BookFixture
) -> None:
    body = json.dumps({"id": "evt_1", "type": "charge.dispute.created"}).encode()
    first = _post(client, stripe_book, body, sign(body, SECRET, int(time.time())))
    assert first.status_code == 200, first.text
    assert first.json() == {"received": True, "event": "evt_1", "duplicate": False}
    again = _post(client, stripe_book, body, sign(body, SECRET, int(time.time())))
    assert again.json() == {"received": True, "event": "evt_1", "duplicate": True}
    assert _events(runtime, stripe_book) == [("evt_1", "charge.dispute.created")]


@pytest.mark.parametrize("case", ["tampered", "stale", "unsigned", "other_secret"])
def test_bad_signatures_are_400_and_store_nothing(
    client: Any, runtime: Runtime, stripe_book: BookFixture, case: str
) -> None:
    body = json.dumps({"id": "evt_2", "type": "payment_intent.succeeded"}).encode()
    now = int(time.time())
    header = {
        "tampered": sign(body.replace(b"evt_2", b"evt_3"), SECRET, now),
        "stale": sign(body, SECRET, now - 600),
        "unsigned": None,
        "other_secret": sign(body, "whsec_other", now),
    }[case]
    refused = _post(client, stripe_book, body, header)
    assert_problem(refused, 400, "invalid_webhook")
    assert _events(runtime, stripe_book) == []


def test_a_book_without_a_webhook_secret_takes_no_events(client: Any, runtime: Runtime) -> None:
    book = make_book(runtime)
    body = b'{"id": "evt_9", "type": "x"}'
    refused = _post(client, book, body, sign(body, SECRET, int(time.time())))
    assert_problem(refused, 400, "invalid_webhook")
    assert _events(runtime, book) == []
