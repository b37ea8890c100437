"""Ledger and service commands: db, books, keys, trial balance, verify, serve, demo."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date

from adapters.cli.common import CliError, _book_id, _print
from adapters.database import DatabaseSettings
from adapters.keys import Role, create_key, parse_role
from adapters.migrate import upgrade
from adapters.runtime import open_runtime, utc_today
from adapters.services import create_book_with_chart
from ledger.balances import totals_by_currency
from ledger.postgres.books import get_book
from ledger.postgres.queries import trial_balance_as_of
from ledger.postgres.sealer import seal_pending
from ledger.postgres.unit_of_work import unit_of_work
from ledger.postgres.verify import verify_book


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
        sealed = seal_pending(runtime.connection, book_id, wait=True)
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

    from adapters.http.app import CoalescingHttpToolsProtocol

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
        http=CoalescingHttpToolsProtocol,  # httptools, one write per response
        loop="uvloop",
        log_level=args.log_level,
        access_log=False,
    )
    return 0


def _bootstrap(settings: DatabaseSettings, url: str) -> None:
    """Make the service usable at once: on first start a demo book with a year of
    business (as `activebilling demo`), and on every start a fresh admin key."""
    from adapters.demo import run_demo

    with open_runtime(settings) as runtime:
        with runtime.connection() as conn:
            row = conn.execute("select id from books order by created_at limit 1").fetchone()
        if row is None:
            print("creating a demo book: 20 customers, 12 months of billing …", file=sys.stderr)
            summary = run_demo(
                runtime, customers_count=20, months=12, seed=1, start=date(2026, 1, 1)
            )
            book_id, key = summary["book_id"], summary["api_key"]
        else:
            book_id = row[0]
            with unit_of_work(runtime.connection) as uow:
                _, key = create_key(uow.conn, book_id, Role.ADMIN, label="serve --bootstrap")
                uow.commit()
    print(f"URL:      {url}  (OpenAPI: {url}/schema/openapi.json)")
    print(f"Book:     {book_id}")
    print(f"API key:  {key}   (admin; shown once)")
    print(f"Try:      curl -H 'Authorization: Bearer {key}' {url}/v1/reports/trial-balance")
    sys.stdout.flush()


def cmd_demo(args: argparse.Namespace) -> int:
    from adapters.demo import run_demo

    if not 1 <= args.customers <= 100_000 or not 1 <= args.months <= 120:
        raise CliError("--customers must be 1..100000 and --months 1..120")
    settings = DatabaseSettings.from_environment()
    upgrade(settings.url)
    with open_runtime(settings) as runtime:
        summary = run_demo(
            runtime,
            customers_count=args.customers,
            months=args.months,
            seed=args.seed,
            start=args.start,
        )
    activity = ", ".join(f"{k} {v}" for k, v in summary["activity"].items())
    _print(
        args,
        summary,
        f"book {summary['book_id']} ({summary['start']} → {summary['end']})\n"
        f"admin API key: {summary['api_key']}\n"
        f"{summary['entries']} journal entries: {activity}\n"
        f"verify: {'ok' if summary['verify']['ok'] else 'FAILED'}",
    )
    return 0 if summary["verify"]["ok"] else 1
