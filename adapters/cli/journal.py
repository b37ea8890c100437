"""Manual journal entries and revenue recognition runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import msgspec

from adapters.audit import record_cli
from adapters.cli.audit import command_name, mark_audited
from adapters.cli.common import CliError, _book_id, _print, read_book
from adapters.input_limits import decode_json
from adapters.runtime import open_runtime, utc_today
from ledger.postgres.books import get_book
from ledger.postgres.unit_of_work import unit_of_work


def _posting(value: str, currency: str) -> dict[str, str]:
    """`ACCOUNT=AMOUNT [CURRENCY]` (the book's currency when left out)."""
    account, sep, rest = value.partition("=")
    parts = rest.split()
    if not sep or not account.strip() or len(parts) not in (1, 2):
        raise CliError(
            f"posting {value!r}: write ACCOUNT=AMOUNT [CURRENCY], e.g. Income:Services=-100.00 USD"
        )
    return {
        "account": account.strip(),
        "amount": parts[0],
        "currency": parts[1].upper() if len(parts) == 2 else currency,
    }


def _entry_body(args: argparse.Namespace, currency: str) -> Any:
    from adapters.http.ledger_api import JournalEntryIn

    if args.file and args.posting:
        raise CliError("give postings as arguments or --file, not both")
    if args.file:
        try:
            raw = sys.stdin.read() if args.file == "-" else Path(args.file).read_text("utf-8")
            # the HTTP edge's limits (NUL, nesting, metadata size) apply to files too
            document = decode_json(raw, "--file")
        except OSError as exc:
            raise CliError(f"cannot read {args.file}: {exc.strerror}") from None
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise CliError(f"{args.file} is not JSON: {exc}") from None
    else:
        if not args.posting:
            raise CliError("give the postings (ACCOUNT=AMOUNT [CURRENCY] ...) or --file")
        document = {"postings": [_posting(p, currency) for p in args.posting]}
    if not isinstance(document, dict):
        raise CliError("the entry must be a JSON object, as POST /v1/journal-entries takes")
    for name, value in (("memo", args.memo), ("effective_date", args.date)):
        if value is not None:
            document[name] = value.isoformat() if name == "effective_date" else value
    if args.idempotency_key is not None:
        document["idempotency_key"] = args.idempotency_key
    try:
        return msgspec.convert(document, JournalEntryIn)
    except msgspec.ValidationError as exc:
        raise CliError(f"the entry is not valid: {exc}") from None


def cmd_journal_post(args: argparse.Namespace) -> int:
    from adapters.http.ledger_api import entry_json, to_entry
    from billing.postgres.manual_entries import check_manual_entries
    from ledger.postgres.posting import post_entry

    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        with unit_of_work(runtime.connection) as uow:
            book = get_book(uow.conn, book_id)
            body = _entry_body(args, book.base_currency)
            entry = to_entry(body, book.today(utc_today()), None)
            # the rules of POST /v1/journal-entries: no billing documents, no unknown refs
            check_manual_entries(uow.conn, book_id, [entry], name_entry=False)
            posted = post_entry(uow.conn, book_id, entry)
            # The audit row commits with the entry or not at all (money moved: no gap).
            record_cli(
                uow.conn,
                book_id,
                command_name(args),
                0,
                [str(posted.id)] if posted.created else [],
                idempotency_key=args.idempotency_key,
            )
            uow.commit()
    mark_audited(args)
    document = entry_json(posted)
    rows = [
        f"entry {document['id']}  {document['effective_date']}  {document['memo']}"
        + ("" if posted.created else "  (already posted with this idempotency key)")
    ]
    rows += [
        f"  {p['account']:<44} {p['amount']:>16} {p['currency']}" for p in document["postings"]
    ]
    _print(args, {**document, "created": posted.created}, "\n".join(rows))
    return 0


def cmd_recognition_run(args: argparse.Namespace) -> int:
    from adapters.http.revenue_api import recognition_json
    from billing.postgres.recognition import run_recognition

    book_id, today = read_book(args, lambda _conn, _book_id, today: today)
    with open_runtime() as runtime:
        result = run_recognition(runtime.connection, book_id, args.through or today, today)
    document = recognition_json(result)
    recognized = ", ".join(f"{v} {c}" for c, v in document["recognized"].items()) or "nothing"
    _print(
        args,
        {"book_id": str(book_id), **document},
        f"recognized through {document['through']}: {recognized}"
        f" ({document['entries']} entries, {document['lines']} invoice lines)",
    )
    return 0
