"""Exports, financial statements and bank reconciliation commands."""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

import msgspec
import psycopg

from adapters.cli.common import CliError, _book_id, _check_dates, _print, read_book
from adapters.input_limits import decode_json
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
        _check_dates(runtime, book_id, args)
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
        _check_dates(runtime, book_id, args)
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
        _check_dates(runtime, book_id, args)
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
        account_time_zone,
        csv_mapping_from_json,
        get_statement,
        load_csv_mapping,
        parse_upload,
        store_statements,
        upload_account,
    )

    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc.strerror}") from None
    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        # Read what the parse needs, then parse with no connection held.
        with runtime.connection() as conn:
            account = upload_account(conn, book_id, args.account)
            mapping = None
            if args.csv_mapping:
                given = args.csv_mapping
                if given.lstrip().startswith("{") or Path(given).is_file():
                    raw = given if given.lstrip().startswith("{") else Path(given).read_text()
                    try:
                        mapping = csv_mapping_from_json(decode_json(raw, "--csv-mapping"))
                    except msgspec.DecodeError as exc:
                        raise CliError(f"--csv-mapping is not valid JSON: {exc}") from None
                else:
                    mapping = load_csv_mapping(conn, book_id, given)
            conn.rollback()
        parsed = parse_upload(
            data,
            format=args.statement_format,
            csv_mapping=mapping,
            time_zone=account_time_zone(account, args.time_zone),
            filename=Path(args.file).name,
        )
        with unit_of_work(runtime.connection) as uow:
            imported = store_statements(
                uow.conn,
                book_id,
                account_ref=args.account,
                parsed=parsed,
                bank_account=args.bank_account,
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
        _check_dates(runtime, book_id, args)
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


def _as_of_report(
    args: argparse.Namespace,
    build: Callable[[psycopg.Connection, uuid.UUID, date], dict[str, Any]],
) -> tuple[uuid.UUID, dict[str, Any]]:
    """`build(conn, book_id, day)` for the day `--as-of` names, else the book's today."""
    return read_book(args, lambda conn, book_id, today: build(conn, book_id, args.as_of or today))


def cmd_ar_aging(args: argparse.Namespace) -> int:
    from adapters.http.revenue_api import ar_aging_json
    from billing.postgres.reports import ar_aging

    book_id, document = _as_of_report(
        args, lambda conn, book_id, day: ar_aging_json(day, ar_aging(conn, book_id, day))
    )
    rows = [f"AR aging as of {document['as_of']}"]
    for currency, buckets in document["totals"].items():
        rows.append(f"[{currency}] " + "  ".join(f"{b} {v}" for b, v in buckets.items()))
    rows += [
        f"  {i['number']:<16} {i['customer_name'][:32]:<32} due {i['due_date'] or '-':<10}"
        f" {i['amount_due']:>14} {i['currency']}  {i['bucket']}"
        for i in document["invoices"]
    ]
    _print(args, {"book_id": str(book_id), **document}, "\n".join(rows))
    return 0


def cmd_deferred_revenue(args: argparse.Namespace) -> int:
    from adapters.http.revenue_api import deferred_revenue_json
    from billing.postgres.reports import deferred_revenue

    book_id, document = _as_of_report(
        args,
        lambda conn, book_id, day: deferred_revenue_json(day, deferred_revenue(conn, book_id, day)),
    )
    rows = [f"Deferred revenue as of {document['as_of']}"]
    rows += [f"  balance {b['balance']:>16} {b['currency']}" for b in document["balances"]]
    rows += ["  to be recognized by revenue account:"] if document["by_revenue_account"] else []
    rows += [
        f"    {r['account']:<40} {r['amount']:>16} {r['currency']}"
        for r in document["by_revenue_account"]
    ]
    rows += ["  to be recognized by month:"] if document["waterfall"] else []
    rows += [
        f"    {r['month']:<40} {r['amount']:>16} {r['currency']}" for r in document["waterfall"]
    ]
    _print(args, {"book_id": str(book_id), **document}, "\n".join(rows))
    return 0


def cmd_revenue(args: argparse.Namespace) -> int:
    from adapters.http.revenue_api import revenue_json
    from billing.postgres.reports import revenue

    def read(conn: psycopg.Connection, book_id: uuid.UUID, today: date) -> dict[str, Any]:
        end = args.date_to or today
        start = args.date_from or end.replace(month=1, day=1)
        if end < start:
            raise CliError(f"the range ends ({end}) before it starts ({start})")
        return revenue_json(start, end, revenue(conn, book_id, start, end))

    book_id, document = read_book(args, read)
    rows = [f"Revenue {document['from']} .. {document['to']}"]
    rows += [
        f"  {r['month']}  {r['account']:<32} {r['product'] or '-':<28} {r['amount']:>14}"
        f" {r['currency']}"
        for r in document["lines"]
    ]
    _print(args, {"book_id": str(book_id), **document}, "\n".join(rows))
    return 0


def cmd_mrr(args: argparse.Namespace) -> int:
    from adapters.http.metrics_api import fx_totals, month_range, mrr_json
    from billing.postgres.fx import has_rates
    from billing.postgres.metrics import mrr

    def read(conn: psycopg.Connection, book_id: uuid.UUID, today: date) -> dict[str, Any]:
        try:
            first, last = month_range(args.date_from, args.date_to, today)
        except ValueError as exc:
            raise CliError(str(exc)) from None
        report = mrr(conn, book_id, first, last)
        document = mrr_json(first, last, report)
        if has_rates(conn, book_id):
            document.update(fx_totals(conn, book_id, report))
        return document

    book_id, document = read_book(args, read)
    names = ("start", "new", "expansion", "contraction", "churn", "reactivation", "end", "arr")
    rows = [f"MRR {document['from']} .. {document['to']}"]
    rows.append(f"  {'month':<8} {'cur':<4}" + "".join(f" {n:>13}" for n in names))
    rows += [
        f"  {m['month']:<8} {m['currency']:<4}" + "".join(f" {m[n]:>13}" for n in names)
        for m in document["months"]
    ]
    rows += [
        f"  {t['month']:<8} {t['currency']:<4}"
        + "".join(f" {t[n]:>13}" for n in names)
        + f"  (all currencies at month-end rates; fx effect {t['fx_effect']})"
        for t in document.get("totals", [])
    ]
    rows += [f"  {x['currency']}: {x['formula']}: {x['ltv'] or '-'}" for x in document["ltv"]]
    _print(args, {"book_id": str(book_id), **document}, "\n".join(rows))
    return 0


def cmd_collections(args: argparse.Namespace) -> int:
    from adapters.http.metrics_api import collections_json, date_range
    from billing.postgres.collections import collections

    def read(conn: psycopg.Connection, book_id: uuid.UUID, today: date) -> dict[str, Any]:
        try:
            first, last = date_range(args.date_from, args.date_to, today)
        except ValueError as exc:
            raise CliError(str(exc)) from None
        return collections_json(collections(conn, book_id, first, last))

    book_id, document = read_book(args, read)
    rows = [f"Collections {document['from']} .. {document['to']}"]
    rows += [
        f"  [{c['currency']}] DSO {c['dso']} days  CEI {c['cei'] or '-'}  paid on time"
        f" {c['paid_on_time']}/{c['invoices_settled']}  AR {c['opening_ar']} -> {c['closing_ar']}"
        for c in document["currencies"]
    ]
    rows += [
        f"  {c['name'][:32]:<32} {c['currency']} {c['average_days_late']:>8} days late on average"
        for c in document["customers"]
    ]
    _print(args, {"book_id": str(book_id), **document}, "\n".join(rows))
    return 0


def cmd_cash_forecast(args: argparse.Namespace) -> int:
    from adapters.http.forecasts_api import check_weeks, forecast_json
    from billing.postgres.forecast import cash_forecast

    def read(conn: psycopg.Connection, book_id: uuid.UUID, today: date) -> dict[str, Any]:
        try:
            weeks = check_weeks(args.weeks)
        except ValueError as exc:
            raise CliError(str(exc)) from None
        return forecast_json(today, cash_forecast(conn, book_id, today, weeks))

    book_id, document = read_book(args, read)
    rows = [f"Cash forecast after {document['as_of']}"]
    rows += [
        f"  {w['start']} {w['currency']} open {w['open_invoices']:>12} scheduled"
        f" {w['scheduled_billing']:>12} failures {w['expected_failures']:>10} net {w['net']:>12}"
        for w in document["weeks"]
    ]
    rows += [f"  beyond: {v} {c}" for c, v in document["beyond"].items()]
    _print(args, {"book_id": str(book_id), **document}, "\n".join(rows))
    return 0
