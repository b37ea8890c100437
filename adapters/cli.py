"""`activebilling`: the command line (API.md).

Every command that prints a result takes `--format json` and then prints one
JSON document with amounts as strings. Errors go to stderr with exit code 2
(bad input) or 1 (`verify` found differences).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

from adapters.database import DatabaseSettings
from adapters.keys import Role, create_key, parse_role
from adapters.migrate import upgrade
from adapters.runtime import Runtime, open_runtime, utc_today
from adapters.services import create_book_with_chart, single_book_id
from ledger.balances import totals_by_currency
from ledger.errors import LedgerError
from ledger.postgres.books import get_book
from ledger.postgres.queries import trial_balance_as_of
from ledger.postgres.unit_of_work import unit_of_work
from ledger.postgres.verify import verify_book


class CliError(Exception):
    """A clear message for the user; exit code 2."""


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date: use YYYY-MM-DD") from None


def _print(args: argparse.Namespace, document: dict[str, Any], text: str) -> None:
    if getattr(args, "format", "table") == "json":
        print(json.dumps(document, indent=2, default=str))
    else:
        print(text)


def _book_id(runtime: Runtime, given: str | None) -> uuid.UUID:
    with runtime.connection() as conn:
        if given:
            try:
                book_id = uuid.UUID(given)
            except ValueError:
                raise CliError(f"--book {given!r} is not a book id") from None
            get_book(conn, book_id)
            return book_id
        try:
            return single_book_id(conn)
        except LookupError as exc:
            raise CliError(str(exc)) from None


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    settings = DatabaseSettings.from_environment()
    upgrade(settings.url)
    _print(args, {"status": "upgraded"}, "database is at the latest revision")
    return 0


def cmd_books_create(args: argparse.Namespace) -> int:
    settings = DatabaseSettings.from_environment()
    upgrade(settings.url)
    with open_runtime(settings) as runtime, unit_of_work(runtime.connection) as uow:
        book, key = create_book_with_chart(uow.conn, args.name, args.currency, args.simulated_clock)
        uow.commit()
    _print(
        args,
        {
            "book_id": str(book.id),
            "api_key": key,
            "name": book.name,
            "currency": book.base_currency,
        },
        f"book {book.id} ({book.name}, {book.base_currency})\nadmin API key: {key}",
    )
    return 0


def cmd_books_list(args: argparse.Namespace) -> int:
    with open_runtime() as runtime, runtime.connection() as conn:
        rows = conn.execute(
            "select id, name, base_currency, clock_mode, clock_date from books order by created_at"
        ).fetchall()
    books = [
        {"book_id": str(r[0]), "name": r[1], "currency": r[2], "clock": r[3], "clock_date": r[4]}
        for r in rows
    ]
    _print(
        args,
        {"books": books},
        "\n".join(f"{b['book_id']}  {b['currency']}  {b['name']}" for b in books) or "no books",
    )
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    role = parse_role(args.role)
    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        with unit_of_work(runtime.connection) as uow:
            key_id, key = create_key(uow.conn, book_id, role, args.label or "")
            uow.commit()
    _print(
        args,
        {"book_id": str(book_id), "key_id": str(key_id), "role": role.value, "api_key": key},
        key,
    )
    return 0


def cmd_trial_balance(args: argparse.Namespace) -> int:
    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        with runtime.connection() as conn:
            book = get_book(conn, book_id)
            as_of = args.as_of or book.today(utc_today())
            lines = trial_balance_as_of(conn, book_id, as_of)
    totals = totals_by_currency(lines)
    document = {
        "book_id": str(book_id),
        "as_of": as_of.isoformat(),
        "lines": [
            {
                "account": line.account,
                "currency": line.currency,
                "debit": str(line.debit),
                "credit": str(line.credit),
                "balance": str(line.balance),
            }
            for line in lines
        ],
        "totals": {c: {"debit": str(d), "credit": str(k)} for c, (d, k) in sorted(totals.items())},
    }
    width = max((len(line.account) for line in lines), default=10)
    rows = [
        f"Trial balance as of {as_of}",
        f"{'account':<{width}}  cur  {'debit':>16} {'credit':>16}",
    ]
    rows += [
        f"{line.account:<{width}}  {line.currency}  {line.debit:>16} {line.credit:>16}"
        for line in lines
    ]
    rows += [f"{'total':<{width}}  {c}  {d:>16} {k:>16}" for c, (d, k) in sorted(totals.items())]
    _print(args, document, "\n".join(rows))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        sealed = runtime.seal_all(wait=True)
        with runtime.connection() as conn:
            problems = verify_book(conn, book_id)
            counts = conn.execute(
                "select (select count(*) from journal_entries where book_id = %s),"
                " (select count(*) from postings where book_id = %s)",
                (book_id, book_id),
            ).fetchone()
    entries, postings = counts if counts else (0, 0)
    document = {
        "book_id": str(book_id),
        "ok": not problems,
        "entries": entries,
        "postings": postings,
        "newly_sealed": sealed,
        "discrepancies": [
            {"check": p.check, "subject": p.subject, "detail": p.detail} for p in problems
        ],
    }
    text = (
        f"ok: {entries} entries, {postings} postings; seal chain and projections agree"
        if not problems
        else "\n".join(f"FAIL {p.check} {p.subject}: {p.detail}" for p in problems)
    )
    _print(args, document, text)
    return 0 if not problems else 1


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = DatabaseSettings.from_environment()
    upgrade(settings.url)
    if args.bootstrap:
        _bootstrap(settings, f"http://{args.host}:{args.port}")
    # Workers are separate processes: they reach the (possibly embedded) server by URL.
    os.environ["DATABASE_URL"] = settings.url
    print(f"Active Billing listening on http://{args.host}:{args.port}", file=sys.stderr)
    uvicorn.run(
        "adapters.http.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        http="httptools",
        loop="uvloop",
        log_level=args.log_level,
        access_log=False,
    )
    return 0


def _bootstrap(settings: DatabaseSettings, url: str) -> None:
    """Make the service usable at once: a book (created on first start) and a new admin key."""
    with open_runtime(settings) as runtime, unit_of_work(runtime.connection) as uow:
        row = uow.conn.execute("select id from books order by created_at limit 1").fetchone()
        if row is None:
            book, key = create_book_with_chart(uow.conn, "Demo", "USD")
            book_id = book.id
        else:
            book_id = row[0]
            _, key = create_key(uow.conn, book_id, Role.ADMIN, label="serve --bootstrap")
        uow.commit()
    print(f"URL:      {url}  (OpenAPI: {url}/schema/openapi.json)")
    print(f"Book:     {book_id}")
    print(f"API key:  {key}   (admin; shown once)")
    print(f"Try:      curl -H 'Authorization: Bearer {key}' {url}/v1/reports/trial-balance")
    sys.stdout.flush()


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
