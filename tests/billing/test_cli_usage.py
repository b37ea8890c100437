"""`activebilling usage import`: CSV and JSON Lines, streamed in batches, refusals
reported with their line numbers, a re-run stores nothing new."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
import pytest

from adapters.cli import main
from adapters.runtime import Runtime
from billing.postgres.customers import CustomerSpec, upsert_customer
from billing.postgres.usage import create_meter
from ledger.postgres.unit_of_work import unit_of_work
from tests.conftest import BookFixture, make_book


@pytest.fixture
def usage_book(runtime: Runtime, database_url: str, monkeypatch: pytest.MonkeyPatch) -> BookFixture:
    monkeypatch.setenv("DATABASE_URL", database_url)
    book = make_book(runtime, "USD", date(2026, 3, 15))
    with unit_of_work(runtime.connection) as uow:
        upsert_customer(uow.conn, book.id, CustomerSpec("Acme", "USD", external_id="crm-1"))
        create_meter(uow.conn, book.id, "api_calls", "sum")
        uow.commit()
    return book


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    code = main(["usage", "import", *args, "--format", "json"])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else None, err


def _stored(conn: psycopg.Connection, book: BookFixture) -> int:
    row = conn.execute(
        "select count(*) from usage_events where book_id = %s", (book.id,)
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_csv_with_extra_columns_as_properties_and_a_bad_row_by_line(
    usage_book: BookFixture,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    owner_conn: psycopg.Connection,
) -> None:
    path = tmp_path / "usage.csv"
    path.write_text(
        "id,customer,metric,quantity,timestamp,region\n"
        "a1,crm-1,api_calls,5,2026-03-01T10:00:00Z,eu\n"
        "a2,crm-1,api_calls,-5,2026-03-01T10:00:00Z,eu\n"
        "a3,crm-1,api_calls,7,2026-03-02T10:00:00+01:00,us\n"
    )
    code, doc, err = _run(capsys, str(path), "--book", str(usage_book.id))
    assert code == 1, err
    assert (doc["read"], doc["accepted"], doc["duplicates"]) == (3, 2, 0)
    assert [(r["line"], r["id"], r["reason"]) for r in doc["rejected"]] == [
        (3, "a2", "invalid_quantity")
    ]
    assert "usage import: 3 read, 2 accepted" in err
    row = owner_conn.execute(
        "select properties from usage_events where book_id = %s and id = 'a3'", (usage_book.id,)
    ).fetchone()
    assert row == ({"region": "us"},)
    # Run again: all duplicates, nothing new stored.
    code, doc, _ = _run(capsys, str(path), "--book", str(usage_book.id))
    assert (doc["accepted"], doc["duplicates"]) == (0, 2)
    assert _stored(owner_conn, usage_book) == 2


def test_json_lines_in_several_batches_with_a_broken_line(
    usage_book: BookFixture,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    owner_conn: psycopg.Connection,
) -> None:
    path = tmp_path / "usage.jsonl"
    with path.open("w") as handle:
        for n in range(10_050):
            if n == 10_020:
                handle.write("{not json\n")
                continue
            event = {
                "id": f"e{n}",
                "customer": "crm-1",
                "metric": "api_calls",
                "quantity": "1",
                "timestamp": "2026-03-03T00:00:00Z",
            }
            handle.write(json.dumps(event) + "\n")
    code, doc, err = _run(capsys, str(path), "--book", str(usage_book.id))
    assert code == 1
    assert (doc["read"], doc["accepted"]) == (10_050, 10_049)
    assert [(r["line"], r["reason"]) for r in doc["rejected"]] == [(10_021, "invalid_event")]
    assert "usage import: 10000 read" in err  # progress after the first batch
    assert _stored(owner_conn, usage_book) == 10_049


def test_a_missing_file_or_header_is_an_error_and_writes_nothing(
    usage_book: BookFixture,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    owner_conn: psycopg.Connection,
) -> None:
    assert main(["usage", "import", str(tmp_path / "none.csv")]) == 2
    assert "cannot read" in capsys.readouterr().err
    path = tmp_path / "bad.csv"
    path.write_text("id,customer,quantity\na,crm-1,1\n")
    assert main(["usage", "import", str(path), "--book", str(usage_book.id)]) == 2
    assert "lacks metric, timestamp" in capsys.readouterr().err
    assert _stored(owner_conn, usage_book) == 0
