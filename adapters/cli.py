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
from datetime import UTC, date, datetime
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
from ledger.postgres.sealer import seal_pending
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


def _timestamp(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a timestamp: use ISO 8601, e.g. 2026-03-01T12:00:00Z"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def cmd_export_beancount(args: argparse.Namespace) -> int:
    from adapters.exports.beancount import ExportRange, begin_snapshot, export_beancount
    from adapters.exports.errors import InvalidRange
    from ledger.postgres.sealer import seal_pending

    if args.date_from and args.date_to and args.date_to < args.date_from:
        raise InvalidRange(f"the range ends ({args.date_to}) before it starts ({args.date_from})")
    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
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
        csv_mapping_from_json,
        get_statement,
        import_statement,
        load_csv_mapping,
    )

    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc.strerror}") from None
    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        with unit_of_work(runtime.connection) as uow:
            mapping = None
            if args.csv_mapping:
                given = args.csv_mapping
                if given.lstrip().startswith("{") or Path(given).is_file():
                    raw = given if given.lstrip().startswith("{") else Path(given).read_text()
                    try:
                        mapping = csv_mapping_from_json(json.loads(raw))
                    except json.JSONDecodeError as exc:
                        raise CliError(f"--csv-mapping is not valid JSON: {exc}") from None
                else:
                    mapping = load_csv_mapping(uow.conn, book_id, given)
            imported = import_statement(
                uow.conn,
                book_id,
                account_ref=args.account,
                data=data,
                format=args.statement_format,
                csv_mapping=mapping,
                bank_account=args.bank_account,
                filename=Path(args.file).name,
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


def _billing_line(values: Sequence[str]) -> Any:
    """`--line DESCRIPTION QUANTITY UNIT_AMOUNT [SERVICE_START SERVICE_END]`."""
    from adapters.http.billing_api import LineInput
    from ledger.money import parse_amount

    if len(values) not in (3, 5):
        raise CliError(
            "--line takes DESCRIPTION QUANTITY UNIT_AMOUNT [SERVICE_START SERVICE_END]"
            f", got {len(values)} value(s)"
        )
    try:
        start, end = (
            (date.fromisoformat(values[3]), date.fromisoformat(values[4]))
            if len(values) == 5
            else (None, None)
        )
    except ValueError:
        raise CliError("service dates must be YYYY-MM-DD") from None
    return LineInput(
        description=values[0],
        quantity=parse_amount(values[1]),
        unit_amount=parse_amount(values[2]),
        service_start=start,
        service_end=end,
    )


def cmd_customers_create(args: argparse.Namespace) -> int:
    from adapters.http.billing_api import customer_with_balances
    from billing.postgres.customers import CustomerSpec, upsert_customer
    from ledger.money import parse_amount

    spec = CustomerSpec(
        name=args.name,
        currency=args.currency,
        email=args.email,
        external_id=args.external_id,
        payment_terms=args.payment_terms,
        payment_terms_days=args.payment_terms_days,
        tax_rate=parse_amount(args.tax_rate),
        tax_treatment=args.tax_treatment,
    )
    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        with unit_of_work(runtime.connection) as uow:
            customer, created = upsert_customer(uow.conn, book_id, spec)
            document = customer_with_balances(uow.conn, book_id, customer)
            uow.commit()
    verb = "created" if created else "updated"
    _print(
        args,
        {**document, "created": created},
        f"customer {customer.id} ({customer.name}, {customer.currency}) {verb}",
    )
    return 0


def _invoice_text(doc: dict[str, Any]) -> str:
    rows = [
        f"invoice {doc['id']}  {doc['number'] or '(draft)'}  {doc['status']}",
        f"customer {doc['customer']}  issued {doc['issue_date'] or '-'}"
        f"  due {doc['due_date'] or '-'}",
    ]
    rows += [
        f"  {line['line_no']:>3} {line['description']:<36} {line['quantity']:>8}"
        f" x {line['unit_amount']:>14} = {line['amount']:>14}  tax {line['tax_amount']}"
        for line in doc["lines"]
    ]
    rows.append(
        f"total {doc['total']} {doc['currency']}  paid {doc['amount_paid']}"
        f"  due {doc['amount_due']}"
    )
    return "\n".join(rows)


def _invoice_command(args: argparse.Namespace, action: Callable[..., Any]) -> int:
    """Run `action(conn, book_id, today)` in one unit of work and print the invoice."""
    from adapters.http.billing_api import invoice_view

    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        with unit_of_work(runtime.connection) as uow:
            today = get_book(uow.conn, book_id).today(utc_today())
            invoice = action(uow.conn, book_id, today)
            document = invoice_view(uow.conn, book_id, invoice)
            uow.commit()
    _print(args, document, _invoice_text(document))
    return 0


def cmd_invoices_create(args: argparse.Namespace) -> int:
    from adapters.http.billing_api import create_one_off

    lines = [_billing_line(values) for values in args.line]
    return _invoice_command(
        args,
        lambda conn, book_id, today: create_one_off(
            conn,
            book_id,
            args.customer,
            lines,
            memo=args.memo or "",
            finalize_on=today if args.finalize else None,
        ),
    )


def cmd_invoices_finalize(args: argparse.Namespace) -> int:
    from billing.postgres.invoices import finalize_invoice

    return _invoice_command(args, lambda c, b, today: finalize_invoice(c, b, args.invoice, today))


def cmd_invoices_void(args: argparse.Namespace) -> int:
    from billing.postgres.invoices import void_invoice

    return _invoice_command(args, lambda c, b, today: void_invoice(c, b, args.invoice, today))


def cmd_invoices_show(args: argparse.Namespace) -> int:
    from billing.postgres.invoices import get_invoice

    return _invoice_command(args, lambda c, b, _today: get_invoice(c, b, args.invoice))


def _billing_parsers(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    customers = sub.add_parser("customers", help="customers").add_subparsers(
        dest="customers_command", required=True
    )
    cc = command(
        "create",
        cmd_customers_create,
        "create a customer, or update the one with the same --external-id",
        customers,
    )
    cc.add_argument("--book")
    cc.add_argument("--name", required=True)
    cc.add_argument("--currency", required=True)
    cc.add_argument("--email")
    cc.add_argument("--external-id")
    cc.add_argument(
        "--payment-terms", choices=["net", "due_on_receipt", "end_of_month"], default="net"
    )
    cc.add_argument("--payment-terms-days", type=int, default=30)
    cc.add_argument("--tax-rate", default="0", help='a fraction, e.g. "0.10" for 10 %%')
    cc.add_argument(
        "--tax-treatment", choices=["taxable", "exempt", "reverse_charge"], default="taxable"
    )

    invoices = sub.add_parser("invoices", help="invoices").add_subparsers(
        dest="invoices_command", required=True
    )
    ic = command("create", cmd_invoices_create, "create a one-off draft invoice", invoices)
    ic.add_argument("--book")
    ic.add_argument("--customer", required=True, help="customer id or external id")
    ic.add_argument(
        "--line",
        action="append",
        nargs="+",
        required=True,
        metavar="VALUE",
        help="DESCRIPTION QUANTITY UNIT_AMOUNT [SERVICE_START SERVICE_END]; repeat per line",
    )
    ic.add_argument("--memo")
    ic.add_argument("--finalize", action="store_true", help="finalize it at once")
    for name, handler, helptext in (
        ("finalize", cmd_invoices_finalize, "number, tax and post a draft"),
        ("void", cmd_invoices_void, "void an open invoice on which nothing was paid"),
        ("show", cmd_invoices_show, "show an invoice"),
    ):
        p = command(name, handler, helptext, invoices)
        p.add_argument("invoice", help="invoice id")
        p.add_argument("--book")


def _items_of(values: Sequence[str]) -> list[Any]:
    """`--item PRICE[:QUANTITY]`, repeated."""
    from billing.postgres.subscriptions import ItemSpec
    from ledger.money import parse_amount

    items = []
    for value in values:
        price, _, quantity = value.partition(":")
        items.append(ItemSpec(price, parse_amount(quantity or "1")))
    return items


def _subscription_command(args: argparse.Namespace, action: Callable[..., Any]) -> int:
    """Run `action(conn, book_id, today)` → (subscription, invoice | None) and print both."""
    from adapters.http.billing_api import invoice_view
    from adapters.http.subscriptions_api import subscription_json

    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        with unit_of_work(runtime.connection) as uow:
            today = get_book(uow.conn, book_id).today(utc_today())
            sub, invoice = action(uow.conn, book_id, today)
            document = subscription_json(sub)
            document["invoice"] = (
                invoice_view(uow.conn, book_id, invoice) if invoice is not None else None
            )
            uow.commit()
    text = (
        f"subscription {document['id']}  {document['status']}  every"
        f" {document['interval_count']} {document['interval']}"
        f"  next period {document['next_period_start']}"
    )
    if document["invoice"] is not None:
        text += "\n" + _invoice_text(document["invoice"])
    _print(args, document, text)
    return 0


def cmd_subscriptions_create(args: argparse.Namespace) -> int:
    from billing.postgres.subscriptions import SubscriptionSpec, create_subscription

    spec = SubscriptionSpec(
        args.customer,
        _items_of(args.item),
        args.start_date,
        args.trial_end,
        args.billing_anchor,
        args.coupon,
    )
    return _subscription_command(
        args, lambda c, b, today: (create_subscription(c, b, spec, today), None)
    )


def cmd_subscriptions_change(args: argparse.Namespace) -> int:
    from billing.postgres.subscriptions import change_subscription

    items = _items_of(args.item)
    return _subscription_command(
        args,
        lambda c, b, today: change_subscription(
            c, b, args.subscription, items, args.effective_date, args.proration, today
        ),
    )


def cmd_subscriptions_cancel(args: argparse.Namespace) -> int:
    from billing.postgres.subscriptions import cancel_subscription

    return _subscription_command(
        args, lambda c, b, today: cancel_subscription(c, b, args.subscription, args.at, today)
    )


def _progress_bar(done: int, total: int, invoices: int) -> None:
    """A plain-text progress line on stderr, redrawn in place with a carriage return."""
    width = 30
    filled = width if total == 0 else width * done // total
    percent = 100 if total == 0 else 100 * done // total
    sys.stderr.write(
        f"\rbilling [{'#' * filled}{'.' * (width - filled)}] {percent:3d}%"
        f"  {done}/{total} subscriptions  {invoices} invoices"
    )
    sys.stderr.flush()


def cmd_billing_run(args: argparse.Namespace) -> int:
    from billing.postgres.billing_runs import run_billing

    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        with runtime.connection() as conn:
            today = get_book(conn, book_id).today(utc_today())
        progress = None if args.no_progress else _progress_bar
        run = run_billing(
            runtime.connection,
            book_id,
            args.as_of or today,
            today,
            batch_size=args.batch_size,
            progress=progress,
        )
    if progress is not None:
        sys.stderr.write("\n")
    document = {
        "book_id": str(book_id),
        "id": str(run.id),
        "as_of": run.as_of.isoformat(),
        "status": run.status,
        "invoices_created": run.invoices_created,
    }
    _print(
        args,
        document,
        f"billing run {run.id} as of {run.as_of}: {run.status},"
        f" {run.invoices_created} invoice(s) created",
    )
    return 0


def cmd_clock_advance(args: argparse.Namespace) -> int:
    from ledger.postgres.books import set_clock

    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        with unit_of_work(runtime.connection) as uow:
            book = set_clock(uow.conn, book_id, args.to)
            uow.commit()
    now = book.today(utc_today())
    _print(
        args,
        {"book_id": str(book_id), "mode": book.clock_mode, "now": now.isoformat()},
        f"clock of book {book_id} is now {now}",
    )
    return 0


def _subscription_parsers(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    subs = sub.add_parser("subscriptions", help="subscriptions").add_subparsers(
        dest="subscriptions_command", required=True
    )
    item_help = "PRICE[:QUANTITY] (price id; quantity 1 by default); repeat per item"
    sc = command("create", cmd_subscriptions_create, "create a subscription", subs)
    sc.add_argument("--book")
    sc.add_argument("--customer", required=True, help="customer id or external id")
    sc.add_argument("--item", action="append", required=True, help=item_help)
    sc.add_argument("--start-date", type=_date, default=None)
    sc.add_argument("--trial-end", type=_date, default=None)
    sc.add_argument("--billing-anchor", type=_date, default=None)
    sc.add_argument("--coupon")
    ch = command("change", cmd_subscriptions_change, "change the items, with proration", subs)
    ch.add_argument("subscription")
    ch.add_argument("--book")
    ch.add_argument("--item", action="append", required=True, help=item_help)
    ch.add_argument("--effective-date", type=_date, default=None)
    ch.add_argument(
        "--proration", choices=["invoice_now", "next_invoice", "none"], default="invoice_now"
    )
    ca = command("cancel", cmd_subscriptions_cancel, "cancel a subscription", subs)
    ca.add_argument("subscription")
    ca.add_argument("--book")
    ca.add_argument("--at", default="now", help="now, period_end or a date YYYY-MM-DD")

    run = command("billing-run", cmd_billing_run, "invoice every subscription period due by a date")
    run.add_argument("--book")
    run.add_argument("--as-of", type=_date, default=None, help="default: the book's today")
    run.add_argument("--batch-size", type=int, default=500)
    run.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")

    clock = sub.add_parser("clock", help="a book's simulated clock").add_subparsers(
        dest="clock_command", required=True
    )
    adv = command("advance", cmd_clock_advance, "move a simulated clock forward", clock)
    adv.add_argument("--book")
    adv.add_argument("--to", type=_date, required=True, metavar="YYYY-MM-DD")


def _payments_command(args: argparse.Namespace, action: Callable[..., Any]) -> int:
    """Run `action(conn, book_id, today)` → (document, text) in one unit of work and print it."""
    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        with unit_of_work(runtime.connection) as uow:
            today = get_book(uow.conn, book_id).today(utc_today())
            document, text = action(uow.conn, book_id, today)
            uow.commit()
    _print(args, document, text)
    return 0


def cmd_payments_create(args: argparse.Namespace) -> int:
    from adapters.http.payments_api import payment_json
    from billing.postgres.payments import create_payment
    from ledger.money import parse_amount

    allocations = []
    for value in args.allocate or []:
        invoice, sep, amount = value.partition(":")
        if not sep:
            raise CliError(f"--allocate {value!r}: use INVOICE:AMOUNT")
        allocations.append((invoice, parse_amount(amount)))

    def action(conn: Any, book_id: uuid.UUID, today: date) -> tuple[dict[str, Any], str]:
        payment = create_payment(
            conn,
            book_id,
            args.customer,
            parse_amount(args.amount),
            args.currency,
            args.method,
            args.received_on or today,
            invoice_ref=args.invoice,
            allocations=allocations or None,
            reference=args.reference,
        )
        doc = payment_json(payment)
        rows = [f"payment {doc['id']}  {doc['amount']} {doc['currency']}  {doc['method']}"]
        rows += [f"  {a['number']}  {a['amount']}" for a in doc["allocations"]]
        rows.append(f"  unapplied (customer credit) {doc['unapplied']}")
        return doc, "\n".join(rows)

    return _payments_command(args, action)


def cmd_refunds_create(args: argparse.Namespace) -> int:
    from adapters.http.payments_api import refund_json
    from billing.postgres.payments import create_refund
    from ledger.money import parse_amount

    def action(conn: Any, book_id: uuid.UUID, today: date) -> tuple[dict[str, Any], str]:
        refund = create_refund(
            conn,
            book_id,
            parse_amount(args.amount),
            args.refunded_on or today,
            payment_ref=args.payment,
            customer_ref=args.customer,
            method=args.method,
            reason=args.reason or "",
        )
        doc = refund_json(refund)
        return doc, f"refund {doc['id']}  {doc['amount']} {doc['currency']}"

    return _payments_command(args, action)


def cmd_credit_notes_create(args: argparse.Namespace) -> int:
    from adapters.http.payments_api import credit_note_json
    from billing.postgres.credit_notes import create_credit_note
    from ledger.money import parse_amount

    lines = []
    for value in args.line or []:
        number, sep, amount = value.partition(":")
        if not sep or not number.isdigit():
            raise CliError(f"--line {value!r}: use LINE_NO:NET_AMOUNT")
        lines.append((int(number), parse_amount(amount)))

    def action(conn: Any, book_id: uuid.UUID, today: date) -> tuple[dict[str, Any], str]:
        note = create_credit_note(
            conn,
            book_id,
            args.invoice,
            today,
            amount=parse_amount(args.amount) if args.amount is not None else None,
            lines=lines or None,
            reason=args.reason or "",
            credit_to=args.credit_to,
        )
        doc = credit_note_json(note)
        text = (
            f"credit note {doc['number']}  {doc['total']} {doc['currency']}"
            f" (net {doc['net_amount']}, tax {doc['tax_amount']}) to {doc['credit_to']}"
        )
        return doc, text

    return _payments_command(args, action)


def _payment_parsers(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    payments = sub.add_parser("payments", help="payments").add_subparsers(
        dest="payments_command", required=True
    )
    pc = command("create", cmd_payments_create, "record a manual payment", payments)
    pc.add_argument("--book")
    pc.add_argument("--customer", required=True, help="customer id or external id")
    pc.add_argument("--amount", required=True, help='a decimal string, e.g. "150.00"')
    pc.add_argument("--currency", required=True)
    pc.add_argument("--method", required=True, choices=["bank_transfer", "card", "cash", "check"])
    pc.add_argument("--invoice", help="pay this invoice (else oldest due first)")
    pc.add_argument("--allocate", action="append", metavar="INVOICE:AMOUNT")
    pc.add_argument("--received-on", type=_date, default=None)
    pc.add_argument("--reference")

    refunds = sub.add_parser("refunds", help="refunds").add_subparsers(
        dest="refunds_command", required=True
    )
    rc = command("create", cmd_refunds_create, "refund a payment or a credit balance", refunds)
    rc.add_argument("--book")
    target = rc.add_mutually_exclusive_group(required=True)
    target.add_argument("--payment", help="payment id")
    target.add_argument("--customer", help="customer id or external id (credit balance)")
    rc.add_argument("--amount", required=True)
    rc.add_argument("--method", choices=["bank_transfer", "card", "cash", "check"])
    rc.add_argument("--reason")
    rc.add_argument("--refunded-on", type=_date, default=None)

    notes = sub.add_parser("credit-notes", help="credit notes").add_subparsers(
        dest="credit_notes_command", required=True
    )
    nc = command("create", cmd_credit_notes_create, "issue a credit note on an invoice", notes)
    nc.add_argument("--book")
    nc.add_argument("--invoice", required=True, help="invoice id")
    what = nc.add_mutually_exclusive_group(required=True)
    what.add_argument("--amount", help="gross amount to credit (tax included)")
    what.add_argument("--line", action="append", metavar="LINE_NO:NET_AMOUNT")
    nc.add_argument("--reason")
    nc.add_argument(
        "--credit-to", choices=["receivable", "customer_credit", "refund"], default="receivable"
    )


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
