"""Payment commands: payment methods, the fake gateway's payouts and disputes."""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Callable
from datetime import date
from typing import Any

import psycopg

from adapters.cli.billing import _payments_command
from adapters.cli.common import BOOK_HELP, _date, _print, read_book


def cmd_payment_methods_add(args: argparse.Namespace) -> int:
    from adapters.http.payment_methods_api import payment_method_json
    from billing.postgres.customers import get_customer
    from billing.postgres.payment_methods import attach_payment_method

    body: dict[str, Any] = {"type": args.type}
    for field in (
        "gateway",
        "token",
        "iban",
        "bic",
        "mandate_id",
        "mandate_date",
        "sequence",
        "routing_number",
        "account_number",
        "account_type",
        "account_holder_type",
    ):
        value = getattr(args, field)
        if isinstance(value, date):
            value = value.isoformat()
        if value is not None:
            body[field] = value
    if args.type == "card":
        body.setdefault("gateway", "fake")
    if args.default:
        body["default"] = True

    def action(conn: Any, book_id: uuid.UUID, today: date) -> tuple[dict[str, Any], str]:
        pm = attach_payment_method(conn, book_id, args.customer, body, today)
        customer = get_customer(conn, book_id, args.customer)
        doc = payment_method_json(pm, customer.default_payment_method == pm.id)
        return doc, f"payment method {doc['id']}  {doc['type']} …{doc['last4']}"

    return _payments_command(args, action)


def cmd_payment_methods_list(args: argparse.Namespace) -> int:
    from adapters.http.payment_methods_api import payment_method_json
    from billing.postgres.customers import get_customer
    from billing.postgres.payment_methods import list_payment_methods

    def read(conn: psycopg.Connection, book_id: uuid.UUID, _today: date) -> list[dict[str, Any]]:
        customer = get_customer(conn, book_id, args.customer)
        return [
            payment_method_json(p, customer.default_payment_method == p.id)
            for p in list_payment_methods(conn, book_id, args.customer)
        ]

    book_id, found = read_book(args, read)
    text = "\n".join(
        f"{p['id']}  {p['type']:<16} {p['gateway'] or '-':<6} …{p['last4']}"
        + ("  default" if p["default"] else "")
        for p in found
    )
    _print(args, {"book_id": str(book_id), "payment_methods": found}, text or "none")
    return 0


def cmd_payment_methods_detach(args: argparse.Namespace) -> int:
    from adapters.http.payment_methods_api import payment_method_json
    from billing.postgres.payment_methods import detach_payment_method

    def action(conn: Any, book_id: uuid.UUID, _today: date) -> tuple[dict[str, Any], str]:
        pm = detach_payment_method(conn, book_id, args.customer, args.payment_method)
        return payment_method_json(pm, False), f"payment method {pm.id} detached"

    return _payments_command(args, action)


def cmd_payouts_list(args: argparse.Namespace) -> int:
    from adapters.gateways.collection import list_payouts
    from adapters.http.collection_api import payout_json

    book_id, found = read_book(
        args, lambda conn, book, _t: [payout_json(p) for p in list_payouts(conn, book)]
    )
    text = "\n".join(
        f"{p['id']}  {p['arrival_date']}  {p['amount']:>12} {p['currency']}  {p['status']}"
        for p in found
    )
    _print(args, {"book_id": str(book_id), "payouts": found}, text or "no payouts")
    return 0


def cmd_disputes_list(args: argparse.Namespace) -> int:
    from adapters.gateways.collection import list_disputes
    from adapters.http.collection_api import dispute_json

    book_id, found = read_book(
        args, lambda conn, book, _t: [dispute_json(d) for d in list_disputes(conn, book)]
    )
    text = "\n".join(
        f"{d['id']}  opened {d['opened_on']}  {d['amount']:>12} {d['currency']}"
        f" (fee {d['fee']})  {d['status']}"
        for d in found
    )
    _print(args, {"book_id": str(book_id), "disputes": found}, text or "no disputes")
    return 0


def cmd_disputes_close(args: argparse.Namespace) -> int:
    from adapters.gateways.collection import close_dispute
    from adapters.http.collection_api import dispute_json

    def action(conn: Any, book_id: uuid.UUID, today: date) -> tuple[dict[str, Any], str]:
        doc = dispute_json(close_dispute(conn, book_id, args.dispute, args.outcome, today))
        return doc, f"dispute {doc['id']} {doc['status']}"

    return _payments_command(args, action)


def _collection_parsers(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    methods = sub.add_parser("payment-methods", help="customers' payment methods").add_subparsers(
        dest="payment_methods_command", required=True
    )
    add = command("add", cmd_payment_methods_add, "attach a payment method to a customer", methods)
    add.add_argument("--book", help=BOOK_HELP)
    add.add_argument("--customer", required=True, help="customer id or external id")
    add.add_argument(
        "--type", required=True, choices=["card", "sepa_debit", "us_bank_account"], help="its kind"
    )
    add.add_argument("--gateway", choices=["fake", "stripe"], help="card: its gateway (fake)")
    add.add_argument("--token", help="card: the gateway's token, e.g. pm_card_visa")
    add.add_argument("--iban", help="sepa_debit: the account's IBAN")
    add.add_argument("--bic", help="sepa_debit: the bank's BIC")
    add.add_argument("--mandate-id", help="sepa_debit: the mandate reference")
    add.add_argument("--mandate-date", type=_date, help="sepa_debit: the day it was signed")
    add.add_argument("--sequence", choices=["FRST", "RCUR"], help="sepa_debit: FRST (default)")
    add.add_argument("--routing-number", help="us_bank_account: 9-digit ABA routing number")
    add.add_argument("--account-number", help="us_bank_account: kept as last4 + fingerprint")
    add.add_argument("--account-type", choices=["checking", "savings"], help="(checking)")
    add.add_argument(
        "--account-holder-type", choices=["individual", "company"], help="(individual)"
    )
    add.add_argument("--default", action="store_true", help="make it the customer's default")
    ls = command("list", cmd_payment_methods_list, "list a customer's payment methods", methods)
    ls.add_argument("--book", help=BOOK_HELP)
    ls.add_argument("--customer", required=True, help="customer id or external id")
    det = command("detach", cmd_payment_methods_detach, "detach a payment method", methods)
    det.add_argument("payment_method", help="payment method id")
    det.add_argument("--book", help=BOOK_HELP)
    det.add_argument("--customer", required=True, help="customer id or external id")

    payouts = sub.add_parser("payouts", help="the gateways' payouts").add_subparsers(
        dest="payouts_command", required=True
    )
    pl = command("list", cmd_payouts_list, "list payouts (pending and paid)", payouts)
    pl.add_argument("--book", help=BOOK_HELP)

    disputes = sub.add_parser("disputes", help="card disputes").add_subparsers(
        dest="disputes_command", required=True
    )
    dl = command("list", cmd_disputes_list, "list disputes", disputes)
    dl.add_argument("--book", help=BOOK_HELP)
    dc = command(
        "close", cmd_disputes_close, "close a fake-gateway dispute as won or lost", disputes
    )
    dc.add_argument("dispute", help="dispute id")
    dc.add_argument("--outcome", required=True, choices=["won", "lost"], help="the decision")
    dc.add_argument("--book", help=BOOK_HELP)
