"""`activebilling`: the command line (API.md).

Every command that prints a result takes `--format json` and then prints one
JSON document with amounts as strings. Errors go to stderr with exit code 2
(bad input) or 1 (`verify` found differences).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

import psycopg

from adapters.cli.audit import audit_parsers, record_after
from adapters.cli.billing import _billing_parsers, _payment_parsers, _subscription_parsers
from adapters.cli.collection import _collection_parsers
from adapters.cli.common import BOOK_HELP, CliError, _date, _timestamp
from adapters.cli.crm import crm_parsers
from adapters.cli.direct_debit import _direct_debit_parsers
from adapters.cli.dunning import _dunning_parsers
from adapters.cli.fx import _fx_parsers
from adapters.cli.healthcare import _healthcare_parsers
from adapters.cli.journal import cmd_journal_post, cmd_recognition_run
from adapters.cli.ledger import (
    DEFAULT_SERVER,
    DEFAULT_WORKERS,
    cmd_backup,
    cmd_books_create,
    cmd_books_list,
    cmd_books_settings,
    cmd_db_upgrade,
    cmd_demo,
    cmd_keys_create,
    cmd_keys_list,
    cmd_keys_revoke,
    cmd_keys_rotate,
    cmd_restore,
    cmd_serve,
    cmd_trial_balance,
    cmd_verify,
)
from adapters.cli.reports import (
    cmd_ar_aging,
    cmd_balance_sheet,
    cmd_cash_forecast,
    cmd_collections,
    cmd_deferred_revenue,
    cmd_export_beancount,
    cmd_export_journal,
    cmd_income_statement,
    cmd_mrr,
    cmd_reconcile_auto_match,
    cmd_reconciliation_report,
    cmd_revenue,
    cmd_statements_import,
)
from adapters.cli.services import _services_parsers
from adapters.cli.services_work import services_work_parsers
from adapters.cli.telecom import _telecom_parsers
from adapters.cli.usage import usage_parsers
from ledger.errors import LedgerError

AS_OF_HELP = "the day to report on, YYYY-MM-DD (default: the book's today)"
RECORDED_HELP = "as the ledger stood at this moment (ISO 8601), before later corrections"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="activebilling", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(
        name: str,
        handler: Callable[[argparse.Namespace], int],
        helptext: str,
        parent: Any = sub,
    ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, help=helptext)
        p.set_defaults(handler=handler)
        p.add_argument(
            "--format",
            choices=["table", "json"],
            default="table",
            help="table for people (default) or one JSON document, amounts as strings",
        )
        return p

    serve = command("serve", cmd_serve, "run the HTTP API")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (8000)")
    serve.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        help=f"worker processes (half the CPUs, at least 1: {DEFAULT_WORKERS} here)",
    )
    serve.add_argument(
        "--log-level", default="warning", help="server log level: debug, info, warning (default)"
    )
    serve.add_argument(
        "--server",
        choices=["granian", "uvicorn"],
        default=DEFAULT_SERVER,
        help="HTTP stack: uvicorn with httptools (default) or granian (Rust HTTP; same app)",
    )
    serve.add_argument(
        "--bootstrap",
        action="store_true",
        help="create a book on first start and print a fresh admin API key",
    )

    db = sub.add_parser("db", help="database administration").add_subparsers(
        dest="db_command", required=True
    )
    command("upgrade", cmd_db_upgrade, "apply Alembic migrations", db)

    books = sub.add_parser("books", help="books (legal entities)").add_subparsers(
        dest="books_command", required=True
    )
    create = command("create", cmd_books_create, "create a book with the default chart", books)
    create.add_argument("--name", required=True, help="the legal entity's name")
    create.add_argument("--currency", required=True, help="base (reporting) currency, e.g. USD")
    create.add_argument(
        "--simulated-clock",
        type=_date,
        default=None,
        metavar="YYYY-MM-DD",
        help="run the book on a simulated clock starting that day (moves only when told)",
    )
    command("list", cmd_books_list, "list books", books)
    book_settings = command(
        "settings", cmd_books_settings, "show or change the book's settings", books
    )
    book_settings.add_argument("--book", help="book id (may be left out with one book)")
    book_settings.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="a setting to change (VALUE as JSON when it parses, else text; null removes;"
        " KEY may be dotted: address.city=Bern); repeatable",
    )

    keys = sub.add_parser("keys", help="API keys").add_subparsers(
        dest="keys_command", required=True
    )
    key = command("create", cmd_keys_create, "create an API key", keys)
    key.add_argument("--book", help=BOOK_HELP)
    key.add_argument("--role", required=True, help="admin, operator, accountant, auditor or erp")
    key.add_argument("--label", help="a note on what the key is for")
    keys_list = command("list", cmd_keys_list, "list API keys (never the keys themselves)", keys)
    keys_list.add_argument("--book", help=BOOK_HELP)
    revoke = command("revoke", cmd_keys_revoke, "revoke an API key: it is refused from now", keys)
    revoke.add_argument("key_id", help="the key's id (from keys list)")
    revoke.add_argument("--book", help=BOOK_HELP)
    rotate = command(
        "rotate",
        cmd_keys_rotate,
        "replace an API key by a new one of the same role and label (shown once)",
        keys,
    )
    rotate.add_argument("key_id", help="the key's id (from keys list)")
    rotate.add_argument("--book", help=BOOK_HELP)
    rotate.add_argument(
        "--grace-seconds",
        type=int,
        default=0,
        help="seconds the old key keeps working, to switch its callers over (0: refused now)",
    )
    audit_parsers(sub, command)

    report = sub.add_parser("report", help="reports").add_subparsers(
        dest="report_command", required=True
    )
    tb = command("trial-balance", cmd_trial_balance, "trial balance from the ledger", report)
    tb.add_argument("--book", help=BOOK_HELP)
    tb.add_argument("--as-of", type=_date, default=None, help=AS_OF_HELP)
    bs = command("balance-sheet", cmd_balance_sheet, "balance sheet as of a date", report)
    bs.add_argument("--book", help=BOOK_HELP)
    bs.add_argument("--as-of", type=_date, default=None, help=AS_OF_HELP)
    bs.add_argument("--as-recorded-at", type=_timestamp, default=None, help=RECORDED_HELP)
    inc = command("income-statement", cmd_income_statement, "income statement", report)
    inc.add_argument("--book", help=BOOK_HELP)
    inc.add_argument(
        "--from", dest="date_from", type=_date, default=None, help="first day (default: 1 Jan)"
    )
    inc.add_argument(
        "--to", dest="date_to", type=_date, default=None, help="last day (default: today)"
    )
    inc.add_argument("--by", choices=["month"], default=None, help="also one column per month")
    inc.add_argument("--as-recorded-at", type=_timestamp, default=None, help=RECORDED_HELP)

    aging = command("ar-aging", cmd_ar_aging, "open invoices by days past due", report)
    aging.add_argument("--book", help=BOOK_HELP)
    aging.add_argument("--as-of", type=_date, default=None, help=AS_OF_HELP)
    deferred = command(
        "deferred-revenue", cmd_deferred_revenue, "deferred revenue and when it is earned", report
    )
    deferred.add_argument("--book", help=BOOK_HELP)
    deferred.add_argument("--as-of", type=_date, default=None, help=AS_OF_HELP)
    revenue = command(
        "revenue", cmd_revenue, "recognized revenue by month, account and product", report
    )
    revenue.add_argument("--book", help=BOOK_HELP)
    revenue.add_argument(
        "--from", dest="date_from", type=_date, default=None, help="first day (default: 1 Jan)"
    )
    revenue.add_argument(
        "--to", dest="date_to", type=_date, default=None, help="last day (default: today)"
    )
    mrr = command("mrr", cmd_mrr, "MRR and ARR by month with their movements", report)
    mrr.add_argument("--book", help=BOOK_HELP)
    mrr.add_argument(
        "--from", dest="date_from", default=None, help="first month, YYYY-MM (default: a year ago)"
    )
    mrr.add_argument("--to", dest="date_to", default=None, help="last month (default: this one)")
    coll = command(
        "collections", cmd_collections, "DSO, CEI, days late, paid on time, aging trend", report
    )
    coll.add_argument("--book", help=BOOK_HELP)
    coll.add_argument(
        "--from",
        dest="date_from",
        type=_date,
        default=None,
        help="first day (default: the first of the month two months ago)",
    )
    coll.add_argument(
        "--to", dest="date_to", type=_date, default=None, help="last day (default: today)"
    )
    cash = command(
        "cash-forecast",
        cmd_cash_forecast,
        "expected receipts by week (GET /v1/forecasts/cash)",
        report,
    )
    cash.add_argument("--book", help=BOOK_HELP)
    cash.add_argument("--weeks", type=int, default=13, help="how many weeks (1-104, default 13)")

    journal = sub.add_parser(
        "journal-entries", help="manual journal entries (POST /v1/journal-entries)"
    ).add_subparsers(dest="journal_command", required=True)
    post = command("post", cmd_journal_post, "post a balanced manual journal entry", journal)
    post.add_argument(
        "posting",
        nargs="*",
        metavar="ACCOUNT=AMOUNT [CURRENCY]",
        help="one per posting, quoted, e.g. 'Assets:Bank:Operating=100.00 USD'; debits"
        " positive, credits negative; the currency defaults to the book's",
    )
    post.add_argument(
        "--file", help="the entry as POST /v1/journal-entries' JSON body ('-': standard input)"
    )
    post.add_argument("--date", type=_date, default=None, help="effective date (default: today)")
    post.add_argument("--memo", help="what the entry records")
    post.add_argument("--idempotency-key", help="post it once however often the command is run")
    post.add_argument("--book", help=BOOK_HELP)

    recognition = sub.add_parser("recognition", help="revenue recognition").add_subparsers(
        dest="recognition_command", required=True
    )
    rec_run = command(
        "run", cmd_recognition_run, "recognize revenue earned through a date", recognition
    )
    rec_run.add_argument(
        "--through", type=_date, default=None, help="last day earned (default: the book's today)"
    )
    rec_run.add_argument("--book", help=BOOK_HELP)

    export = sub.add_parser("export", help="exports (Beancount, ERP journal feed)")
    exports = export.add_subparsers(dest="export_command", required=True)
    bean = exports.add_parser("beancount", help="the book as a Beancount file")
    bean.set_defaults(handler=cmd_export_beancount)
    bean.add_argument("--book", help=BOOK_HELP)
    bean.add_argument(
        "--from", dest="date_from", type=_date, default=None, help="first day of entries"
    )
    bean.add_argument("--to", dest="date_to", type=_date, default=None, help="last day of entries")
    bean.add_argument("--out", help="file to write (default: stdout)")
    feed = exports.add_parser("journal", help="the ERP journal feed after a cursor")
    feed.set_defaults(handler=cmd_export_journal)
    feed.add_argument("--format", required=True, help="jsonl, netsuite, quickbooks, xero or sap")
    feed.add_argument("--book", help=BOOK_HELP)
    feed.add_argument("--since", default=None, help="the previous batch's next_cursor")
    feed.add_argument("--limit", type=int, default=1000, help="entries per batch (1000)")
    feed.add_argument("--out", help="file to write (the manifest goes to stdout)")

    statements = sub.add_parser("statements", help="bank statements").add_subparsers(
        dest="statements_command", required=True
    )
    st_import = command(
        "import",
        cmd_statements_import,
        "import a camt.053, OFX, MT940 or CSV statement, or a ZIP of them",
        statements,
    )
    st_import.add_argument("file", help="the statement file")
    st_import.add_argument("--account", required=True, help="ledger account name or id")
    st_import.add_argument("--book", help=BOOK_HELP)
    st_import.add_argument(
        "--statement-format",
        dest="statement_format",
        choices=["camt.053", "ofx", "mt940", "csv"],
        help="the file's format (default: detected)",
    )
    st_import.add_argument("--csv-mapping", help="saved mapping id or name, JSON, or a JSON file")
    st_import.add_argument("--bank-account", help="pick one bank account of a multi-account file")
    st_import.add_argument(
        "--time-zone",
        dest="time_zone",
        help="the bank account's IANA time zone (default: the account's metadata time_zone, "
        "else UTC)",
    )
    reconcile = sub.add_parser("reconcile", help="bank reconciliation").add_subparsers(
        dest="reconcile_command", required=True
    )
    auto = command("auto-match", cmd_reconcile_auto_match, "auto-match statement lines", reconcile)
    auto.add_argument("--account", help="ledger account name or id")
    auto.add_argument("--statement", help="only this bank statement's lines (id)")
    auto.add_argument("--book", help=BOOK_HELP)
    rec = command(
        "reconciliation", cmd_reconciliation_report, "bank reconciliation as of a date", report
    )
    rec.add_argument("--account", required=True, help="ledger account name or id")
    rec.add_argument("--as-of", type=_date, default=None, help=AS_OF_HELP)
    rec.add_argument("--currency", help="the account's currency, if it holds several")
    rec.add_argument("--book", help=BOOK_HELP)

    _billing_parsers(sub, command)
    _subscription_parsers(sub, command)
    _payment_parsers(sub, command)
    _telecom_parsers(sub, command)
    services_work_parsers(sub, command, report, _services_parsers(sub, command))
    _fx_parsers(sub, command)
    usage_parsers(sub, command)
    crm_parsers(sub, command)
    _healthcare_parsers(sub, command, report)
    _collection_parsers(sub, command)
    _dunning_parsers(sub, command)
    _direct_debit_parsers(sub, command)

    demo = command("demo", cmd_demo, "simulate months of a mixed business on a new book")
    demo.add_argument("--customers", type=int, default=20, help="how many customers (20)")
    demo.add_argument("--months", type=int, default=12, help="how many months (12)")
    demo.add_argument(
        "--seed", type=int, default=1, help="random seed: the same seed gives the same book (1)"
    )
    demo.add_argument(
        "--start",
        type=_date,
        default=date(2026, 1, 1),
        metavar="YYYY-MM-DD",
        help="first day of the simulation (2026-01-01)",
    )

    verify = command("verify", cmd_verify, "re-check every invariant of a book")
    verify.add_argument("--book", help=BOOK_HELP)
    backup = command("backup", cmd_backup, "write the whole database as a pg_dump archive")
    backup.add_argument("--out", required=True, help="the archive file to write")
    restore = command("restore", cmd_restore, "load an archive into a database with no book")
    restore.add_argument("file", help="an archive written by `activebilling backup`")
    return parser


# `activebilling … | head`: the reader left. Exit as a program killed by SIGPIPE
# would (128 + 13), quietly, on every command alike.
BROKEN_PIPE_EXIT = 141


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    code = _run(args)
    record_after(args, code)  # a mutating command's audit row, if it wrote none itself
    return code


def _run(args: argparse.Namespace) -> int:
    try:
        code: int = args.handler(args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # Python flushes stdout again at exit; point it at /dev/null so that
        # flush cannot fail a second time and print a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return BROKEN_PIPE_EXIT
    except (CliError, LedgerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except psycopg.OperationalError as exc:
        print(f"error: the database is unavailable: {exc}".rstrip(), file=sys.stderr)
        return 2
    except psycopg.Error as exc:
        detail = exc.diag.message_primary or str(exc)
        print(f"error: the database refused this: {detail}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. --out names a file that cannot be written
        print(f"error: {exc.filename or ''}: {exc.strerror or exc}".lstrip(": "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
