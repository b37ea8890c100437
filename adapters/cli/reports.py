"""Exports, financial statements and bank reconciliation commands."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from adapters.cli.common import CliError, _book_id, _print
from adapters.runtime import open_runtime, utc_today
from ledger.postgres.books import get_book
from ledger.postgres.sealer import seal_pending
from ledger.postgres.unit_of_work import unit_of_work


def cmd_export_beancount(args: argparse.Namespace) -> int:
    from adapters.exports.beancount import ExportRange, begin_snapshot, export_beancount
    from adapters.exports.errors import InvalidRange

    if args.date_from and args.date_to and args.date_to < args.date_from:
        raise InvalidRange(f"the range ends ({args.date_to}) before it starts ({args.date_from})")
    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        seal_pending(runtime.connection, book_id, wait=True)
        out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout  # noqa: SIM115
        try:
            with runtime.connection() as conn:
                begin_snapshot(conn)
                for chunk in export_beancount(
                    conn, book_id, ExportRange(args.date_from, args.date_to)
                ):
                    out.write(chunk)
                conn.rollback()
        finally:
            if args.out:
                out.close()
    if args.out:
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def cmd_export_journal(args: argparse.Namespace) -> int:
    from adapters.exports import journal_feed

    fmt = journal_feed.check_format(args.format)
    since = journal_feed.parse_cursor(args.since)
    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        batch = journal_feed.seal_then_build(runtime.connection, book_id, fmt, since, args.limit)
    manifest = json.dumps(batch.manifest(book_id), indent=2)
    if args.out:
        with open(args.out, "wb") as handle:
            handle.write(batch.body)
        print(manifest)
    else:
        sys.stdout.buffer.write(batch.body)
        sys.stdout.flush()
        print(manifest, file=sys.stderr)
    return 0


def _statement_rows(sections: dict[str, Any], keys: Sequence[tuple[str, str]]) -> list[str]:
    rows: list[str] = []
    for currency, block in sections.items():
        rows.append(f"[{currency}]")
        for key, label in keys:
            value = block[key]
            if isinstance(value, list):
                rows.append(f"  {label}")
                rows += [f"    {line['account']:<44} {line['amount']:>16}" for line in value]
            else:
                rows.append(f"  {label:<46} {value:>16}")
    return rows


def cmd_balance_sheet(args: argparse.Namespace) -> int:
    from adapters.exports.statements import balance_sheet

    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        with runtime.connection() as conn:
            as_of = args.as_of or get_book(conn, book_id).today(utc_today())
            document = balance_sheet(conn, book_id, as_of, args.as_recorded_at)
    keys = [
        ("assets", "Assets"),
        ("total_assets", "Total assets"),
        ("liabilities", "Liabilities"),
        ("total_liabilities", "Total liabilities"),
        ("equity", "Equity"),
        ("current_earnings", "Current earnings"),
        ("total_equity", "Total equity"),
        ("total_liabilities_and_equity", "Total liabilities and equity"),
    ]
    title = f"Balance sheet as of {as_of}"
    _print(args, document, "\n".join([title, *_statement_rows(document["currencies"], keys)]))
    return 0


def cmd_income_statement(args: argparse.Namespace) -> int:
    from adapters.exports.statements import income_statement

    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        with runtime.connection() as conn:
            end = args.date_to or get_book(conn, book_id).today(utc_today())
            start = args.date_from or end.replace(month=1, day=1)
            document = income_statement(
                conn, book_id, start, end, by=args.by, recorded_at=args.as_recorded_at
            )
    keys = [
        ("income", "Income"),
        ("total_income", "Total income"),
        ("expenses", "Expenses"),
        ("total_expenses", "Total expenses"),
        ("net_income", "Net income"),
    ]
    rows = [f"Income statement {start} .. {end}", *_statement_rows(document["currencies"], keys)]
    for period in document.get("periods", []):
        rows.append(f"-- {period['from']} .. {period['to']}")
        rows += _statement_rows(period["currencies"], keys)
    _print(args, document, "\n".join(rows))
    return 0


def _reconciliation_output(args: argparse.Namespace, document: dict[str, Any], text: str) -> int:
    _print(args, document, text)
    return 0


def cmd_statements_import(args: argparse.Namespace) -> int:
    from pathlib import Path

    from adapters.reconciliation.statements import (
        csv_mapping_from_json,
        get_statement,
        import_statement,
        load_csv_mapping,
    )

    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc.strerror}") from None
    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        with unit_of_work(runtime.connection) as uow:
            mapping = None
            if args.csv_mapping:
                given = args.csv_mapping
                if given.lstrip().startswith("{") or Path(given).is_file():
                    raw = given if given.lstrip().startswith("{") else Path(given).read_text()
                    try:
                        mapping = csv_mapping_from_json(json.loads(raw))
                    except json.JSONDecodeError as exc:
                        raise CliError(f"--csv-mapping is not valid JSON: {exc}") from None
                else:
                    mapping = load_csv_mapping(uow.conn, book_id, given)
            imported = import_statement(
                uow.conn,
                book_id,
                account_ref=args.account,
                data=data,
                format=args.statement_format,
                csv_mapping=mapping,
                bank_account=args.bank_account,
                filename=Path(args.file).name,
            )
            statements = []
            for item in imported:
                summary = get_statement(uow.conn, book_id, str(item.id), with_lines=False)
                summary.update(
                    created=item.created,
                    new_lines=item.new_lines,
                    duplicate_lines=item.duplicate_lines,
                )
                statements.append(summary)
            uow.commit()
    text = "\n".join(
        f"statement {s['id']} ({s['format']}, {s['currency']}): {s['new_lines']} new line(s), "
        f"{s['duplicate_lines']} already imported; opening {s['opening_balance']}, "
        f"closing {s['closing_balance']}"
        for s in statements
    )
    return _reconciliation_output(args, {"book_id": str(book_id), "statements": statements}, text)


def cmd_reconcile_auto_match(args: argparse.Namespace) -> int:
    from adapters.reconciliation.store import run_auto_match

    if not (args.account or args.statement):
        raise CliError("name --account or --statement")
    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        with unit_of_work(runtime.connection) as uow:
            outcome = run_auto_match(
                uow.conn, book_id, account_ref=args.account, statement_ref=args.statement
            )
            uow.commit()
    document = outcome.json()
    rules = ", ".join(f"{rule} {count}" for rule, count in document["by_rule"].items())
    text = (
        f"{document['account']}: matched {document['matched_lines']} of "
        f"{document['lines_considered']} open statement line(s) in {document['matched']} "
        f"match(es) ({rules or 'none'}); {document['unmatched_lines']} left unmatched"
    )
    return _reconciliation_output(args, {"book_id": str(book_id), **document}, text)


def cmd_reconciliation_report(args: argparse.Namespace) -> int:
    from adapters.reconciliation.store import reconciliation_report

    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        with runtime.connection() as conn:
            as_of = args.as_of or get_book(conn, book_id).today(utc_today())
            report = reconciliation_report(conn, book_id, args.account, as_of, args.currency)
            conn.rollback()
    rows = [
        f"Bank reconciliation of {report['account']} ({report['currency']}) as of "
        f"{report['as_of']}",
        f"  statement balance            {report['statement_balance']}",
        f"  + in book, not on statement  {report['outstanding_postings']['total']}"
        f"  ({report['outstanding_postings']['count']} item(s))",
        f"  = adjusted statement balance {report['adjusted_statement_balance']}",
        f"  book balance                 {report['book_balance']}",
        f"  + on statement, not in book  {report['outstanding_lines']['total']}"
        f"  ({report['outstanding_lines']['count']} item(s))",
        f"  = adjusted book balance      {report['adjusted_book_balance']}",
        f"  unexplained difference       {report['unexplained_difference']}",
        "  reconciled" if report["reconciled"] else "  NOT reconciled",
    ]
    return _reconciliation_output(args, {"book_id": str(book_id), **report}, "\n".join(rows))
