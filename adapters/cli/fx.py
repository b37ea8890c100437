"""`activebilling fx …`: import rates, show the rate in force, revalue receivables."""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from adapters.cli.billing import _payments_command
from adapters.cli.common import BOOK_HELP, CliError, _date


def cmd_fx_import(args: argparse.Namespace) -> int:
    from adapters.fx_rates import parse_rates_file
    from adapters.http.fx_api import import_summary
    from billing.postgres.fx import store_rates

    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc.strerror}") from None
    try:
        parsed = parse_rates_file(data)
    except UnicodeDecodeError:
        raise CliError(f"{args.file} is not UTF-8 text") from None

    def action(conn: Any, book_id: uuid.UUID, _today: date) -> tuple[dict[str, Any], str]:
        store_rates(conn, book_id, list(parsed.rates))
        doc = import_summary(list(parsed.rates), list(parsed.skipped), "file")
        text = f"imported {doc['imported']} rates, {doc['first_date']} to {doc['last_date']}"
        if parsed.skipped:
            text += f" (skipped columns: {', '.join(parsed.skipped)})"
        return doc, text

    return _payments_command(args, action)


def cmd_fx_rate(args: argparse.Namespace) -> int:
    from adapters.http.fx_api import resolved_json
    from billing.postgres.fx import rate_in_force
    from ledger.money import check_currency

    base, quote = check_currency(args.base.upper()), check_currency(args.quote.upper())

    def action(conn: Any, book_id: uuid.UUID, today: date) -> tuple[dict[str, Any], str]:
        found = rate_in_force(conn, book_id, base, quote, args.date or today)
        doc = resolved_json(found)
        return doc, f"1 {base} = {found.rate} {quote} on {found.on} ({found.how})"

    return _payments_command(args, action)


def cmd_fx_revalue(args: argparse.Namespace) -> int:
    from adapters.http.fx_api import revaluation_json
    from billing.postgres.fx import revalue

    def action(conn: Any, book_id: uuid.UUID, today: date) -> tuple[dict[str, Any], str]:
        done = revalue(conn, book_id, args.as_of or today)
        doc = revaluation_json(done)
        rows = [
            f"revaluation {doc['id']} as of {doc['as_of']} ({doc['functional_currency']}),"
            f" reversed on {doc['reversal_date']}" + ("" if done.created else " (already run)")
        ]
        rows += [
            f"  {line['number']}  {line['open_amount']} {line['currency']}"
            f" {line['carried_rate']} → {line['rate']}  {line['amount']}"
            for line in doc["lines"]
        ]
        return doc, "\n".join(rows)

    return _payments_command(args, action)


def _fx_parsers(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    fx = sub.add_parser("fx", help="exchange rates and revaluations").add_subparsers(
        dest="fx_command", required=True
    )
    imp = command(
        "import",
        cmd_fx_import,
        "import rates: an ECB reference-rate CSV or a date,base,quote,rate CSV",
        fx,
    )
    imp.add_argument("file", help="the CSV file")
    imp.add_argument("--book", help=BOOK_HELP)
    rate = command("rate", cmd_fx_rate, "the rate in force: units of QUOTE per one BASE", fx)
    rate.add_argument("base", help="currency, e.g. EUR")
    rate.add_argument("quote", help="currency, e.g. USD")
    rate.add_argument("--date", type=_date, default=None, help="on this day (default: today)")
    rate.add_argument("--book", help=BOOK_HELP)
    rev = command(
        "revalue",
        cmd_fx_revalue,
        "revalue open foreign-currency receivables (reversed on the 1st of next month)",
        fx,
    )
    rev.add_argument("--as-of", type=_date, default=None, help="month end (default: today)")
    rev.add_argument("--book", help=BOOK_HELP)
