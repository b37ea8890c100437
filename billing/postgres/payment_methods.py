"""Customers' payment methods: cards (as gateway tokens), SEPA mandates, US bank accounts.

Rules in billing.payment_methods. IBAN and BIC are checked with `schwifty`
(country formats, check digits, the BIC registry's shape), which is why this
check lives beside the database code and not in the pure module.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from schwifty import BIC, IBAN
from schwifty.exceptions import SchwiftyException

from billing.errors import InvalidBillingRequest
from billing.payment_methods import (
    ACCOUNT_TYPES,
    HOLDER_TYPES,
    SEQUENCES,
    TYPES,
    aba_valid,
    account_fingerprint,
    card_expired,
    refuse_card_numbers,
)
from billing.postgres.credit_notes import lock_customer
from billing.postgres.customers import get_customer
from billing.postgres.ids import parse_id
from ledger.errors import NotFound

GATEWAYS = ("fake", "stripe")
BRANDS = {
    "pm_card_visa": "visa",
    "pm_card_chargeDeclined": "visa",
    "pm_card_chargeDeclinedInsufficientFunds": "visa",
    "pm_card_createDispute": "visa",
    "pm_card_authenticationRequired": "visa",
}


@dataclass(frozen=True, slots=True)
class PaymentMethod:
    id: uuid.UUID
    customer_id: uuid.UUID
    type: str
    gateway: str | None
    token: str | None
    brand: str | None
    last4: str
    exp_month: int | None
    exp_year: int | None
    details: dict[str, Any]
    created_at: datetime
    detached_at: datetime | None


_COLUMNS = (
    "id, customer_id, type, gateway, token, brand, last4, exp_month, exp_year, details,"
    " created_at, detached_at"
)


def _text(body: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise InvalidBillingRequest(f"{name} is required for this payment method type")
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise InvalidBillingRequest(f"{name} must be a non-empty string", field=name)
    return value.strip()


def _only(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed - {"type", "default", "metadata"})
    if unknown:
        raise InvalidBillingRequest(
            f"unknown field(s) for a {body.get('type')} payment method: {', '.join(unknown)}"
        )


def _card(body: dict[str, Any]) -> dict[str, Any]:
    _only(body, {"gateway", "token", "brand", "last4", "exp_month", "exp_year"})
    gateway = _text(body, "gateway")
    if gateway not in GATEWAYS:
        raise InvalidBillingRequest(f"gateway must be one of {', '.join(GATEWAYS)}")
    token = _text(body, "token")
    assert token is not None
    last4 = _text(body, "last4", required=False) or ("4242" if gateway == "fake" else None)
    if last4 is None or len(last4) != 4 or not last4.isdigit():
        raise InvalidBillingRequest("last4 is the card's last four digits", field="last4")
    # The gateway's token carries the card's expiry; a copy is optional but whole.
    month, year = body.get("exp_month"), body.get("exp_year")
    if (month is None) != (year is None):
        raise InvalidBillingRequest(
            "give exp_month and exp_year together, or neither",
            field="exp_year" if year is None else "exp_month",
        )
    if month is not None and (not isinstance(month, int) or not 1 <= month <= 12):
        raise InvalidBillingRequest("exp_month is 1 to 12", field="exp_month")
    if year is not None and (not isinstance(year, int) or not 2000 <= year <= 2200):
        raise InvalidBillingRequest("exp_year is a four-digit year", field="exp_year")
    brand = _text(body, "brand", required=False) or BRANDS.get(token, "unknown")
    return {
        "gateway": gateway,
        "token": token,
        "brand": brand,
        "last4": last4,
        "exp_month": month,
        "exp_year": year,
        "details": {},
    }


def _sepa(body: dict[str, Any]) -> dict[str, Any]:
    _only(body, {"iban", "bic", "mandate_id", "mandate_date", "sequence", "mandate_status"})
    try:
        iban = IBAN(_text(body, "iban") or "")
    except SchwiftyException as e:
        raise InvalidBillingRequest(f"iban is not a valid IBAN: {e}", field="iban") from None
    bic_text = _text(body, "bic", required=False)
    try:
        bic = BIC(bic_text) if bic_text else iban.bic
    except SchwiftyException as e:
        raise InvalidBillingRequest(f"bic is not a valid BIC: {e}", field="bic") from None
    if bic is None:
        raise InvalidBillingRequest("bic is required (it cannot be derived from this IBAN)")
    mandate_id = _text(body, "mandate_id")
    assert mandate_id is not None
    if len(mandate_id) > 35:
        raise InvalidBillingRequest("mandate_id is at most 35 characters (SEPA)")
    try:
        signed = date.fromisoformat(_text(body, "mandate_date") or "")
    except ValueError:
        raise InvalidBillingRequest("mandate_date is a date (YYYY-MM-DD)") from None
    sequence = body.get("sequence", "FRST")
    if sequence not in SEQUENCES:
        raise InvalidBillingRequest(f"sequence must be one of {', '.join(SEQUENCES)}")
    return {
        "last4": iban.compact[-4:],
        "details": {
            "iban": iban.compact,
            "bic": str(bic),
            "mandate_id": mandate_id,
            "mandate_date": signed.isoformat(),
            "sequence": sequence,
            "mandate_status": "active",
        },
    }


def _us_bank(body: dict[str, Any]) -> dict[str, Any]:
    _only(body, {"routing_number", "account_number", "account_type", "account_holder_type"})
    routing = _text(body, "routing_number") or ""
    if not aba_valid(routing):
        raise InvalidBillingRequest(
            "routing_number is not a valid ABA routing number (9 digits with its checksum)",
            field="routing_number",
        )
    account = (_text(body, "account_number") or "").replace(" ", "")
    if not account.isdigit() or not 4 <= len(account) <= 17:
        raise InvalidBillingRequest("account_number is 4 to 17 digits", field="account_number")
    account_type = body.get("account_type", "checking")
    if account_type not in ACCOUNT_TYPES:
        raise InvalidBillingRequest(f"account_type must be one of {', '.join(ACCOUNT_TYPES)}")
    holder = body.get("account_holder_type", "individual")
    if holder not in HOLDER_TYPES:
        raise InvalidBillingRequest(f"account_holder_type must be one of {', '.join(HOLDER_TYPES)}")
    # The payment method keeps last4 + a fingerprint; the full number, which an
    # ACH file must carry, goes to ach_account_numbers, which no API shows.
    return {
        "account_number": account,
        "last4": account[-4:],
        "details": {
            "routing_number": routing,
            "account_fingerprint": account_fingerprint(routing, account),
            "account_type": account_type,
            "account_holder_type": holder,
        },
    }


def attach_payment_method(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    customer_ref: str,
    body: dict[str, Any],
    today: date,
) -> PaymentMethod:
    """Validate and store a payment method; `"default": true` makes it the customer's default.
    A card that expired before the book's today is refused, as a gateway would."""
    refuse_card_numbers(body)
    kind = body.get("type")
    if kind not in TYPES:
        raise InvalidBillingRequest(f"type must be one of {', '.join(TYPES)}", field="type")
    fields = {"card": _card, "sepa_debit": _sepa, "us_bank_account": _us_bank}[kind](body)
    if kind == "card" and card_expired(fields["exp_month"], fields["exp_year"], today):
        raise InvalidBillingRequest(
            f"the card expired (exp_month/exp_year {fields['exp_month']:02d}/"
            f"{fields['exp_year']}) before the book's today, {today.isoformat()}",
            field="exp_month",
        )
    make_default = body.get("default", False)
    if not isinstance(make_default, bool):
        raise InvalidBillingRequest("default is true or false")
    metadata = body.get("metadata", {})
    if not isinstance(metadata, dict):
        raise InvalidBillingRequest("metadata is an object")
    customer = get_customer(conn, book_id, customer_ref)
    lock_customer(conn, book_id, customer.id)
    pm_id = uuid.uuid4()
    details = {**fields.get("details", {}), **({"metadata": metadata} if metadata else {})}
    conn.execute(
        "insert into payment_methods (book_id, id, customer_id, type, gateway, token, brand,"
        " last4, exp_month, exp_year, details) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            book_id,
            pm_id,
            customer.id,
            kind,
            fields.get("gateway"),
            fields.get("token"),
            fields.get("brand"),
            fields["last4"],
            fields.get("exp_month"),
            fields.get("exp_year"),
            Jsonb(details),
        ),
    )
    if "account_number" in fields:
        conn.execute(
            "insert into ach_account_numbers (book_id, payment_method_id, account_number)"
            " values (%s, %s, %s)",
            (book_id, pm_id, fields["account_number"]),
        )
    if make_default:
        conn.execute(
            "update customers set default_payment_method = %s where book_id = %s and id = %s",
            (pm_id, book_id, customer.id),
        )
    return get_payment_method(conn, book_id, customer.id, str(pm_id))


def get_payment_method(
    conn: psycopg.Connection, book_id: uuid.UUID, customer_id: uuid.UUID | None, ref: str
) -> PaymentMethod:
    pm_id = parse_id(ref, "payment method")
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"select {_COLUMNS} from payment_methods where book_id = %s and id = %s"
            " and (%s::uuid is null or customer_id = %s)",
            (book_id, pm_id, customer_id, customer_id),
        ).fetchone()
    if row is None:
        raise NotFound(f"payment method {ref!r} does not exist for this customer")
    return PaymentMethod(**row)


def list_payment_methods(
    conn: psycopg.Connection, book_id: uuid.UUID, customer_ref: str
) -> list[PaymentMethod]:
    customer = get_customer(conn, book_id, customer_ref)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"select {_COLUMNS} from payment_methods where book_id = %s and customer_id = %s"
            " and detached_at is null order by created_at, id",
            (book_id, customer.id),
        ).fetchall()
    return [PaymentMethod(**r) for r in rows]


def detach_payment_method(
    conn: psycopg.Connection, book_id: uuid.UUID, customer_ref: str, ref: str
) -> PaymentMethod:
    """Detach (kept for the attempts that name it); a default is no longer the default."""
    customer = get_customer(conn, book_id, customer_ref)
    lock_customer(conn, book_id, customer.id)
    pm = get_payment_method(conn, book_id, customer.id, ref)
    if pm.detached_at is None:
        conn.execute(
            "update payment_methods set detached_at = now() where book_id = %s and id = %s",
            (book_id, pm.id),
        )
        conn.execute(
            "update customers set default_payment_method = null"
            " where book_id = %s and id = %s and default_payment_method = %s",
            (book_id, customer.id, pm.id),
        )
    return get_payment_method(conn, book_id, customer.id, ref)
