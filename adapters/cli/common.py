"""Helpers shared by the command modules: errors, dates, output, the book to use."""

from __future__ import annotations

import argparse
import json
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import psycopg

from adapters.runtime import Runtime, open_runtime, utc_today
from adapters.services import single_book_id
from ledger.postgres.books import book_window, get_book

T = TypeVar("T")


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
    """The book `--book` names, by id or by name; with none given, the only book."""
    with runtime.connection() as conn:
        if given:
            try:
                book_id = uuid.UUID(given)
            except ValueError:
                rows = conn.execute(
                    "select id from books where name = %s order by created_at", (given,)
                ).fetchall()
                if len(rows) > 1:
                    raise CliError(
                        f"{len(rows)} books are named {given!r}: give --book its id"
                    ) from None
                if not rows:
                    raise CliError(
                        f"--book {given!r} is neither a book id nor a book name"
                    ) from None
                found: uuid.UUID = rows[0][0]
                return found
            get_book(conn, book_id)
            return book_id
        try:
            return single_book_id(conn)
        except LookupError as exc:
            raise CliError(str(exc)) from None


_DATE_OPTIONS = {"as_of": "--as-of", "date_from": "--from", "date_to": "--to"}


def _check_dates(runtime: Runtime, book_id: uuid.UUID, args: argparse.Namespace) -> None:
    """A report's date options lie in the book's accepted window (ledger.dates)."""
    given = [
        (flag, day)
        for name, flag in _DATE_OPTIONS.items()
        if (day := getattr(args, name, None)) is not None
    ]
    if given:
        with runtime.connection() as conn:
            window = book_window(conn, book_id)
        for flag, day in given:
            window.check(flag, day)


def read_book(
    args: argparse.Namespace, read: Callable[[psycopg.Connection, uuid.UUID, date], T]
) -> tuple[uuid.UUID, T]:
    """`read(conn, book_id, today)` on the book `--book` names, in one connection."""
    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        with runtime.connection() as conn:
            return book_id, read(conn, book_id, get_book(conn, book_id).today(utc_today()))


def _timestamp(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a timestamp: use ISO 8601, e.g. 2026-03-01T12:00:00Z"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


BOOK_HELP = "book id or name; may be left out when the database holds one book"
