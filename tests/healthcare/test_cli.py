"""`activebilling claims export-837` and `remittances import`, and interchange
control numbers that never repeat."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from adapters.runtime import Runtime
from billing.postgres.healthcare import next_control_number
from ledger.postgres.unit_of_work import unit_of_work
from tests.conftest import make_book
from tests.healthcare.test_http import TODAY, _post, practice
from tests.healthcare.test_rules import pyx12_errors
from tests.healthcare.x12_samples import worked_claim_835
from tests.integration.test_cli import cli, client  # noqa: F401  (shared fixtures)


def test_export_837_then_import_the_835(
    cli: Any,  # noqa: F811
    client: Any,  # noqa: F811
    runtime: Runtime,
    tmp_path: Path,
) -> None:
    book = make_book(runtime, "USD", TODAY)
    ids = practice(client, book.admin_key)
    claim = _post(client, book.admin_key, "/v1/claims", {"encounter": ids["encounter"]})
    out = tmp_path / "claim.837"
    export = ("claims", "export-837", "--claim", claim["id"], "--book", str(book.id))
    draft = cli(*export, "--out", str(out))
    assert draft.returncode == 2 and "submit it first" in draft.stderr and not out.exists()
    submitted = cli("claims", "submit", "--claim", claim["id"], "--book", str(book.id))
    assert submitted.returncode == 0, submitted.stderr
    assert "submitted" in submitted.stdout
    done = cli(*export, "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert pyx12_errors(out.read_text(), tmp_path) == []
    assert cli(*export).stdout == out.read_text()  # the same interchange every time
    era = tmp_path / "era.835"
    era.write_text(worked_claim_835(claim["control_number"]))
    first = cli("remittances", "import", str(era), "--book", str(book.id), "--format", "json")
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    assert [(c["control_number"], c["paid"], c["status"]) for c in result["claims"]] == [
        (claim["control_number"], "56.00", "paid")
    ]
    again = cli("remittances", "import", str(era), "--book", str(book.id))
    assert again.returncode == 0 and "already imported, nothing posted" in again.stdout
    era.write_text(worked_claim_835(claim["control_number"], "T-OTHER", total="50.00"))
    refused = cli("remittances", "import", str(era), "--book", str(book.id))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "the file does not balance" in refused.stderr and "50.00" in refused.stderr
    missing = cli("claims", "export-837", "--claim", "nope", "--book", str(book.id))
    assert missing.returncode != 0 and "does not exist" in missing.stderr


def test_control_numbers_never_repeat_across_a_thousand_interchanges(runtime: Runtime) -> None:
    book = make_book(runtime, "USD", TODAY)
    with unit_of_work(runtime.connection) as uow:
        first = [next_control_number(uow.conn, book.id) for _ in range(500)]
        uow.commit()
    with unit_of_work(runtime.connection) as uow:
        second = [next_control_number(uow.conn, book.id) for _ in range(500)]
        uow.commit()
    numbers = first + second
    assert len(set(numbers)) == 1000
    assert numbers == sorted(numbers) and second[0] > first[-1]
