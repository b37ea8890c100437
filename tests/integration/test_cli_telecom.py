"""`cdrs import FILE` with a broken row (reported by line, the rest stored,
exit 1), re-import stores nothing twice, `cdrs rate` (and `--parts 2`), `wallets sweep`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from adapters.runtime import Runtime
from tests.conftest import make_book
from tests.integration.http_fixtures import auth
from tests.integration.test_cli import cli, client  # noqa: F401  (shared fixtures)
from tests.unit.test_telecom_rating import plan_body

pytestmark = pytest.mark.slow

CSV = """id,subscriber,event_type,start,duration_seconds,bytes,destination,roaming
r1,+447700900001,voice,2026-03-02T10:00:00+00:00,61,,+447700900123,false
r2,+447700900001,voice,2026-03-02T10:05:00,61,,+447700900123,false
r3,+447700900001,data,2026-03-02T11:00:00+00:00,,1000001,internet,false
r4,+447700900001,voice,2026-03-02T12:00:00+00:00,abc,,+447700900123,false
"""


def test_cdrs_import_and_rate(
    runtime: Runtime,
    client: Any,  # noqa: F811
    cli: Any,  # noqa: F811
    tmp_path: Path,
    database_url: str,
) -> None:
    book = make_book(runtime, "GBP")
    h = auth(book.admin_key)
    assert client.post("/v1/rate-plans", json=plan_body(), headers=h).status_code == 201
    customer = client.post("/v1/customers", json={"name": "C", "currency": "GBP"}, headers=h)
    body = {
        "subscriber": "+447700900001",
        "customer": customer.json()["id"],
        "rate_plan": "Mobile S",
    }
    assert client.post("/v1/subscribers", json=body, headers=h).status_code == 201
    path = tmp_path / "cdrs.csv"
    path.write_text(CSV)
    first = cli("cdrs", "import", str(path), "--book", str(book.id), "--format", "json")
    assert first.returncode == 1, first.stderr
    assert "Traceback" not in first.stderr
    lines = first.stderr.splitlines()
    assert lines[0].startswith("line 3: start needs a UTC offset")
    assert lines[1].startswith("line 5: duration_seconds")
    doc = json.loads(first.stdout)
    assert (doc["accepted"], doc["duplicates"]) == (2, 0)
    again = cli("cdrs", "import", str(path), "--book", str(book.id), "--format", "json")
    assert (json.loads(again.stdout)["accepted"], json.loads(again.stdout)["duplicates"]) == (0, 2)
    rated = cli(
        "cdrs", "rate", "--through", "2026-04-01", "--book", str(book.id), "--format", "json"
    )
    assert rated.returncode == 0, rated.stderr
    # r1: 120 s peak at 0.60/min = 1.20; r3: 2 started MB at 2.00 = 4.00
    assert json.loads(rated.stdout)["amounts"] == {"GBP": "5.20"}
    # A later CDR, rated in two parts (a run each; this subscriber's part rates it).
    (tmp_path / "late.csv").write_text(
        CSV.splitlines()[0] + "\nr5,+447700900001,voice,2026-03-03T10:00:00+00:00,61,,+4477,false\n"
    )
    assert cli("cdrs", "import", str(tmp_path / "late.csv"), "--book", str(book.id)).returncode == 0
    parts = cli(
        "cdrs", "rate", "--through", "2026-04-01", "--parts", "2", "--book", str(book.id),
        "--format", "json",
    )  # fmt: skip
    assert parts.returncode == 0, parts.stderr
    doc = json.loads(parts.stdout)
    assert (doc["rated"], doc["amounts"], len(doc["parts"])) == (1, {"GBP": "1.20"}, 2)
    with psycopg.connect(database_url) as conn:
        count = conn.execute("select count(*) from cdrs where book_id = %s", (book.id,)).fetchone()
    assert count == (3,)
    # A recharge good for one day, its validity moved into the past (no waiting in
    # tests): the sweep lapses its value to Breakage, dated the day after.
    wallet = client.post(
        "/v1/wallets", json={"customer": customer.json()["id"], "currency": "GBP"}, headers=h
    ).json()
    topped = client.post(
        f"/v1/wallets/{wallet['id']}/top-ups", json={"amount": "5.00", "valid_days": 1}, headers=h
    )
    assert topped.status_code == 201, topped.text
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "update wallets set valid_until = current_date - 3 where id = %s", (wallet["id"],)
        )
    swept = cli("wallets", "sweep", "--book", str(book.id), "--format", "json")
    assert (swept.returncode, json.loads(swept.stdout)) == (
        0,
        {"expired": 0, "wallets_lapsed": 1},
    )
    with psycopg.connect(database_url) as conn:
        lapsed = conn.execute(
            "select e.effective_date = current_date - 2, p.amount::text from journal_entries e"
            " join postings p on p.book_id = e.book_id and p.entry_id = e.id"
            " join accounts a on a.book_id = p.book_id and a.id = p.account_id"
            " where e.book_id = %s and a.name = 'Income:Breakage'",
            (book.id,),
        ).fetchall()
    assert lapsed == [(True, "-5.00")]
    assert client.get(f"/v1/wallets/{wallet['id']}", headers=h).json()["balance"] == "0.00"
    missing = cli("cdrs", "import", str(tmp_path / "nope.csv"), "--book", str(book.id))
    assert missing.returncode == 2 and missing.stderr.startswith("error: ")
