"""`activebilling usage import FILE`: usage events from CSV or JSON Lines;
`activebilling usage accrue --as-of DATE`: the month-end usage accrual run
(billing.postgres.usage_accrual_run), one transaction, safe to repeat.

The file is read as a stream and sent in batches of 10,000 through the same
ingestion as `POST /v1/usage-events`, one transaction per batch, so a file of
any size runs in constant memory and a re-run after a failure only reports
duplicates for what was stored. CSV: a header naming `id, customer, metric,
quantity, timestamp` and optionally `properties` (a JSON object); any other
column becomes a property (text). JSON Lines: one event object per line.
Progress goes to stderr after each batch; a rejected event is reported with
its line number, and the exit code is 1 when any event was rejected (the rest
is stored).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from adapters.cli.common import BOOK_HELP, CliError, _book_id, _date, _print
from adapters.runtime import open_runtime, utc_today
from billing.postgres import usage as usage_store
from billing.postgres.usage_accrual_run import accrue_usage
from billing.usage import MAX_BATCH
from ledger.postgres.books import get_book
from ledger.postgres.unit_of_work import unit_of_work

_CSV_FIELDS = ("id", "customer", "metric", "quantity", "timestamp")


def _jsonl(handle: IO[str]) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, {"_broken": f"not JSON: {exc.msg}"}


def _csv(handle: IO[str]) -> Iterator[tuple[int, Any]]:
    reader = csv.DictReader(handle)
    missing = [f for f in _CSV_FIELDS if f not in (reader.fieldnames or [])]
    if missing:
        raise CliError(f"the CSV header lacks {', '.join(missing)} (line 1)")
    for row in reader:
        number = reader.line_num
        event: dict[str, Any] = {f: row[f] for f in _CSV_FIELDS}
        properties: dict[str, Any] = {}
        if row.get("properties"):
            try:
                properties = json.loads(row["properties"])
            except json.JSONDecodeError:
                properties = {"_broken": "properties is not a JSON object"}
        for key, value in row.items():
            if key not in (*_CSV_FIELDS, "properties") and key is not None and value != "":
                properties[key] = value
        event["properties"] = properties
        yield number, event


def read_events(path: Path, handle: IO[str]) -> Iterator[tuple[int, Any]]:
    """(line number, event) pairs: JSON Lines for .jsonl/.ndjson or a file starting
    with `{`, else CSV."""
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        return _jsonl(handle)
    if path.suffix.lower() == ".csv":
        return _csv(handle)
    first = handle.read(1)
    handle.seek(0)
    return _jsonl(handle) if first == "{" else _csv(handle)


def _broken(event: Any) -> str | None:
    if isinstance(event, dict) and "_broken" in event:
        return str(event["_broken"])
    if isinstance(event, dict) and isinstance(event.get("properties"), dict):
        return event["properties"].get("_broken")  # type: ignore[no-any-return]
    return None


def cmd_usage_import(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc.strerror}") from None
    accepted = duplicates = read = 0
    rejected: list[dict[str, Any]] = []
    tty = sys.stderr.isatty()

    def report(final: bool = False) -> None:
        line = (
            f"usage import: {read} read, {accepted} accepted, {duplicates} duplicates,"
            f" {len(rejected)} rejected"
        )
        print(("\r" if tty else "") + line, end="\n" if final or not tty else "", file=sys.stderr)

    with handle, open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)

        def send(batch: list[tuple[int, Any]]) -> None:
            nonlocal accepted, duplicates
            good = []
            lines: dict[str, int] = {}
            for number, event in batch:
                why = _broken(event)
                if why is not None:
                    rejected.append(
                        {"line": number, "id": None, "reason": "invalid_event", "message": why}
                    )
                    continue
                if isinstance(event, dict) and isinstance(event.get("id"), str):
                    lines.setdefault(event["id"], number)
                good.append(event)
            with runtime.connection() as conn:
                result = usage_store.ingest(conn, book_id, good)
                conn.commit()
            accepted += result.accepted
            duplicates += len(result.duplicates)
            rejected.extend(
                {
                    "line": lines.get(r.id) if r.id else None,
                    "id": r.id,
                    "reason": r.reason,
                    "message": r.message,
                }
                for r in result.rejected
            )

        batch: list[tuple[int, Any]] = []
        for item in read_events(path, handle):
            batch.append(item)
            read += 1
            if len(batch) == MAX_BATCH:
                send(batch)
                report()
                batch = []
        if batch:
            send(batch)
    report(final=True)
    document = {
        "file": str(path),
        "read": read,
        "accepted": accepted,
        "duplicates": duplicates,
        "rejected": rejected,
    }
    text = "\n".join(
        [f"{accepted} accepted, {duplicates} duplicates, {len(rejected)} rejected"]
        + [f"  line {r['line']}: {r['id']}: {r['reason']}: {r['message']}" for r in rejected]
    )
    _print(args, document, text)
    return 1 if rejected else 0


def cmd_usage_accrue(args: argparse.Namespace) -> int:
    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        with unit_of_work(runtime.connection) as uow:
            today = get_book(uow.conn, book_id).today(utc_today())
            run = accrue_usage(uow.conn, book_id, args.as_of or today, today)
            uow.commit()
    doc = {
        "object": "usage_accrual",
        "as_of": run.as_of.isoformat(),
        "cdrs_rated": run.cdrs_rated,
        "cdr_amounts": {c: str(a) for c, a in sorted(run.cdr_amounts.items())},
        "accrued": {c: str(a) for c, a in sorted(run.accrued.items())},
        "entries": run.entries,
    }
    text = (
        f"usage accrued as of {run.as_of}: {run.entries} entries ("
        + (", ".join(f"{a} {c}" for c, a in sorted(run.accrued.items())) or "nothing")
        + f"); {run.cdrs_rated} CDRs rated"
    )
    _print(args, doc, text)
    return 0


def usage_parsers(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    usage = sub.add_parser("usage", help="usage events").add_subparsers(
        dest="usage_command", required=True
    )
    imp = command(
        "import",
        cmd_usage_import,
        "import usage events from CSV or JSON Lines (streamed, batches of 10,000)",
        usage,
    )
    imp.add_argument("file", help="a .csv or .jsonl file")
    imp.add_argument("--book", help=BOOK_HELP)
    accrue = command(
        "accrue",
        cmd_usage_accrue,
        "accrue rated usage not yet invoiced to Unbilled (month-end; safe to repeat)",
        usage,
    )
    accrue.add_argument(
        "--as-of",
        type=_date,
        default=None,
        metavar="YYYY-MM-DD",
        help="accrue usage through the end of this day (default: the book's today)",
    )
    accrue.add_argument("--book", help=BOOK_HELP)
