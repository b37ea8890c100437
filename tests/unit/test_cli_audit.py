"""Which commands leave an audit row: every one that can change a book, by default."""

from __future__ import annotations

import pytest

from adapters.cli import _parser
from adapters.cli.audit import command_name, is_mutation

BOOK = "00000000-0000-0000-0000-000000000001"


@pytest.mark.parametrize(
    "argv",
    [
        ["keys", "rotate", BOOK],
        ["keys", "create", "--role", "erp"],
        ["keys", "revoke", BOOK],
        ["billing-run"],
        ["usage", "import", "events.jsonl"],
        ["cdrs", "import", "cdrs.csv"],
        ["statements", "import", "s.xml", "--account", "Assets:Bank:Operating"],
        ["collections", "run", "--scheme", "sepa"],
        ["restore", "archive.dump"],
        ["books", "create", "--name", "N", "--currency", "USD"],
        ["books", "settings", "--set", "a=1"],
        ["journal-entries", "post", "A=1", "B=-1"],
    ],
)
def test_commands_that_change_a_book_are_audited(argv: list[str]) -> None:
    assert is_mutation(_parser().parse_args(argv)), argv


@pytest.mark.parametrize(
    "argv",
    [
        ["keys", "list"],
        ["audit", "list"],
        ["report", "trial-balance"],
        ["export", "beancount"],
        ["verify"],
        ["backup", "--out", "x"],
        ["books", "settings"],
        ["invoices", "list"],
        ["collections", "show", BOOK],
        ["serve"],
    ],
)
def test_commands_that_only_read_are_not(argv: list[str]) -> None:
    assert not is_mutation(_parser().parse_args(argv)), argv


def test_the_command_is_named_by_its_words() -> None:
    assert command_name(_parser().parse_args(["keys", "rotate", BOOK])) == "keys rotate"
    assert command_name(_parser().parse_args(["billing-run"])) == "billing-run"
