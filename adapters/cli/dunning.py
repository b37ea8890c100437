"""Dunning commands: `dunning run [--as-of D]`, `messages list`, `messages send`."""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Callable
from datetime import date
from typing import Any

import psycopg

from adapters.cli.common import BOOK_HELP, _book_id, _date, _print, read_book
from adapters.runtime import open_runtime, utc_today
from ledger.postgres.books import get_book


def cmd_dunning_run(args: argparse.Namespace) -> int:
    from adapters.dunning import run_dunning

    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        with runtime.connection() as conn:
            today = get_book(conn, book_id).today(utc_today())
            conn.rollback()
        done = run_dunning(runtime.connection, book_id, args.as_of or today, today)
    text = (
        f"dunning {done['as_of']}: {done['invoices']} invoices, {done['retries']} retries"
        f" ({done['retries_succeeded']} paid), {done['reminders']} reminders,"
        f" {done['late_fees']} late fees, {done['suspended']} suspended,"
        f" {done['written_off']} written off, {done['resumed']} resumed"
    )
    text += "".join(f"\n  refused {r['invoice']}: {r['reason']}" for r in done["refused"])
    _print(args, done, text)
    return 0


def cmd_messages_list(args: argparse.Namespace) -> int:
    from adapters.http.dunning_api import message_json
    from adapters.messages.smtp import list_messages

    def read(conn: psycopg.Connection, book_id: uuid.UUID, _today: date) -> list[dict[str, Any]]:
        return [message_json(m) for m in list_messages(conn, book_id, status=args.status)]

    book_id, found = read_book(args, read)
    text = "\n".join(
        f"{m['id']}  {m['status']:<6} {m['kind']:<13} {m['recipient']}  {m['subject']}"
        for m in found
    )
    _print(args, {"book_id": str(book_id), "messages": found}, text or "none")
    return 0


def cmd_messages_send(args: argparse.Namespace) -> int:
    """Drain the book's due messages through its `smtp` setting (as the server's worker does)."""
    from adapters.messages.smtp import MessageSender

    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        sent = MessageSender(runtime.connection, books=[book_id]).send_due()
        with runtime.connection() as conn:
            rows = conn.execute(
                "select status, count(*) from messages where book_id = %s group by status",
                (book_id,),
            ).fetchall()
    counts = {status: int(n) for status, n in rows}
    _print(
        args,
        {"book_id": str(book_id), "attempted": sent, "messages": counts},
        f"{sent} attempted; " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())),
    )
    return 0


def _dunning_parsers(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    dunning = sub.add_parser("dunning", help="dunning runs").add_subparsers(
        dest="dunning_command", required=True
    )
    run = command("run", cmd_dunning_run, "retry cards, remind, fine, suspend, write off", dunning)
    run.add_argument("--book", help=BOOK_HELP)
    run.add_argument("--as-of", type=_date, help="the day to dun for (the book's today)")
    messages = sub.add_parser("messages", help="the outbox of reminders").add_subparsers(
        dest="messages_command", required=True
    )
    ls = command("list", cmd_messages_list, "list the book's messages", messages)
    ls.add_argument("--book", help=BOOK_HELP)
    ls.add_argument("--status", choices=["queued", "sending", "sent", "failed"], help="only these")
    send = command("send", cmd_messages_send, "send due messages by the book's smtp", messages)
    send.add_argument("--book", help=BOOK_HELP)
