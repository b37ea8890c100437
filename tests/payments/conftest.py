"""Fixtures of the payment tests: a local Stripe stub server and a book whose
`stripe` settings point at it (tests/payments/stripe_fixtures.py has the steps)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from adapters.runtime import Runtime
from tests.conftest import BookFixture, make_book
from tests.integration.http_fixtures import auth
from tests.payments.stripe_fixtures import TODAY
from tests.payments.stripe_stub import StripeStub


@pytest.fixture
def stub() -> Iterator[StripeStub]:
    with StripeStub() as s:
        yield s


@pytest.fixture
def stripe_book(runtime: Runtime, client: Any, stub: StripeStub) -> BookFixture:
    book = make_book(runtime, "USD", TODAY)
    settings = {
        "stripe": {
            "api_key": stub.api_key,
            "webhook_secret": stub.webhook_secret,
            "base_url": stub.url,
        }
    }
    changed = client.patch("/v1/book/settings", json=settings, headers=auth(book.admin_key))
    assert changed.status_code == 200, changed.text
    return book
