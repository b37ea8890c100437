"""Fixtures of the healthcare tests: an HTTP client and a book on a simulated clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from adapters.runtime import Runtime
from tests.conftest import BookFixture, make_book
from tests.integration.http_fixtures import open_client

TODAY = date(2026, 3, 1)


@pytest.fixture
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


@pytest.fixture
def sim_book(runtime: Runtime) -> BookFixture:
    return make_book(runtime, "USD", TODAY)
