"""`collections run|returns|list|show`: direct-debit collection runs and
the bank's returns (adapters.collections.runs), each one unit of work."""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from adapters.cli.billing import _payments_command
from adapters.cli.common import BOOK_HELP, CliError, _date, _print, read_book


def cmd_collections_run(args: argparse.Namespace) -> int:
    from adapters.collections.runs import NothingToCollect, collection_file, create_collection_run
    from adapters.http.direct_debit_api import run_json

    written: list[bytes] = []

    def action(conn: Any, book_id: uuid.UUID, today: date) -> tuple[dict[str, Any], str]:
        try:
            run = create_collection_run(conn, book_id, args.scheme, args.as_of or today, today)
        except NothingToCollect as exc:  # not an error: a scheduled run may find nothing
            return {"run": None, "message": exc.message, **exc.fields}, exc.message
        written.append(collection_file(conn, book_id, str(run["id"]))[0])
        doc = run_json(run)
        rows = [
            f"collection run {doc['id']}  {doc['scheme']}  {doc['file_format']}"
            f"  {doc['transaction_count']} debit(s)  {doc['total']} {doc['currency']}"
            f"  due {doc['collection_date']}"
        ]
        rows += [
            f"  {t['invoice_number'] or t['invoice']}  {t['amount']:>12}  {t['reference']}"
            f"  {t['sequence'] or t['sec_code']}"
            for t in doc["transactions"]
        ]
        rows += [f"  skipped {s['number'] or s['invoice']}: {s['reason']}" for s in doc["skipped"]]
        return doc, "\n".join(rows)

    code = _payments_command(args, action)
    if args.out and written:  # after the commit: the file is the run's stored bytes
        Path(args.out).write_bytes(written[0])
    return code


def cmd_collections_returns(args: argparse.Namespace) -> int:
    from adapters.collections.returns import import_collection_returns, parse_returns
    from adapters.http.direct_debit_api import returns_json

    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc.strerror or exc}") from None
    parse_returns(data)  # a malformed file fails before the database is opened

    def action(conn: Any, book_id: uuid.UUID, today: date) -> tuple[dict[str, Any], str]:
        doc = returns_json(import_collection_returns(conn, book_id, data, today))
        rows = [f"{doc['format']}: {doc['processed']} returned, {doc['duplicates']} already seen"]
        rows += [
            f"  {r['reference']}  {r['code'] or '-'}  {r['amount']} {r['currency']}"
            f"  mandate {r['mandate_status']}" + ("  (seen before)" if r["duplicate"] else "")
            for r in doc["returns"]
        ]
        return doc, "\n".join(rows)

    return _payments_command(args, action)


def cmd_collections_list(args: argparse.Namespace) -> int:
    from adapters.collections.runs import list_collection_runs
    from adapters.http.direct_debit_api import run_summary_json

    book_id, found = read_book(
        args, lambda conn, book, _t: [run_summary_json(r) for r in list_collection_runs(conn, book)]
    )
    text = "\n".join(
        f"{r['id']}  {r['created_on']}  {r['scheme']:<4} {r['transaction_count']:>5}"
        f"  {r['total']:>12} {r['currency']}  {r['status']}  returned {r['returned']}"
        for r in found
    )
    _print(args, {"book_id": str(book_id), "collection_runs": found}, text or "no runs")
    return 0


def cmd_collections_show(args: argparse.Namespace) -> int:
    from adapters.collections.runs import collection_file, get_collection_run
    from adapters.http.direct_debit_api import run_json

    def read(conn: Any, book_id: uuid.UUID, _today: date) -> tuple[dict[str, Any], bytes]:
        return run_json(get_collection_run(conn, book_id, args.run)), collection_file(
            conn, book_id, args.run
        )[0]

    _, (doc, data) = read_book(args, read)
    if args.out:
        Path(args.out).write_bytes(data)
    rows = [f"collection run {doc['id']}  {doc['status']}  {doc['total']} {doc['currency']}"]
    rows += [
        f"  {t['invoice_number'] or t['invoice']}  {t['amount']:>12}  {t['reference']}"
        f"  {t['status']}" + (f" {t['return_code']}" if t["return_code"] else "")
        for t in doc["transactions"]
    ]
    _print(args, doc, "\n".join(rows))
    return 0


def _direct_debit_parsers(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    group = sub.add_parser(
        "collections", help="direct-debit collection runs (SEPA, ACH) and returns"
    ).add_subparsers(dest="collections_command", required=True)
    run = command("run", cmd_collections_run, "collect due invoices by SEPA or ACH", group)
    run.add_argument("--scheme", required=True, choices=["sepa", "ach"], help="sepa or ach")
    run.add_argument("--as-of", type=_date, help="invoices due on or before this day (today)")
    run.add_argument("--out", help="write the pain.008 or NACHA file here")
    run.add_argument("--book", help=BOOK_HELP)
    returns = command(
        "returns",
        cmd_collections_returns,
        "import a pain.002, camt.054 or NACHA returns file",
        group,
    )
    returns.add_argument("file", help="the returns file")
    returns.add_argument("--book", help=BOOK_HELP)
    ls = command("list", cmd_collections_list, "list collection runs", group)
    ls.add_argument("--book", help=BOOK_HELP)
    show = command("show", cmd_collections_show, "a run's transactions (and its file)", group)
    show.add_argument("run", help="collection run id")
    show.add_argument("--out", help="write the run's stored pain.008 or NACHA file here")
    show.add_argument("--book", help=BOOK_HELP)
