"""`activebilling collections run` and `collections returns`, in process: a SEPA
run writes its pain.008 with --out, the same bytes the API serves; an AM04
camt.054 reverses one debit; bad input exits 2 and writes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from adapters.cli import main
from adapters.runtime import Runtime
from adapters.services import verify_everything
from tests.conftest import make_book
from tests.integration.http_fixtures import auth, open_client
from tests.payments.helpers import account_balance, entries_of_kind
from tests.payments.test_direct_debit import CREDITOR, SEPA, _sepa_customers, _settings, camt054


@pytest.fixture
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


def test_cli_collection_run_and_returns(
    runtime: Runtime,
    client: Any,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    book = make_book(runtime, "EUR", date(2026, 3, 2))
    key = book.admin_key
    _settings(client, key, sepa_creditor=CREDITOR)
    invoices, _ = _sepa_customers(client, key)
    at = ["--book", str(book.id)]

    # Bad input first: nothing is written.
    assert main(["collections", "run", "--scheme", "ach", *at]) == 2  # no ach_originator
    assert "ach_originator" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["collections", "run", "--scheme", "bacs", *at])
    with pytest.raises(SystemExit):
        main(["collections", "run", "--scheme", "sepa", "--as-of", "soon", *at])
    capsys.readouterr()
    junk = tmp_path / "junk.txt"
    junk.write_text("hello")
    assert main(["collections", "returns", str(junk), *at]) == 2
    assert "not a pain.002, camt.054 or NACHA" in capsys.readouterr().err
    assert main(["collections", "returns", str(tmp_path / "missing.xml"), *at]) == 2
    assert "cannot read" in capsys.readouterr().err
    with runtime.connection() as conn:
        assert account_balance(conn, book.id, SEPA) == "0.00"

    out = tmp_path / "run.xml"
    args = ["collections", "run", "--scheme", "sepa", "--as-of", "2026-12-31", "--out", str(out)]
    assert main([*args, *at, "--format", "json"]) == 0
    run = json.loads(capsys.readouterr().out)
    assert (run["transaction_count"], run["total"]) == (3, "350.00")
    served = client.get(f"/v1/collection-runs/{run['id']}/file", headers=auth(key)).content
    assert out.read_bytes() == served
    again = tmp_path / "again.xml"
    assert main(["collections", "show", run["id"], "--out", str(again), *at]) == 0
    assert again.read_bytes() == served and "350.00 EUR" in capsys.readouterr().out
    assert main(["collections", "list", *at, "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)["collection_runs"]
    assert [(r["id"], r["total"], r["status"]) for r in listed] == [
        (run["id"], "350.00", "submitted")
    ]
    assert main(["collections", "show", "not-a-run", *at]) == 2
    capsys.readouterr()
    # Again: nothing left to collect is not an error.
    assert main(["collections", "run", "--scheme", "sepa", "--as-of", "2026-12-31", *at]) == 0
    assert "no open invoice due" in capsys.readouterr().out

    bernds = next(t for t in run["transactions"] if t["invoice"] == invoices[2]["id"])
    returns = tmp_path / "camt054.xml"
    returns.write_bytes(camt054(bernds["reference"], "200.00", "AM04"))
    assert main(["collections", "returns", str(returns), *at, "--format", "json"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert (done["format"], done["processed"], done["returns"][0]["code"]) == (
        "camt.054",
        1,
        "AM04",
    )
    assert main(["collections", "returns", str(returns), *at]) == 0
    assert "0 returned, 1 already seen" in capsys.readouterr().out
    unknown = tmp_path / "unknown.xml"
    unknown.write_bytes(camt054("DDNOSUCH", "200.00", "AM04"))
    assert main(["collections", "returns", str(unknown), *at]) == 2
    assert "DDNOSUCH" in capsys.readouterr().err
    with runtime.connection() as conn:
        assert entries_of_kind(conn, book.id, "collection_return") == [
            [(SEPA, "-200.00"), ("Assets:Receivable:Trade", "200.00")]
        ]
        assert account_balance(conn, book.id, SEPA) == "150.00"
        assert verify_everything(conn, book.id) == []
