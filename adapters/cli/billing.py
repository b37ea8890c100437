"""Billing commands: customers, invoices, subscriptions, billing runs, payments."""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

import psycopg

from adapters.cli.common import BOOK_HELP, CliError, _book_id, _date, _print, read_book
from adapters.runtime import open_runtime, utc_today
from ledger.postgres.books import get_book
from ledger.postgres.unit_of_work import unit_of_work


def _billing_line(values: Sequence[str]) -> Any:
    """`--line DESCRIPTION QUANTITY UNIT_AMOUNT [SERVICE_START SERVICE_END]`."""
    from adapters.http.invoices_api import LineInput
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
    from adapters.http.customers_api import customer_with_balances
    from billing.postgres.customers import CustomerSpec, upsert_customer
    from ledger.money import parse_amount

    # Options left out keep an existing customer's values (the upsert is a merge).
    options = ("name", "email", "payment_terms", "payment_terms_days", "tax_rate")
    given = {
        name: getattr(args, name)
        for name in (*options, "tax_treatment")
        if getattr(args, name) is not None
    }
    if "tax_rate" in given:
        given["tax_rate"] = parse_amount(given["tax_rate"])
    spec = CustomerSpec(currency=args.currency, external_id=args.external_id, **given)
    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        with unit_of_work(runtime.connection) as uow:
            customer, created = upsert_customer(uow.conn, book_id, spec, given=given)
            document = customer_with_balances(uow.conn, book_id, customer)
            uow.commit()
    verb = "created" if created else "updated"
    _print(
        args,
        {**document, "created": created},
        f"customer {customer.id} ({customer.name}, {customer.currency}) {verb}",
    )
    return 0


def cmd_customers_list(args: argparse.Namespace) -> int:
    from adapters.http.customers_api import customer_with_balances
    from billing.postgres.customers import list_customers

    def read(conn: psycopg.Connection, book_id: uuid.UUID, _today: date) -> list[dict[str, Any]]:
        documents: list[dict[str, Any]] = []
        after = None
        while True:
            page = list_customers(conn, book_id, after=after, limit=500)
            documents += [customer_with_balances(conn, book_id, c) for c in page]
            if len(page) < 500:
                return documents
            after = page[-1].id

    book_id, documents = read_book(args, read)
    documents.sort(key=lambda c: (c["name"].casefold(), c["created_at"]))
    text = "\n".join(
        f"{c['id']}  {c['external_id'] or '-':<16} {c['name']:<32} {c['currency']}"
        f"  due {c['balance_due']:>12}  credit {c['credit_balance']:>12}"
        for c in documents
    )
    _print(args, {"book_id": str(book_id), "customers": documents}, text or "no customers")
    return 0


def cmd_invoices_list(args: argparse.Namespace) -> int:
    from adapters.http.invoices_api import invoice_json
    from billing.postgres.customers import get_customer
    from billing.postgres.invoices import invoice_sort_key, list_invoices

    if args.limit < 1:
        raise CliError("--limit must be at least 1")

    def read(conn: psycopg.Connection, book_id: uuid.UUID, _today: date) -> list[Any]:
        customer_id = get_customer(conn, book_id, args.customer).id if args.customer else None
        found: list[Any] = []
        after = None
        while len(found) < args.limit:
            page = list_invoices(
                conn,
                book_id,
                customer_id=customer_id,
                status=args.status,
                date_from=args.date_from,
                date_to=args.date_to,
                order=args.order,
                after=after,
                limit=min(500, args.limit - len(found)),
            )
            found += page
            if len(page) < 500:
                break
            after = invoice_sort_key(page[-1], args.order)
        return found

    book_id, found = read_book(args, read)
    documents = [invoice_json(i) for i in found]
    rows = []
    for doc in documents:
        rows.append(
            f"{doc['number'] or '(draft)':<16} {doc['issue_date'] or '-':<10} {doc['status']:<13}"
            f" {doc['customer']}  total {doc['total']:>12} {doc['currency']}"
            f"  due {doc['amount_due']:>12}"
        )
        rows += [
            f"    {line['line_no']:>3} {line['description']:<40} {line['amount']:>12}"
            for line in doc["lines"]
        ]
    _print(args, {"book_id": str(book_id), "invoices": documents}, "\n".join(rows) or "no invoices")
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


def _invoice_command(
    args: argparse.Namespace, action: Callable[..., Any], *, collect: bool = False
) -> int:
    """Run `action(conn, book_id, today)` in one unit of work and print the invoice.

    With `collect`, a finalized invoice of a `charge_automatically` customer gets
    its charge attempt queued in that unit of work and run after its commit
    (adapters/gateways/collection.py)."""
    from adapters.gateways import collection
    from adapters.http.invoices_api import invoice_view
    from billing.postgres.invoices import get_invoice

    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        with unit_of_work(runtime.connection) as uow:
            today = get_book(uow.conn, book_id).today(utc_today())
            invoice = action(uow.conn, book_id, today)
            queued = (
                collect
                and invoice.status != "draft"
                and collection.queue_auto_collection(uow.conn, book_id, str(invoice.id), today)
            )
            document = invoice_view(uow.conn, book_id, invoice)
            uow.commit()
        if queued:
            with unit_of_work(runtime.connection) as uow:
                collection.collect_pending(uow.conn, book_id, str(invoice.id))
                invoice = get_invoice(uow.conn, book_id, str(invoice.id))
                document = invoice_view(uow.conn, book_id, invoice)
                uow.commit()
    _print(args, document, _invoice_text(document))
    return 0


def cmd_invoices_create(args: argparse.Namespace) -> int:
    from adapters.http.invoices_api import create_one_off

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
            currency=args.currency,
        ),
        collect=bool(args.finalize),
    )


def cmd_invoices_finalize(args: argparse.Namespace) -> int:
    from billing.postgres.invoices import finalize_invoice

    return _invoice_command(
        args, lambda c, b, today: finalize_invoice(c, b, args.invoice, today), collect=True
    )


def cmd_invoices_pay(args: argparse.Namespace) -> int:
    from adapters.gateways.collection import pay_invoice
    from billing.postgres.invoices import get_invoice

    def action(conn: psycopg.Connection, book_id: uuid.UUID, today: date) -> Any:
        pay_invoice(conn, book_id, args.invoice, args.payment_method, today)
        return get_invoice(conn, book_id, args.invoice)

    return _invoice_command(args, action)


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
    cc.add_argument("--book", help=BOOK_HELP)
    cc.add_argument("--name", required=True, help="the customer's (legal) name")
    cc.add_argument("--currency", required=True, help="the currency it is billed in, e.g. USD")
    cc.add_argument("--email", help="where invoices go")
    cc.add_argument("--external-id", help="its id in your CRM (unique per book)")
    cc.add_argument(
        "--payment-terms",
        choices=["net", "due_on_receipt", "end_of_month"],
        help="how the due date is set (default: net; left out: unchanged)",
    )
    cc.add_argument("--payment-terms-days", type=int, help="days to pay under net terms (30)")
    cc.add_argument("--tax-rate", help='a fraction, e.g. "0.10" for 10 %% (default 0)')
    cc.add_argument(
        "--tax-treatment",
        choices=["taxable", "exempt", "reverse_charge"],
        help="how tax applies (default: taxable)",
    )
    cl = command("list", cmd_customers_list, "list customers with their balances", customers)
    cl.add_argument("--book", help=BOOK_HELP)

    invoices = sub.add_parser("invoices", help="invoices").add_subparsers(
        dest="invoices_command", required=True
    )
    ic = command("create", cmd_invoices_create, "create a one-off draft invoice", invoices)
    ic.add_argument("--book", help=BOOK_HELP)
    ic.add_argument("--customer", required=True, help="customer id or external id")
    ic.add_argument(
        "--line",
        action="append",
        nargs="+",
        required=True,
        metavar="VALUE",
        help="DESCRIPTION QUANTITY UNIT_AMOUNT [SERVICE_START SERVICE_END]; repeat per line",
    )
    ic.add_argument("--memo", help="a note printed on the invoice")
    ic.add_argument("--currency", help="bill in this currency (default: the customer's)")
    ic.add_argument("--finalize", action="store_true", help="finalize it at once")
    for name, handler, helptext in (
        ("finalize", cmd_invoices_finalize, "number, tax and post a draft"),
        ("void", cmd_invoices_void, "void an open invoice on which nothing was paid"),
        ("show", cmd_invoices_show, "show an invoice"),
    ):
        p = command(name, handler, helptext, invoices)
        p.add_argument("invoice", help="invoice id or number (INV-2026-000001)")
        p.add_argument("--book", help=BOOK_HELP)
    ip = command("pay", cmd_invoices_pay, "charge what an invoice owes now", invoices)
    ip.add_argument("invoice", help="invoice id or number (INV-2026-000001)")
    ip.add_argument("--book", help=BOOK_HELP)
    ip.add_argument("--payment-method", help="payment method id (default: the customer's default)")
    il = command("list", cmd_invoices_list, "list invoices with their lines", invoices)
    il.add_argument("--book", help=BOOK_HELP)
    il.add_argument("--customer", help="only this customer's (id or external id)")
    il.add_argument(
        "--status", choices=["draft", "open", "paid", "void", "uncollectible"], help="only these"
    )
    il.add_argument("--from", dest="date_from", type=_date, help="issued on or after YYYY-MM-DD")
    il.add_argument("--to", dest="date_to", type=_date, help="issued on or before YYYY-MM-DD")
    il.add_argument(
        "--order",
        choices=["number", "date"],
        default="number",
        help="by number (drafts last), or by issue date then number (default: number)",
    )
    il.add_argument("--limit", type=int, default=1000, help="at most this many (1000)")


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
    """Run `action(conn, book_id, today)` → (subscription, what it issued) and print both."""
    from adapters.http.subscriptions_api import issued_json, subscription_json

    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        with unit_of_work(runtime.connection) as uow:
            today = get_book(uow.conn, book_id).today(utc_today())
            sub, invoice = action(uow.conn, book_id, today)
            document = {**subscription_json(sub), **issued_json(uow.conn, book_id, invoice)}
            uow.commit()
    text = (
        f"subscription {document['id']}  {document['status']}  every"
        f" {document['interval_count']} {document['interval']}"
        f"  next period {document['next_period_start']}"
    )
    if document["invoice"] is not None:
        text += "\n" + _invoice_text(document["invoice"])
    for note in document["credit_notes"]:
        text += (
            f"\ncredit note {note['number']} on invoice {note['invoice']}:"
            f" {note['total']} {note['currency']} ({note['credit_to']})"
        )
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
    from adapters.gateways.collection import collect_unattempted
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
            workers=args.workers,
        )
        collect_unattempted(runtime.connection, book_id, today)  # auto-collection
    if progress is not None:
        sys.stderr.write("\n")
    document = {
        "book_id": str(book_id),
        "id": str(run.id),
        "as_of": run.as_of.isoformat(),
        "status": run.status,
        "invoices_created": run.invoices_created,
        "failures": [
            {"subscription": str(f.subscription_id), "reason": f.reason} for f in run.failures
        ],
    }
    text = (
        f"billing run {run.id} as of {run.as_of}: {run.status},"
        f" {run.invoices_created} invoice(s) created"
    )
    for failure in run.failures:
        text += f"\n  not billed: subscription {failure.subscription_id}: {failure.reason}"
    _print(args, document, text)
    return 0


def cmd_clock_advance(args: argparse.Namespace) -> int:
    from adapters.http.ledger_api import moved_clock

    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        with unit_of_work(runtime.connection) as uow:
            book = moved_clock(uow.conn, book_id, args.to)
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
    sc.add_argument("--book", help=BOOK_HELP)
    sc.add_argument("--customer", required=True, help="customer id or external id")
    sc.add_argument("--item", action="append", required=True, help=item_help)
    sc.add_argument(
        "--start-date", type=_date, default=None, help="first day of service (default: today)"
    )
    sc.add_argument("--trial-end", type=_date, default=None, help="free until this day")
    sc.add_argument(
        "--billing-anchor", type=_date, default=None, help="the day periods are aligned to"
    )
    sc.add_argument("--coupon", help="coupon id or code")
    ch = command("change", cmd_subscriptions_change, "change the items, with proration", subs)
    ch.add_argument("subscription", help="subscription id")
    ch.add_argument("--book", help=BOOK_HELP)
    ch.add_argument("--item", action="append", required=True, help=item_help)
    ch.add_argument(
        "--effective-date", type=_date, default=None, help="when it changes (default: today)"
    )
    ch.add_argument(
        "--proration",
        choices=["invoice_now", "next_invoice", "none"],
        default="invoice_now",
        help="bill the difference now (default), on the next invoice, or not at all",
    )
    ca = command("cancel", cmd_subscriptions_cancel, "cancel a subscription", subs)
    ca.add_argument("subscription", help="subscription id")
    ca.add_argument("--book", help=BOOK_HELP)
    ca.add_argument("--at", default="now", help="now, period_end or a date YYYY-MM-DD")

    run = command("billing-run", cmd_billing_run, "invoice every subscription period due by a date")
    run.add_argument("--book", help=BOOK_HELP)
    run.add_argument("--as-of", type=_date, default=None, help="default: the book's today")
    run.add_argument(
        "--batch-size", type=int, default=500, help="subscriptions per transaction (500)"
    )
    run.add_argument(
        "--workers",
        type=int,
        default=1,
        help="batches billed side by side, a database connection each (1; 2 on two idle cores)",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")

    clock = sub.add_parser("clock", help="a book's simulated clock").add_subparsers(
        dest="clock_command", required=True
    )
    adv = command("advance", cmd_clock_advance, "move a simulated clock forward", clock)
    adv.add_argument("--book", help=BOOK_HELP)
    adv.add_argument("--to", type=_date, required=True, metavar="YYYY-MM-DD", help="the new today")


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
    from adapters.gateways.collection import refund_through_gateway
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
        refund_through_gateway(conn, book_id, refund)
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
    pc.add_argument("--book", help=BOOK_HELP)
    pc.add_argument("--customer", required=True, help="customer id or external id")
    pc.add_argument("--amount", required=True, help='a decimal string, e.g. "150.00"')
    pc.add_argument("--currency", required=True, help="the payment's currency")
    pc.add_argument(
        "--method",
        required=True,
        choices=["bank_transfer", "card", "cash", "check"],
        help="how it was paid",
    )
    pc.add_argument("--invoice", help="pay this invoice (else oldest due first)")
    pc.add_argument(
        "--allocate",
        action="append",
        metavar="INVOICE:AMOUNT",
        help="apply this much to this invoice (id or number); repeat per invoice",
    )
    pc.add_argument("--received-on", type=_date, default=None, help="day received (default: today)")
    pc.add_argument("--reference", help="the bank's or processor's reference")

    refunds = sub.add_parser("refunds", help="refunds").add_subparsers(
        dest="refunds_command", required=True
    )
    rc = command("create", cmd_refunds_create, "refund a payment or a credit balance", refunds)
    rc.add_argument("--book", help=BOOK_HELP)
    target = rc.add_mutually_exclusive_group(required=True)
    target.add_argument("--payment", help="payment id")
    target.add_argument("--customer", help="customer id or external id (credit balance)")
    rc.add_argument("--amount", required=True, help='a decimal string, e.g. "25.00"')
    rc.add_argument(
        "--method",
        choices=["bank_transfer", "card", "cash", "check"],
        help="how the money goes back (default: as it came)",
    )
    rc.add_argument("--reason", help="why, for the record")
    rc.add_argument("--refunded-on", type=_date, default=None, help="day refunded (default: today)")

    notes = sub.add_parser("credit-notes", help="credit notes").add_subparsers(
        dest="credit_notes_command", required=True
    )
    nc = command("create", cmd_credit_notes_create, "issue a credit note on an invoice", notes)
    nc.add_argument("--book", help=BOOK_HELP)
    nc.add_argument("--invoice", required=True, help="invoice id or number")
    what = nc.add_mutually_exclusive_group(required=True)
    what.add_argument("--amount", help="gross amount to credit (tax included)")
    what.add_argument(
        "--line",
        action="append",
        metavar="LINE_NO:NET_AMOUNT",
        help="credit this much (net of tax) on this invoice line; repeat per line",
    )
    nc.add_argument("--reason", help="why, printed on the credit note")
    nc.add_argument(
        "--credit-to",
        choices=["receivable", "customer_credit", "refund"],
        default="receivable",
        help="reduce what is due (default), credit the customer, or refund",
    )
