"""`activebilling`: the command line (API.md).

Every command that prints a result takes `--format json` and then prints one
JSON document with amounts as strings. Errors go to stderr with exit code 2
(bad input) or 1 (`verify` found differences).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

from adapters.cli.billing import _billing_parsers, _payment_parsers, _subscription_parsers
from adapters.cli.common import CliError, _date, _timestamp
from adapters.cli.ledger import (
    cmd_books_create,
    cmd_books_list,
    cmd_db_upgrade,
    cmd_demo,
    cmd_keys_create,
    cmd_serve,
    cmd_trial_balance,
    cmd_verify,
)
from adapters.cli.reports import (
    cmd_balance_sheet,
    cmd_export_beancount,
    cmd_export_journal,
    cmd_income_statement,
    cmd_reconcile_auto_match,
    cmd_reconciliation_report,
    cmd_statements_import,
)
from ledger.errors import LedgerError


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
        p.add_argument("--format", choices=["table", "json"], default="table")
        return p

    serve = command("serve", cmd_serve, "run the HTTP API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=2)
    serve.add_argument("--log-level", default="warning")
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
    create.add_argument("--name", required=True)
    create.add_argument("--currency", required=True)
    create.add_argument("--simulated-clock", type=_date, default=None, metavar="YYYY-MM-DD")
    command("list", cmd_books_list, "list books", books)

    keys = sub.add_parser("keys", help="API keys").add_subparsers(
        dest="keys_command", required=True
    )
    key = command("create", cmd_keys_create, "create an API key", keys)
    key.add_argument("--book")
    key.add_argument("--role", required=True)
    key.add_argument("--label")

    report = sub.add_parser("report", help="reports").add_subparsers(
        dest="report_command", required=True
    )
    tb = command("trial-balance", cmd_trial_balance, "trial balance from the ledger", report)
    tb.add_argument("--book")
    tb.add_argument("--as-of", type=_date, default=None)
    bs = command("balance-sheet", cmd_balance_sheet, "balance sheet as of a date", report)
    bs.add_argument("--book")
    bs.add_argument("--as-of", type=_date, default=None)
    bs.add_argument("--as-recorded-at", type=_timestamp, default=None)
    inc = command("income-statement", cmd_income_statement, "income statement", report)
    inc.add_argument("--book")
    inc.add_argument("--from", dest="date_from", type=_date, default=None)
    inc.add_argument("--to", dest="date_to", type=_date, default=None)
    inc.add_argument("--by", choices=["month"], default=None)
    inc.add_argument("--as-recorded-at", type=_timestamp, default=None)

    export = sub.add_parser("export", help="exports (Beancount, ERP journal feed)")
    exports = export.add_subparsers(dest="export_command", required=True)
    bean = exports.add_parser("beancount", help="the book as a Beancount file")
    bean.set_defaults(handler=cmd_export_beancount)
    bean.add_argument("--book")
    bean.add_argument("--from", dest="date_from", type=_date, default=None)
    bean.add_argument("--to", dest="date_to", type=_date, default=None)
    bean.add_argument("--out", help="file to write (default: stdout)")
    feed = exports.add_parser("journal", help="the ERP journal feed after a cursor")
    feed.set_defaults(handler=cmd_export_journal)
    feed.add_argument("--format", required=True, help="jsonl, netsuite, quickbooks, xero or sap")
    feed.add_argument("--book")
    feed.add_argument("--since", default=None, help="the previous batch's next_cursor")
    feed.add_argument("--limit", type=int, default=1000)
    feed.add_argument("--out", help="file to write (the manifest goes to stdout)")

    statements = sub.add_parser("statements", help="bank statements").add_subparsers(
        dest="statements_command", required=True
    )
    st_import = command(
        "import", cmd_statements_import, "import a camt.053, OFX or CSV statement", statements
    )
    st_import.add_argument("file")
    st_import.add_argument("--account", required=True, help="ledger account name or id")
    st_import.add_argument("--book")
    st_import.add_argument(
        "--statement-format", dest="statement_format", choices=["camt.053", "ofx", "csv"]
    )
    st_import.add_argument("--csv-mapping", help="saved mapping id or name, JSON, or a JSON file")
    st_import.add_argument("--bank-account", help="pick one bank account of a multi-account file")
    reconcile = sub.add_parser("reconcile", help="bank reconciliation").add_subparsers(
        dest="reconcile_command", required=True
    )
    auto = command("auto-match", cmd_reconcile_auto_match, "auto-match statement lines", reconcile)
    auto.add_argument("--account")
    auto.add_argument("--statement")
    auto.add_argument("--book")
    rec = command(
        "reconciliation", cmd_reconciliation_report, "bank reconciliation as of a date", report
    )
    rec.add_argument("--account", required=True)
    rec.add_argument("--as-of", type=_date, default=None)
    rec.add_argument("--currency")
    rec.add_argument("--book")

    _billing_parsers(sub, command)
    _subscription_parsers(sub, command)
    _payment_parsers(sub, command)

    demo = command("demo", cmd_demo, "simulate months of a mixed business on a new book")
    demo.add_argument("--customers", type=int, default=20)
    demo.add_argument("--months", type=int, default=12)
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--start", type=_date, default=date(2026, 1, 1), metavar="YYYY-MM-DD")

    verify = command("verify", cmd_verify, "re-check every invariant of a book")
    verify.add_argument("--book")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        code: int = args.handler(args)
        return code
    except (CliError, LedgerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
