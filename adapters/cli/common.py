"""Helpers shared by the command modules: errors, dates, output, the book to use."""

from __future__ import annotations

import argparse
import json
import uuid
from datetime import UTC, date, datetime
from typing import Any

from adapters.runtime import Runtime
from adapters.services import single_book_id
from ledger.postgres.books import get_book


class CliError(Exception):
    """A clear message for the user; exit code 2."""


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date: use YYYY-MM-DD") from None


def _print(args: argparse.Namespace, document: dict[str, Any], text: str) -> None:
    if getattr(args, "format", "table") == "json":
        print(json.dumps(document, indent=2, default=str))
    else:
        print(text)


def _book_id(runtime: Runtime, given: str | None) -> uuid.UUID:
    with runtime.connection() as conn:
        if given:
            try:
                book_id = uuid.UUID(given)
            except ValueError:
                raise CliError(f"--book {given!r} is not a book id") from None
            get_book(conn, book_id)
            return book_id
        try:
            return single_book_id(conn)
        except LookupError as exc:
            raise CliError(str(exc)) from None


def _timestamp(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a timestamp: use ISO 8601, e.g. 2026-03-01T12:00:00Z"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
