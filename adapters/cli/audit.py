"""The command line in the audit log: every command that changes a book leaves a row
(principal "cli:<os user>", method "CLI", path the command, status its exit code),
and `activebilling audit list` reads the log with the HTTP API's filters.

Where a command writes its row itself, inside its own transaction (the key
commands), the row commits with the change or not at all. The others get theirs
from `record_after`, right after they return: a crash between the two loses that
row (the change stays), as the HTTP writer's batches can.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Callable
from typing import Any

from adapters.audit import audit_json, audit_rows, parse_filter, record_cli
from adapters.cli.common import BOOK_HELP, CliError, _book_id, _print, read_book
from adapters.http.cursors import decode_sort_key, encode_sort_key
from adapters.http.problems import ApiError
from adapters.runtime import open_runtime

# Commands that only read (or touch no book): no audit row. Everything else is
# audited, so a new mutating command is covered without being listed.
_READ_ONLY_FIRST = frozenset({"serve", "db", "report", "export", "verify", "backup", "audit"})
_READ_ONLY_LAST = frozenset({"list", "show"})
_READ_ONLY = frozenset({"fx rate", "patients statement", "demo"})  # demo: a simulation


def command_name(args: argparse.Namespace) -> str:
    """The command's words, e.g. "keys rotate" (argparse keeps each level's dest)."""
    words = [args.command]
    words += [v for k, v in vars(args).items() if k.endswith("_command") and isinstance(v, str)]
    return " ".join(words)


def is_mutation(args: argparse.Namespace) -> bool:
    name = command_name(args)
    words = name.split()
    if words[0] in _READ_ONLY_FIRST or words[-1] in _READ_ONLY_LAST or name in _READ_ONLY:
        return False
    return not (name == "books settings" and not getattr(args, "set", None))


def mark_audited(args: argparse.Namespace) -> None:
    """The command wrote its row in its own transaction: record_after skips it."""
    args.audited = True


def record_after(args: argparse.Namespace, code: int) -> None:
    """The audit row of a mutating command that did not write its own, for each book
    it acted on (`args.audit_books` when the command names them, else `--book`)."""
    if getattr(args, "audited", False) or not is_mutation(args):
        return
    try:
        with open_runtime() as runtime:
            books: list[uuid.UUID] = getattr(args, "audit_books", None) or [
                _book_id(runtime, getattr(args, "book", None))
            ]
            with runtime.connection() as conn:
                for book_id in books:
                    record_cli(
                        conn,
                        book_id,
                        command_name(args),
                        code,
                        getattr(args, "audit_created", ()),
                        idempotency_key=getattr(args, "idempotency_key", None),
                    )
                conn.commit()
    except CliError:
        return  # no book to name (the command failed before it found one)
    except Exception as exc:
        if code == 0:  # the change is done: say its row is missing, loudly
            print(f"warning: the audit log did not record this command: {exc}", file=sys.stderr)
        # A failed command (often: the database is down) keeps its own error alone.


def cmd_audit_list(args: argparse.Namespace) -> int:
    where = parse_filter(
        {
            "from": args.date_from,
            "to": args.date_to,
            "key_id": args.key_id,
            "method": args.method,
            "path": args.path,
            "status": args.status,
        }
    )
    try:
        key = decode_sort_key(args.cursor)
    except ApiError:
        key = ()
    if key is not None and (len(key) != 1 or not isinstance(key[0], int)):
        raise CliError("--cursor is not one this command printed")
    if not 1 <= args.limit <= 1000:
        raise CliError("--limit must be between 1 and 1000")
    book_id, rows = read_book(
        args,
        lambda conn, book_id, _today: audit_rows(
            conn, book_id, where, before=key[0] if key else None, limit=args.limit
        ),
    )
    data = [audit_json(r) for r in rows]
    cursor = encode_sort_key([rows[-1]["id"]]) if len(rows) == args.limit else None
    text = "\n".join(
        f"{r['at'][:19]}  {r['principal']:<44} {r['role']:<10} {r['method']:<6}"
        f" {r['status']:>3}  {r['path']}  {' '.join(r['created'])}"
        for r in data
    )
    if cursor:
        text += f"\nmore: --cursor {cursor}"
    _print(
        args,
        {"book_id": str(book_id), "data": data, "next_cursor": cursor},
        text or "no audit rows",
    )
    return 0


def audit_parsers(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    audit = sub.add_parser("audit", help="the audit log of who changed what").add_subparsers(
        dest="audit_command", required=True
    )
    listing = command("list", cmd_audit_list, "audit rows, newest first (GET /v1/audit-log)", audit)
    listing.add_argument("--book", help=BOOK_HELP)
    listing.add_argument("--from", dest="date_from", help="from this date or timestamp (ISO 8601)")
    listing.add_argument("--to", dest="date_to", help="before this date or timestamp (ISO 8601)")
    listing.add_argument("--key-id", help="only this API key's rows")
    listing.add_argument("--method", help="POST, PUT, PATCH, DELETE or CLI")
    listing.add_argument("--path", help="routes or commands starting with this")
    listing.add_argument("--status", help="HTTP status, or a command's exit code")
    listing.add_argument("--limit", type=int, default=100, help="rows per page (100)")
    listing.add_argument("--cursor", help="the previous page's next_cursor")
