"""`activebilling statements import`, `reconcile auto-match`, `report reconciliation`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from adapters.runtime import Runtime
from tests.conftest import make_book
from tests.integration.test_reconciliation_matching import (
    BANK,
    STATEMENT_LINES,
    _post_book,
    camt053,
)

pytestmark = pytest.mark.slow  # each command is a fresh Python process

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / ".venv" / "bin" / "activebilling"
if not CLI.exists():
    CLI = Path(sys.executable).with_name("activebilling")


def run(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTIVEBILLING_")}
    env["DATABASE_URL"] = database_url
    return subprocess.run(
        [str(CLI), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_import_auto_match_and_report(runtime: Runtime, database_url: str, tmp_path: Path) -> None:
    book = make_book(runtime)
    _post_book(runtime, book)
    statement = tmp_path / "jan.xml"
    statement.write_bytes(camt053(STATEMENT_LINES))
    common = ("--book", str(book.id), "--format", "json")

    first = run(database_url, "statements", "import", str(statement), "--account", BANK, *common)
    assert first.returncode == 0, first.stderr
    (imported,) = json.loads(first.stdout)["statements"]
    assert (imported["new_lines"], imported["duplicate_lines"]) == (len(STATEMENT_LINES), 0)
    again = run(database_url, "statements", "import", str(statement), "--account", BANK, *common)
    assert json.loads(again.stdout)["statements"][0]["new_lines"] == 0

    matched = run(database_url, "reconcile", "auto-match", "--account", BANK, *common)
    assert matched.returncode == 0, matched.stderr
    result: dict[str, Any] = json.loads(matched.stdout)
    assert (result["matched_lines"], result["unmatched_lines"]) == (8, 6)

    report = run(database_url, "report", "reconciliation", "--account", BANK,
                 "--as-of", "2026-01-31", *common)  # fmt: skip
    assert report.returncode == 0, report.stderr
    document = json.loads(report.stdout)
    assert document["reconciled"] is True
    assert document["outstanding_lines"]["count"] == 6
    text = run(database_url, "report", "reconciliation", "--account", BANK,
               "--as-of", "2026-01-31", "--book", str(book.id))  # fmt: skip
    assert "reconciled" in text.stdout and "statement balance" in text.stdout

    truncated = tmp_path / "bad.xml"
    truncated.write_bytes(camt053(STATEMENT_LINES)[:500])
    bad = run(database_url, "statements", "import", str(truncated), "--account", BANK, *common)
    assert bad.returncode == 2
    assert "malformed" in bad.stderr or "not well-formed" in bad.stderr
