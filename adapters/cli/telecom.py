"""`cdrs import FILE`, `cdrs rate`, `wallets sweep`, `vouchers issue` (API.md, "Usage
and telecom").

`cdrs import` streams the CSV (header: id, subscriber, event_type, start,
duration_seconds | bytes | count, destination, roaming) in batches of 10,000
records, each batch its own transaction. Broken rows are reported on stderr
with their line number (the header is line 1) and the rest is stored; the exit
code is then 1. A re-run of the same file stores nothing twice.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator
from decimal import Decimal
from itertools import islice
from pathlib import Path
from typing import Any

from adapters.cli.common import BOOK_HELP, CliError, _book_id, _date, _print
from adapters.runtime import open_runtime, utc_today
from billing.postgres import telecom as store
from billing.postgres.add_ons import issue_vouchers
from billing.postgres.wallets import lapse_expired_value, sweep_expired
from billing.telecom import QUANTITY_FIELDS
from ledger.money import parse_amount
from ledger.postgres.books import get_book
from ledger.postgres.unit_of_work import unit_of_work

REQUIRED = ("id", "subscriber", "event_type", "start")


def _rows(path: str) -> Iterator[tuple[int, dict[str, Any]]]:
    if not Path(path).is_file():
        raise CliError(f"cannot read {path}: no such file")
    with Path(path).open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [c for c in REQUIRED if c not in header]
        if missing or not any(q in header for q in QUANTITY_FIELDS):
            raise CliError(
                f"{path}: the header needs {', '.join(REQUIRED)} and one of"
                f" {', '.join(QUANTITY_FIELDS)}"
                + (f" (missing {', '.join(missing)})" if missing else "")
            )
        for row in reader:
            yield reader.line_num, dict(row)


def cmd_cdrs_import(args: argparse.Namespace) -> int:
    rows = _rows(args.file)
    totals: dict[str, Any] = {"accepted": 0, "duplicates": 0, "rejected": []}
    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        while batch := list(islice(rows, store.MAX_BATCH)):
            with unit_of_work(runtime.connection) as uow:
                result = store.import_cdrs(uow.conn, book_id, batch)
                uow.commit()
            totals["accepted"] += result.accepted
            totals["duplicates"] += len(result.duplicates or [])
            totals["rejected"] += result.rejected or []
    for r in totals["rejected"]:
        print(f"line {r['line']}: {r['reason']}", file=sys.stderr)
    text = (
        f"{totals['accepted']} CDRs stored, {totals['duplicates']} duplicates,"
        f" {len(totals['rejected'])} rejected"
    )
    _print(args, totals, text)
    return 1 if totals["rejected"] else 0


def cmd_cdrs_rate(args: argparse.Namespace) -> int:
    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        if args.parts == 1:
            with unit_of_work(runtime.connection) as uow:
                runs = [store.rate_through(uow.conn, book_id, args.through)]
                uow.commit()
        else:
            runs = store.rate_in_parts(runtime.connection, book_id, args.through, args.parts)
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for run in runs:
        for currency, amount in run.amounts.items():
            totals[currency] += amount
    amounts = {c: str(a) for c, a in sorted(totals.items())}
    rated = sum(r.rated for r in runs)
    unrateable = sum(r.unrateable for r in runs)
    entries = sum(r.entries for r in runs)
    doc: dict[str, Any] = {
        "id": str(runs[0].id),
        "through": args.through.isoformat(),
        "rated": rated,
        "unrateable": unrateable,
        "entries": entries,
        "amounts": amounts,
    }
    if len(runs) > 1:
        doc["parts"] = [str(r.id) for r in runs]  # a run per part; "id" is the first
    text = f"rated {rated} CDRs ({unrateable} unrateable) in {entries} entries: " + (
        ", ".join(f"{a} {c}" for c, a in amounts.items()) or "nothing"
    )
    _print(args, doc, text)
    return 0


def cmd_wallets_sweep(args: argparse.Namespace) -> int:
    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        with unit_of_work(runtime.connection) as uow:
            expired = sweep_expired(uow.conn, book_id)
            today = get_book(uow.conn, book_id).today(utc_today())
            lapsed = lapse_expired_value(uow.conn, book_id, today)
            uow.commit()
    _print(
        args,
        {"expired": expired, "wallets_lapsed": lapsed},
        f"{expired} reservations expired, {lapsed} wallets' value lapsed",
    )
    return 0


def cmd_vouchers_issue(args: argparse.Namespace) -> int:
    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        with unit_of_work(runtime.connection) as uow:
            today = get_book(uow.conn, book_id).today(utc_today())
            batch = issue_vouchers(
                uow.conn,
                book_id,
                args.currency,
                parse_amount(args.amount),
                args.count,
                today,
                args.payment_method,
            )
            uow.commit()
    doc = {
        "id": str(batch.id),
        "currency": batch.amount.currency,
        "amount": str(batch.amount.amount),
        "codes": list(batch.codes),
    }
    _print(args, doc, "\n".join(batch.codes))
    return 0


def _telecom_parsers(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    cdrs = sub.add_parser("cdrs", help="call detail records").add_subparsers(
        dest="cdrs_command", required=True
    )
    imp = command("import", cmd_cdrs_import, "import a CSV of CDRs (deduplicated by id)", cdrs)
    imp.add_argument(
        "file",
        help="CSV: id, subscriber, event_type, start, duration_seconds|bytes|count,"
        " destination, roaming",
    )
    imp.add_argument("--book", help=BOOK_HELP)
    rate = command("rate", cmd_cdrs_rate, "rate CDRs that started before a day and post them", cdrs)
    rate.add_argument(
        "--through",
        type=_date,
        required=True,
        metavar="YYYY-MM-DD",
        help="rate CDRs that started before this day (UTC)",
    )
    rate.add_argument("--book", help=BOOK_HELP)
    rate.add_argument(
        "--parts",
        type=int,
        choices=store.PARTS,
        default=1,
        help="rate in this many parts side by side, by subscriber (a run per part)",
    )
    wallets = sub.add_parser("wallets", help="prepaid wallets").add_subparsers(
        dest="wallets_command", required=True
    )
    sweep = command("sweep", cmd_wallets_sweep, "expire reservations past their TTL", wallets)
    sweep.add_argument("--book", help=BOOK_HELP)
    vouchers = sub.add_parser("vouchers", help="prepaid vouchers").add_subparsers(
        dest="vouchers_command", required=True
    )
    issue = command(
        "issue", cmd_vouchers_issue, "sell a batch of voucher codes (printed once)", vouchers
    )
    issue.add_argument("--currency", required=True, help="ISO 4217 code, e.g. GBP")
    issue.add_argument("--amount", required=True, help="each voucher's value, e.g. 10.00")
    issue.add_argument("--count", type=int, default=1, help="how many codes (1 to 1000)")
    issue.add_argument(
        "--payment-method",
        default="bank_transfer",
        help="how the batch was paid for (default bank_transfer)",
    )
    issue.add_argument("--book", help=BOOK_HELP)


__all__ = ["_telecom_parsers"]
