"""GET /v1/book, PATCH /v1/book/settings and `books settings`: settings set without SQL,
checked whole (422 naming the key, nothing written), secrets never shown."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from adapters.cli import main
from adapters.keys import Role
from adapters.runtime import Runtime
from tests.conftest import BookFixture, make_book
from tests.integration.http_fixtures import assert_problem, auth, new_key, open_client


@pytest.fixture(scope="module")
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


@pytest.fixture
def sim(runtime: Runtime) -> BookFixture:
    return make_book(runtime, "CHF", date(2026, 3, 15))


def stored(runtime: Runtime, book: BookFixture) -> Any:
    with runtime.connection() as conn:
        row = conn.execute("select settings from books where id = %s", (book.id,)).fetchone()
    assert row is not None
    return row[0]


def test_get_book_shows_name_currency_clock_and_masked_secrets(
    client: Any, runtime: Runtime, sim: BookFixture
) -> None:
    response = client.patch(
        "/v1/book/settings",
        json={
            "legal_name": "Acme AG",
            "stripe": {"api_key": "sk_test_abcdefgh1234", "base_url": "https://api.stripe.com"},
        },
        headers=auth(sim.admin_key),
    )
    assert response.status_code == 200, response.text
    assert response.json()["settings"]["stripe"]["api_key"] == "****1234"
    book = client.get("/v1/book", headers=auth(new_key(runtime, sim.id, Role.AUDITOR))).json()
    assert book == {
        "id": str(sim.id),
        "name": sim.book.name,
        "currency": "CHF",
        "clock": {"mode": "simulated", "date": "2026-03-15"},
        "today": "2026-03-15",
        "created_at": book["created_at"],
        "settings": {
            "legal_name": "Acme AG",
            "stripe": {"api_key": "****1234", "base_url": "https://api.stripe.com"},
        },
    }
    assert "sk_test_abcdefgh1234" not in json.dumps(book)
    assert stored(runtime, sim)["stripe"]["api_key"] == "sk_test_abcdefgh1234"


def test_patch_merges_and_null_removes(client: Any, runtime: Runtime, sim: BookFixture) -> None:
    headers = auth(sim.admin_key)
    client.patch(
        "/v1/book/settings",
        json={"address": {"line1": "Bahnhofstrasse 1", "city": "Bern"}, "tax_id": "CHE-1"},
        headers=headers,
    )
    response = client.patch(
        "/v1/book/settings",
        json={"address": {"city": "Zürich", "country": "CH"}, "tax_id": None},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    assert stored(runtime, sim) == {
        "address": {"line1": "Bahnhofstrasse 1", "city": "Zürich", "country": "CH"}
    }


def test_a_bad_key_refuses_the_whole_change_with_422_naming_it(
    client: Any, runtime: Runtime, sim: BookFixture
) -> None:
    problem = assert_problem(
        client.patch(
            "/v1/book/settings",
            json={"legal_name": "Acme AG", "auto_apply_credit": "no", "colour": "red"},
            headers=auth(sim.admin_key),
        ),
        422,
        "invalid_settings",
    )
    assert sorted(e["key"] for e in problem["errors"]) == ["auto_apply_credit", "colour"]
    assert "auto_apply_credit" in problem["detail"] and "colour" in problem["detail"]
    nul = client.patch(
        "/v1/book/settings", json={"legal_name": "Acme\u0000"}, headers=auth(sim.admin_key)
    )
    # the HTTP edge refuses NUL in any body before the settings check sees it
    assert assert_problem(nul, 422, "nul_character")["field"] == "body.legal_name"
    assert stored(runtime, sim) == {}


def test_only_admins_change_settings(client: Any, runtime: Runtime, sim: BookFixture) -> None:
    for role in (Role.OPERATOR, Role.ACCOUNTANT):
        key = new_key(runtime, sim.id, role)
        response = client.patch(
            "/v1/book/settings", json={"legal_name": "Mallory"}, headers=auth(key)
        )
        assert_problem(response, 403, "forbidden")
    assert stored(runtime, sim) == {}


def test_cli_sets_and_prints_settings(
    runtime: Runtime,
    sim: BookFixture,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    book = ["--book", str(sim.id)]
    code = main(
        [
            "books", "settings", *book,
            "--set", "legal_name=Acme AG",
            "--set", "auto_apply_credit=false",
            "--set", "address.city=Bern",
            "--set", "address.country=CH",
            "--set", "fake_gateway_fee.fixed=0.30",
            "--set", "dunning.retry_days=[3, 5, 7]",
        ]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert stored(runtime, sim) == {
        "legal_name": "Acme AG",
        "auto_apply_credit": False,
        "address": {"city": "Bern", "country": "CH"},
        "fake_gateway_fee": {"fixed": "0.30"},
        "dunning": {"retry_days": [3, 5, 7]},
    }
    capsys.readouterr()
    code = main(["books", "settings", *book, "--format", "json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["settings"]["legal_name"] == "Acme AG"
    code = main(["books", "settings", *book, "--set", "tax_level=per_order"])
    assert code == 2 and "tax_level must be one of" in capsys.readouterr().err
    assert stored(runtime, sim)["legal_name"] == "Acme AG"
    assert "tax_level" not in stored(runtime, sim)
