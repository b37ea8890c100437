"""Hostile text and shapes (issue 7, items 8 and 9): a NUL character anywhere,
or JSON nested without bound, is refused at the HTTP edge with a 422 that
names the field, and nothing is written."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest

from adapters.cli import main
from adapters.input_limits import MAX_DEPTH, InputRejected, check_json, decode_json
from adapters.runtime import Runtime
from tests.billing.test_http_invoices import billing_counts
from tests.conftest import BookFixture
from tests.integration.http_fixtures import assert_problem, auth, entry_body, open_client

NUL = "\x00"


@pytest.fixture(scope="module")
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": "x"}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def _with_metadata(metadata: bytes) -> bytes:
    """An entry body around raw metadata JSON (too deep for a recursive encoder)."""
    body = msgspec.json.encode(entry_body(metadata={"m": "@"}))
    return body.replace(b'{"m":"@"}', metadata)


def _customer(**extra: Any) -> dict[str, Any]:
    return {"name": "Acme", "currency": "USD", **extra}


# (method, path, request keyword arguments, the field the problem must name)
NUL_CASES: list[tuple[str, str, dict[str, Any], str]] = [
    ("POST", "/v1/customers", {"json": _customer(name="Ac\x00me")}, "body.name"),
    ("POST", "/v1/customers", {"json": _customer(email="a\x00@b.c")}, "body.email"),
    ("POST", "/v1/customers", {"json": _customer(external_id="x\x00")}, "body.external_id"),
    (
        "POST",
        "/v1/journal-entries",
        {"json": entry_body(memo="memo\x00")},
        "body.memo",
    ),
    (
        "POST",
        "/v1/journal-entries",
        {"json": entry_body(metadata={"tags": {"deep": ["ok", "bad\x00"]}})},
        "body.metadata.tags.deep[1]",
    ),
    (
        "POST",
        "/v1/journal-entries",
        {"json": entry_body(metadata={"k\x00ey": "v"})},
        "key of body.metadata",
    ),
    (
        "POST",
        "/v1/journal-entries/batch",
        {"json": {"entries": [entry_body(), entry_body(memo="\x00")]}},
        "body.entries[1].memo",
    ),
    (
        "POST",
        "/v1/accounts",
        {"json": {"name": "Assets:Bank:Spare", "metadata": {"note": "\x00"}}},
        "body.metadata.note",
    ),
    ("POST", "/v1/products", {"json": {"name": "Plan\x00"}}, "body.name"),
    ("GET", "/v1/accounts/Assets%00Bank", {}, "path parameter account_id"),
    ("GET", "/v1/customers/abc%00", {}, "path parameter ref"),
    ("POST", "/v1/periods/2026-01%00/close", {}, "path parameter period"),
    ("GET", "/v1/journal-entries", {"params": {"account": "A\x00"}}, "query parameter account"),
    ("GET", "/v1/customers", {"params": {"external_id": "\x00"}}, "query parameter external_id"),
    (
        "POST",
        "/v1/journal-entries",
        {"json": entry_body(), "headers": {"Idempotency-Key": "key\x00"}},
        "header idempotency-key",
    ),
]


@pytest.mark.parametrize(("method", "path", "request_args", "field"), NUL_CASES)
def test_a_nul_character_is_refused_naming_its_field(
    client: Any,
    book: BookFixture,
    owner_conn: psycopg.Connection,
    method: str,
    path: str,
    request_args: dict[str, Any],
    field: str,
) -> None:
    before = billing_counts(owner_conn, book.id)
    headers = {**auth(book.admin_key), **request_args.pop("headers", {})}
    r = client.request(method, path, headers=headers, **request_args)
    body = assert_problem(r, 422, "nul_character")
    assert body["field"].startswith(field), body
    assert field in body["detail"]
    assert billing_counts(owner_conn, book.id) == before


def test_metadata_nested_971_levels_is_refused_not_a_500(
    client: Any, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    before = billing_counts(owner_conn, book.id)
    r = client.post(
        "/v1/journal-entries",
        headers={**auth(book.admin_key), "Content-Type": "application/json"},
        content=_with_metadata(b'{"a": ' * 970 + b'{"leaf": "x"}' + b"}" * 970),
    )
    body = assert_problem(r, 422, "too_deeply_nested")
    assert body["field"].startswith("body.metadata.a.a")
    assert str(MAX_DEPTH) in body["detail"]
    assert billing_counts(owner_conn, book.id) == before


def test_nesting_beyond_the_decoder_stack_is_refused_too(client: Any, book: BookFixture) -> None:
    r = client.post(
        "/v1/journal-entries",
        headers={**auth(book.admin_key), "Content-Type": "application/json"},
        content=_with_metadata(b'{"a": ' * 20000 + b"1" + b"}" * 20000),
    )
    assert_problem(r, 422, "too_deeply_nested")


def test_metadata_just_within_the_depth_limit_is_kept(client: Any, book: BookFixture) -> None:
    # body (1) → metadata (2) → … the deepest container sits at depth MAX_DEPTH
    r = client.post(
        "/v1/journal-entries",
        headers=auth(book.admin_key),
        json=entry_body(metadata=_nested(MAX_DEPTH - 1)),
    )
    assert r.status_code == 201, r.text
    assert r.json()["metadata"] == _nested(MAX_DEPTH - 1)


def test_oversized_metadata_is_refused(
    client: Any, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    before = billing_counts(owner_conn, book.id)
    r = client.post(
        "/v1/journal-entries",
        headers=auth(book.admin_key),
        json=entry_body(metadata={f"k{i}": "v" * 100 for i in range(200)}),
    )
    body = assert_problem(r, 422, "metadata_too_large")
    assert body["field"] == "body.metadata"
    assert billing_counts(owner_conn, book.id) == before


def test_an_escaped_backslash_u0000_is_ordinary_text(client: Any, book: BookFixture) -> None:
    r = client.post(
        "/v1/journal-entries", headers=auth(book.admin_key), json=entry_body(memo="C:\\u0000")
    )
    assert r.status_code == 201, r.text
    assert r.json()["memo"] == "C:\\u0000"


def test_check_json_names_the_first_offender_in_document_order() -> None:
    with pytest.raises(InputRejected) as caught:
        check_json({"a": ["ok", {"b": NUL}], "c": NUL}, "body")
    assert caught.value.fields["field"] == "body.a[1].b"
    with pytest.raises(InputRejected) as caught:
        decode_json(b'{"odd key": "\\u0000"}', "mapping")
    assert caught.value.fields["field"] == 'mapping["odd key"]'


def test_cli_refuses_a_csv_mapping_file_with_nul(
    book: BookFixture, database_url: str, tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    statement = tmp_path / "s.csv"
    statement.write_text("date,amount,description\n2026-01-05,10.00,coffee\n")
    mapping = tmp_path / "m.json"
    mapping.write_text(json.dumps({"date": "date", "amount": "amount", "description": "d\x00"}))
    code = main(
        [
            "statements",
            "import",
            str(statement),
            "--account",
            "Assets:Bank:Operating",
            "--book",
            str(book.id),
            "--statement-format",
            "csv",
            "--csv-mapping",
            str(mapping),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "NUL" in err and "description" in err
