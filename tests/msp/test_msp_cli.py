"""MSP on the command line: a contract, a ConnectWise Manage time export imported
and approved, the contract billing run; a bad file imports nothing."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from adapters.cli import main
from adapters.runtime import Runtime
from tests.conftest import make_book

HEADER = "Time Entry ID,Member,Date Start,Time Start,Time End,Hours Actual,Work Role,"
HEADER += "Billable Option,Notes,Ticket #,Agreement\n"


def test_connectwise_import_and_contract_billing_run(
    runtime: Runtime,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    book = make_book(runtime, "USD", date(2026, 9, 1))
    monkeypatch.setenv("DATABASE_URL", database_url)

    def run(*args: str) -> Any:
        code = main([*args, "--book", str(book.id), "--format", "json"])
        out = capsys.readouterr()
        assert code == 0, out.err
        return json.loads(out.out)

    customer = run("customers", "create", "--name", "Harbor", "--currency", "USD")
    contract = run(
        "contracts", "create", "--customer", customer["id"], "--type", "time_and_materials",
        "--start-date", "2026-09-01",
        "--terms", '{"hourly_rate": "120.00", "rounding": {"increment_minutes": 15}}',
    )  # fmt: skip
    cid = contract["id"]
    bad = tmp_path / "bad.csv"
    bad.write_text(
        HEADER
        + f"1,Dana,09/02/2026,09:00,09:37,,Engineer,Billable,Printer,T-1,{cid}\n"
        + f"2,Dana,09/02/2026,,,-1,Engineer,Billable,Oops,T-2,{cid}\n"
    )
    code = main(["time", "import", str(bad), "--book", str(book.id)])
    assert code == 2 and "negative" in capsys.readouterr().err
    with runtime.connection() as conn:
        assert conn.execute(
            "select count(*) from time_entries where book_id = %s", (book.id,)
        ).fetchone() == (0,)
    good = tmp_path / "time.csv"
    good.write_text(
        HEADER
        + f"1,Dana,09/02/2026,09:00,09:37,,Engineer,Billable,Printer,T-1,{cid}\n"
        + f"2,Lee,2026-09-03,,,1.5,Engineer,No Charge,Warranty,T-2,{cid}\n"
    )
    imported = run("time", "import", str(good), "--approve")
    assert imported["imported"] == 2
    code = main(["contract-billing-run", "--as-of", "2026-10-01", "--book", str(book.id)])
    assert code == 2 and "after the book's today" in capsys.readouterr().err
    run("clock", "advance", "--to", "2026-10-01")
    wip = run("wip", "accrue", "--as-of", "2026-09-30")
    assert [c["amount"] for c in wip["contracts"]] == ["90.00"]
    billed = run("contract-billing-run", "--as-of", "2026-10-01")
    assert [i["total"] for i in billed["invoices"]] == ["90.00"]
    with runtime.connection() as conn:
        unbilled = conn.execute(
            "select sum(p.amount) from postings p join accounts a on a.id = p.account_id"
            " where p.book_id = %s and a.name = 'Assets:Receivable:Unbilled'",
            (book.id,),
        ).fetchone()
    assert unbilled == (0,)


def test_expenses_progress_and_reports_on_the_command_line(
    runtime: Runtime,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    book = make_book(runtime, "USD", date(2026, 10, 1))
    monkeypatch.setenv("DATABASE_URL", database_url)

    def run(*args: str) -> Any:
        code = main([*args, "--book", str(book.id), "--format", "json"])
        out = capsys.readouterr()
        assert code == 0, out.err
        return json.loads(out.out)

    customer = run("customers", "create", "--name", "Harbor", "--currency", "USD")
    hourly = run(
        "contracts", "create", "--customer", customer["id"], "--type", "time_and_materials",
        "--start-date", "2026-09-01", "--terms", '{"hourly_rate": "100.00"}',
    )["id"]  # fmt: skip
    project = run(
        "contracts", "create", "--customer", customer["id"], "--type", "fixed_fee",
        "--start-date", "2026-09-01", "--terms", '{"fee": "1234.56"}',
    )["id"]  # fmt: skip
    expense = run(
        "expenses", "create", "--contract", hourly, "--person", "Dana", "--date", "2026-09-10",
        "--description", "Cables", "--amount", "19.99", "--markup-percent", "15", "--approve",
        "--receipt", '{"vendor": "Acme", "sha256": "' + "0f" * 32 + '"}',
    )  # fmt: skip
    assert (expense["status"], expense["billable_amount"]) == ("approved", "22.99")
    progress = run(
        "contracts", "progress", "--contract", project, "--percent", "33.3", "--date", "2026-09-15"
    )
    assert progress["earned"] == "411.11"  # 1,234.56 × 33.3 % = 411.108… → 411.11
    down = main(
        ["contracts", "progress", "--contract", project, "--percent", "20", "--book", str(book.id)]
    )
    assert down != 0 and "adjustment" in capsys.readouterr().err
    run("people", "set", "--name", "Dana", "--cost-rate", "40.00", "--currency", "USD")
    wip = run("report", "wip", "--as-of", "2026-09-30")
    assert wip["clients"][0]["buckets"]["0-30"] == "434.10"  # 22.99 + 411.11
    run("contract-billing-run", "--as-of", "2026-10-01")
    prof = run("report", "profitability", "--from", "2026-09-01", "--to", "2026-11-01")
    assert [(c["revenue"], c["cost"], c["margin"]) for c in prof["clients"]] == [
        ("434.10", "19.99", "414.11")
    ]
    assert run("report", "retainer-burn-down") == {"periods": []}


def test_expense_csv_import_is_whole_or_nothing(
    runtime: Runtime,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    book = make_book(runtime, "USD", date(2026, 10, 1))
    monkeypatch.setenv("DATABASE_URL", database_url)

    def run(*args: str) -> Any:
        code = main([*args, "--book", str(book.id), "--format", "json"])
        out = capsys.readouterr()
        assert code == 0, out.err
        return json.loads(out.out)

    customer = run("customers", "create", "--name", "Harbor", "--currency", "USD")
    cid = run(
        "contracts", "create", "--customer", customer["id"], "--type", "time_and_materials",
        "--start-date", "2026-09-01", "--terms", '{"hourly_rate": "100.00"}',
    )["id"]  # fmt: skip
    head = "contract,person,date,description,amount,markup_percent,billable,vendor,external_id\n"
    bad = tmp_path / "bad.csv"
    bad.write_text(
        head
        + f"{cid},Dana,2026-09-10,Switch,42.50,10,yes,Acme,E-1\n"
        + f"{cid},Dana,2026-09-11,Oops,-3.00,,yes,,E-2\n"
    )
    assert main(["expenses", "import", str(bad), "--book", str(book.id)]) == 2
    assert "amount" in capsys.readouterr().err
    with runtime.connection() as conn:
        row = conn.execute("select count(*) from expenses where book_id = %s", (book.id,))
        assert row.fetchone() == (0,)
    good = tmp_path / "good.csv"
    good.write_text(
        head
        + f"{cid},Dana,2026-09-10,Switch,42.50,10,yes,Acme,E-1\n"
        + f"{cid},Dana,2026-09-11,Lunch,12.00,,no,,E-2\n"
    )
    assert run("expenses", "import", str(good), "--approve")["imported"] == 2
    invoice = run("contract-billing-run", "--as-of", "2026-10-01")["invoices"]
    assert [i["total"] for i in invoice] == ["46.75"]  # the lunch is not billable
