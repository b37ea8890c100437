"""Ledger and service commands: db, books, keys, trial balance, verify, serve, demo."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from datetime import date

from adapters.audit import record_cli
from adapters.cli.audit import command_name, mark_audited
from adapters.cli.common import CliError, _book_id, _check_dates, _print, read_book
from adapters.database import DatabaseSettings
from adapters.keys import Role, create_key, list_keys, parse_role, revoke_key, rotate_key
from adapters.migrate import upgrade
from adapters.runtime import open_runtime, utc_today
from adapters.services import create_book_with_chart, verify_everything
from billing.postgres.settings import change_settings, read_settings
from billing.settings import masked, merge_patch, parse_assignment
from ledger.balances import totals_by_currency
from ledger.postgres.books import get_book
from ledger.postgres.queries import trial_balance_as_of
from ledger.postgres.sealer import seal_pending
from ledger.postgres.unit_of_work import unit_of_work


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
    args.audit_books, args.audit_created = [book.id], [str(book.id)]
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


def cmd_books_settings(args: argparse.Namespace) -> int:
    """Print the book's settings (secrets masked), or change them with --set KEY=VALUE."""
    change: object = {}
    for assignment in args.set or []:
        key, value = parse_assignment(assignment)
        change = merge_patch(change, {key: value})
    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        with unit_of_work(runtime.connection) as uow:
            if args.set:
                settings = change_settings(uow.conn, book_id, change)
            else:
                settings = read_settings(uow.conn, book_id)
            uow.commit()
    shown = masked(settings)
    _print(
        args,
        {"book_id": str(book_id), "settings": shown},
        "\n".join(f"{k} = {json.dumps(v)}" for k, v in sorted(shown.items())) or "no settings",
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
            record_cli(uow.conn, book_id, command_name(args), 0, [str(key_id)])
            uow.commit()
    mark_audited(args)
    _print(
        args,
        {"book_id": str(book_id), "key_id": str(key_id), "role": role.value, "api_key": key},
        key,
    )
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    book_id, keys = read_book(
        args, lambda conn, book_id, _today: [k.json() for k in list_keys(conn, book_id)]
    )
    text = "\n".join(
        f"{k['key_id']}  {k['role']:<10} created {k['created_at'][:19]}"
        f"  last used {(k['last_used_at'] or 'never')[:19]:<19}"
        f"  {'REVOKED ' + k['revoked_at'][:19] if k['revoked_at'] else 'active'}"
        f"  {k['label']}"
        for k in keys
    )
    _print(args, {"book_id": str(book_id), "keys": keys}, text or "no keys")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from adapters.http.auth import CACHE_SECONDS

    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        with unit_of_work(runtime.connection) as uow:
            key = revoke_key(uow.conn, book_id, args.key_id).json()
            record_cli(uow.conn, book_id, f"{command_name(args)} {key['key_id']}", 0)
            uow.commit()
    mark_audited(args)
    _print(
        args,
        {"book_id": str(book_id), **key},
        f"key {key['key_id']} ({key['role']}) revoked at {key['revoked_at']}; running servers"
        f" refuse it within {CACHE_SECONDS:g} seconds (the time they cache a key)",
    )
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    """A new key with the old one's role and label (shown once); the old one is refused
    from now, or after --grace-seconds."""
    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        with unit_of_work(runtime.connection) as uow:
            rotation = rotate_key(uow.conn, book_id, args.key_id, args.grace_seconds)
            record_cli(
                uow.conn,
                book_id,
                f"{command_name(args)} {rotation.old.key_id}",
                0,
                [str(rotation.new.key_id)],
            )
            uow.commit()
    mark_audited(args)
    old = rotation.old.json()
    _print(
        args,
        {"book_id": str(book_id), **rotation.json()},
        f"{rotation.api_key}\nnew key {rotation.new.key_id} ({rotation.new.role});"
        f" old key {old['key_id']} refused from {old['revoked_at']}",
    )
    return 0


def cmd_trial_balance(args: argparse.Namespace) -> int:
    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        _check_dates(runtime, book_id, args)
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
            problems = verify_everything(conn, book_id)
            counts = conn.execute(
                "select (select count(*) from journal_entries where book_id = %s),"
                " (select count(*) from postings where book_id = %s)",
                (book_id, book_id),
            ).fetchone()
            head = conn.execute(
                "select seq, hash from seals where book_id = %s order by seq desc limit 1",
                (book_id,),
            ).fetchone()
    entries, postings = counts if counts else (0, 0)
    document = {
        "book_id": str(book_id),
        "ok": not problems,
        "entries": entries,
        "postings": postings,
        "newly_sealed": sealed,
        # The chain's last link: equal before a backup and after its restore.
        "seal_head": {"sequence": head[0], "hash": head[1]} if head else None,
        "discrepancies": [
            {"check": p.check, "subject": p.subject, "detail": p.detail} for p in problems
        ],
    }
    text = (
        f"ok: {entries} entries, {postings} postings;"
        " seal chain, projections and invoice settlements agree"
        if not problems
        else "\n".join(f"FAIL {p.check} {p.subject}: {p.detail}" for p in problems)
    )
    _print(args, document, text)
    return 0 if not problems else 1


# serve's workers: half the CPUs, at least one. In the README's setup PostgreSQL
# runs on the same machine, and each worker commits the posts it receives in
# groups (adapters/http/hot_path.py), so fewer workers make larger groups:
# benchmarks/post_http on 2 cores, 8 clients, 2,332 and 2,390 entries/s with one
# worker against 2,004 and 1,912 with two (benchmarks/README.md).
DEFAULT_WORKERS = max(1, (os.cpu_count() or 2) // 2)
# serve's HTTP stack. uvicorn with httptools posted more than granian on a quiet
# machine, with one worker and with two (benchmarks/post_http, 8 clients:
# 2,719-2,852 entries/s against 2,355-2,434 with one; 2,109 against 1,846-2,004
# with two): ~200 us of the worker's CPU per entry against ~265, its requests
# read on the event loop's thread, not handed over from granian's Rust threads.
DEFAULT_SERVER = "uvicorn"


def cmd_serve(args: argparse.Namespace) -> int:
    import secrets

    # Every worker process signs console sessions with the same secret (inherited
    # environment), so a session works whichever worker answers; set it yourself to
    # keep sessions across restarts.
    os.environ.setdefault("ACTIVEBILLING_CONSOLE_SECRET", secrets.token_urlsafe(32))
    settings = DatabaseSettings.from_environment()
    upgrade(settings.url)
    url = f"http://{args.host}:{args.port}"
    banner = _bootstrap(settings, url) if args.bootstrap else []
    # Workers are separate processes: they reach the (possibly embedded) server by URL.
    os.environ["DATABASE_URL"] = settings.url
    metrics_dir: str | None = None
    if args.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # /metrics sums every worker's request counts from files in this directory;
        # the server made it, so the server removes it when it stops.
        import tempfile

        metrics_dir = tempfile.mkdtemp(prefix="activebilling-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    threading.Thread(
        target=_announce_when_ready,
        args=(
            args.host,
            args.port,
            [f"Active Billing listening on {url}", f"Console: {url}/console", *banner],
        ),
        daemon=True,
    ).start()
    try:
        if getattr(args, "server", DEFAULT_SERVER) == "uvicorn":
            _run_uvicorn(args)
        else:
            _serve_granian(args)
    finally:
        if metrics_dir is not None:
            import shutil

            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _exit_with_0(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _run_uvicorn(args: argparse.Namespace) -> None:
    import uvicorn

    from adapters.http.app import CoalescingHttpToolsProtocol

    # uvicorn stops on SIGINT or SIGTERM, then raises the signal again for the
    # handler it found: this one ends serve with 0, as granian's supervisor does
    # (the default handler would end it as killed by the signal).
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, _exit_with_0)
    uvicorn.run(
        "adapters.http.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        http=CoalescingHttpToolsProtocol,  # httptools, one write per response
        loop="uvloop",
        log_level=args.log_level,
        access_log=False,  # our own access line (JSON, with the request id) replaces it
        # A worker importing the app on a busy 2-core machine took longer than uvicorn's
        # default 5 s to answer its supervisor's first ping, and was killed in a loop.
        timeout_worker_healthcheck=60,
        # As granian's workers: requests still open this long after the signal are dropped.
        timeout_graceful_shutdown=WORKER_STOP_TIMEOUT,
        log_config=_json_logging(args.log_level),
    )


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _hold_stop_signals() -> None:
    """Before a fork: a stop signal waits, blocked, until the child can act on it."""
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)


def _release_stop_signals() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)


def _stop_by_default() -> None:
    """In a forked worker: SIGTERM and SIGINT end it until granian sets its own handlers.

    granian forks its workers after setting the supervisor's handlers, which only set
    a flag. A worker still importing the app kept them: a stop signal then went to
    the copy's flag and was lost; the worker served on and its supervisor waited for
    it forever. A worker that has not served yet has nothing to finish. The signals
    were blocked across the fork (a loaded machine may run the child late, and one
    landing before this hook was lost the same way); one that came meanwhile is
    delivered on unblocking and ends the worker here."""
    for signum in _STOP_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)
    _release_stop_signals()


def _fork_stoppable_workers() -> None:
    os.register_at_fork(
        before=_hold_stop_signals,
        after_in_parent=_release_stop_signals,
        after_in_child=_stop_by_default,
    )


# Seconds the supervisor waits for a stopping worker before killing it: more than a
# clean stop takes (its lifespan shutdown joins threads and closes pools with
# timeouts of a few seconds each), so a kill means something is stuck.
WORKER_STOP_TIMEOUT = 30


def _serve_granian(args: argparse.Namespace) -> None:
    """`serve --server granian`: HTTP parsing and socket I/O in granian's Rust threads,
    the app on a uvloop event loop per worker process (on a loaded machine in
    2026-11 it posted ~1.5 times uvicorn's entries a second; on a quiet one now,
    fewer: see DEFAULT_SERVER)."""
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.log import LogLevels

    _fork_stoppable_workers()
    Granian(
        "adapters.http.app:create_app",
        address=args.host,
        port=args.port,
        interface=Interfaces.ASGI,
        workers=args.workers,
        loop=Loops.uvloop,
        http=HTTPModes.http1,
        websockets=False,
        factory=True,
        log_level=LogLevels(args.log_level.lower()),
        log_dictconfig=_json_logging(args.log_level),
        log_access=False,  # our own access line (JSON, with the request id) replaces it
        workers_kill_timeout=WORKER_STOP_TIMEOUT,
    ).serve()


def _json_logging(level: str) -> dict[str, object]:
    """The server's log configuration (uvicorn's or granian's), with every line one
    JSON object (request id included)."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "adapters.http.operations.JsonLogFormatter"}},
        "handlers": {"stderr": handler},
        "loggers": {
            name: {"handlers": ["stderr"], "level": level.upper(), "propagate": False}
            for name in ("uvicorn", "uvicorn.error", "_granian", "activebilling")
        },
    }


def _probe_host(host: str) -> str:
    """Where to knock: a wildcard bind address is reached on loopback."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def _announce_when_ready(host: str, port: int, lines: list[str]) -> None:
    """Print `lines` once the server answers HTTP. With several workers uvicorn binds
    the socket before any worker has started, so an accepted TCP connection alone
    proves nothing: wait for an answer to `GET /health` (any status: a 503 while the
    database is away still means the server is up)."""
    import http.client

    while True:
        connection = http.client.HTTPConnection(_probe_host(host), port, timeout=2)
        try:
            connection.request("GET", "/health")
            connection.getresponse().read()
            break
        except OSError:
            time.sleep(0.1)
        finally:
            connection.close()
    print(lines[0], file=sys.stderr)
    if len(lines) > 1:
        print("\n".join(lines[1:]))
    sys.stdout.flush()
    sys.stderr.flush()


def _bootstrap(settings: DatabaseSettings, url: str) -> list[str]:
    """Make the service usable at once: on first start a demo book with a year of
    business (as `activebilling demo`), and on every start a fresh admin key.
    Returns the lines to print once the server answers."""
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
    return [
        f"URL:      {url}  (OpenAPI: {url}/schema/openapi.json)",
        f"Book:     {book_id}",
        f"API key:  {key}   (admin; shown once)",
        f"Try:      curl -H 'Authorization: Bearer {key}' {url}/v1/reports/trial-balance",
    ]


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


def cmd_backup(args: argparse.Namespace) -> int:
    from pathlib import Path

    from adapters.backup import BackupError, backup

    settings = DatabaseSettings.from_environment()
    try:
        size = backup(settings.url, Path(args.out))
    except BackupError as exc:
        raise CliError(str(exc)) from exc
    _print(args, {"out": args.out, "bytes": size}, f"wrote {args.out} ({size} bytes)")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from pathlib import Path

    from adapters.backup import BackupError, restore

    settings = DatabaseSettings.from_environment()
    try:
        restore(settings.url, Path(args.file))
    except BackupError as exc:
        raise CliError(str(exc)) from exc
    upgrade(settings.url)  # an archive from an older release gets the newer migrations
    with open_runtime(settings) as runtime, runtime.connection() as conn:
        # Each restored book's audit log says it was restored, and by whom.
        args.audit_books = [r[0] for r in conn.execute("select id from books").fetchall()]
    _print(args, {"restored": args.file}, f"restored {args.file}; run `activebilling verify`")
    return 0
