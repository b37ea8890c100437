"""Every option and argument of every `activebilling` command says what it is for."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from adapters.cli import _parser


def commands(
    parser: argparse.ArgumentParser, path: str = "activebilling"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from commands(child, f"{path} {name}")


def test_every_option_of_every_command_has_help() -> None:
    missing = [
        f"{path} {'/'.join(action.option_strings) or action.dest}"
        for path, parser in commands(_parser())
        for action in parser._actions
        if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))
        if not (action.help or "").strip() or action.help == argparse.SUPPRESS
    ]
    assert missing == []


def test_every_command_has_help() -> None:
    missing = []
    for path, parser in commands(_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helped = {a.dest for a in action._choices_actions if (a.help or "").strip()}
                missing += [f"{path} {name}" for name in action.choices if name not in helped]
    assert missing == []


def test_the_walk_reaches_nested_commands() -> None:
    paths = {path for path, _ in commands(_parser())}
    assert {"activebilling invoices list", "activebilling keys revoke"} <= paths
