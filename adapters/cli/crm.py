"""`activebilling crm sync`: a full or incremental CRM sync, progress on stderr."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from adapters.cli.common import BOOK_HELP, _book_id, _print
from adapters.crm.base import PROVIDERS
from adapters.crm.sync import SyncSummary, run_sync
from adapters.runtime import open_runtime


def cmd_crm_sync(args: argparse.Namespace) -> int:
    tty = sys.stderr.isatty()

    def progress(s: SyncSummary) -> None:
        line = (
            f"crm sync {s.provider}: {s.accounts} accounts ({s.created} created, {s.updated}"
            f" updated, {s.unchanged} unchanged, {s.conflicts} conflicts), {s.deals} deals"
            f" ({s.subscriptions} subscriptions), {len(s.errors)} errors"
        )
        print(("\r" if tty else "") + line, end="" if tty else "\n", file=sys.stderr, flush=True)

    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        summary = run_sync(
            runtime.connection,
            book_id,
            args.provider,
            since=args.since,
            full=args.full,
            progress=progress,
        )
    if tty:
        print(file=sys.stderr)
    document = summary.json()
    text = "\n".join(
        [
            f"{summary.provider}: {summary.accounts} accounts: {summary.created} created,"
            f" {summary.updated} updated, {summary.unchanged} unchanged,"
            f" {summary.conflicts} conflicts; {summary.deals} closed-won deals:"
            f" {summary.subscriptions} subscriptions, {summary.skipped} skipped",
            f"cursor: {summary.cursor or '-'} (the next incremental sync starts there)",
        ]
        + [f"  error: {e}" for e in summary.errors]
    )
    _print(args, document, text)
    return 1 if summary.errors else 0


def crm_parsers(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    crm = sub.add_parser("crm", help="CRM sync (Salesforce, HubSpot)").add_subparsers(
        dest="crm_command", required=True
    )
    sync = command(
        "sync",
        cmd_crm_sync,
        "sync CRM accounts into customers and closed-won deals into subscriptions",
        crm,
    )
    sync.add_argument("--provider", required=True, choices=PROVIDERS, help="the CRM to read")
    sync.add_argument(
        "--since",
        metavar="CURSOR",
        help="ISO 8601 timestamp: records changed after it (default: the saved cursor)",
    )
    sync.add_argument("--full", action="store_true", help="every record, ignoring the cursor")
    sync.add_argument("--book", help=BOOK_HELP)
