"""The `stripe` gateway, written with Stripe's official Python package.

- charge: a PaymentIntent created and confirmed at once, off-session, with the
  customer's stored payment method token; the fee is read from the charge's
  balance transaction (expanded in the same call).
- refund: the Refunds API; payouts: the Payouts API and the payout's balance
  transactions; disputes arrive as webhooks (adapters/gateways/stripe_webhooks.py).
- Every write carries our idempotency key (Stripe's `Idempotency-Key` header):
  the attempt's id for a charge, so a retry after a timeout gets the first
  PaymentIntent back and never charges twice.
- Errors: a card decline is an outcome (`failed` with Stripe's decline_code);
  `requires_action` / `authentication_required` is `requires_action`; a network
  error, timeout, 429 or 5xx is GatewayUnavailable (the outcome is unknown:
  nothing posts, the attempt stays pending and is resumed with the same key).

The API base is the book setting `stripe.base_url` (default Stripe's), so tests
run this adapter against a local stub server (tests/payments/stripe_stub.py).

Like the fake gateway, it mirrors what the gateway did into `gateway_charges`
on the caller's connection: disputes and refunds name charges there.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import psycopg
import stripe

from adapters.gateways.base import (
    ChargeOutcome,
    ChargeRequest,
    ChargeResult,
    GatewayRefund,
    GatewayUnavailable,
    PayoutInfo,
    WebhookEvent,
    WebhookRejected,
)
from adapters.gateways.stripe_signature import verify_signature
from billing.errors import InvalidBillingRequest
from ledger.money import Money, quantum

__all__ = [
    "NAME",
    "StripeGateway",
    "StripePayout",
    "day_of",
    "fee_of",
    "from_minor",
    "payout_uuid",
    "to_minor",
]

NAME = "stripe"
TIMEOUT_SECONDS = 30.0

# Stripe's own minor units (docs.stripe.com/currencies), which differ from ISO 4217
# for a few codes: these are sent as whole units. Three-decimal currencies are sent
# in thousandths whose last digit must be 0. Everything else has two decimals.
ZERO_DECIMAL = frozenset(
    [
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "JPY",
        "KMF",
        "KRW",
        "MGA",
        "PYG",
        "RWF",
        "UGX",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    ]
)
THREE_DECIMAL = frozenset(["BHD", "JOD", "KWD", "OMR", "TND"])


def exponent(currency: str) -> int:
    if currency in ZERO_DECIMAL:
        return 0
    return 3 if currency in THREE_DECIMAL else 2


def to_minor(money: Money) -> int:
    """The integer Stripe expects for an amount (108.00 USD → 10800, 500 JPY → 500)."""
    scaled = money.amount.scaleb(exponent(money.currency))
    if scaled != scaled.to_integral_value():
        raise InvalidBillingRequest(
            f"{money} cannot be charged through Stripe: it has more decimals than Stripe"
            f" takes for {money.currency}",
            currency=money.currency,
        )
    units = int(scaled)
    if money.currency in THREE_DECIMAL and units % 10:
        raise InvalidBillingRequest(
            f"Stripe charges {money.currency} in whole hundredths: {money} is not one",
            currency=money.currency,
        )
    return units


def from_minor(units: int, currency: str) -> Money:
    """Stripe's integer back to Money in our (ISO 4217) decimal places."""
    code = currency.upper()
    return Money(Decimal(units).scaleb(-exponent(code)), code).quantized()


def payout_uuid(payout_id: str) -> uuid.UUID:
    """Our payouts table keys a Stripe payout `po_…` by a uuid derived from it."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"stripe:payout:{payout_id}")


def day_of(timestamp: int | None) -> date | None:
    return datetime.fromtimestamp(timestamp, UTC).date() if timestamp is not None else None


@dataclass(frozen=True, slots=True)
class StripePayout:
    info: PayoutInfo
    stripe_id: str
    balance_transactions: tuple[dict[str, Any], ...]


def fee_of(charge: Mapping[str, Any]) -> Money:
    """The fee of a charge, from its expanded balance transaction, in the charge's
    currency. A balance settled in another currency (a JPY charge on a USD account)
    is converted back at the transaction's own exchange rate, half-up."""
    currency = str(charge["currency"]).upper()
    txn = charge.get("balance_transaction")
    if not isinstance(txn, Mapping):
        return Money.zero(currency)
    fee = from_minor(int(txn.get("fee") or 0), str(txn["currency"]))
    if fee.currency == currency:
        return fee
    rate = Decimal(str(txn.get("exchange_rate") or 0))
    if rate <= 0:
        raise InvalidBillingRequest(
            f"Stripe's balance transaction {txn.get('id')} is in {fee.currency} without a rate"
        )
    converted = (fee.amount / rate).quantize(quantum(currency), rounding=ROUND_HALF_UP)
    return Money(converted, currency)


def _read_error(e: stripe.StripeError) -> Exception:
    """A failed read: retry later when Stripe was unreachable or failing, else say why."""
    if isinstance(e, stripe.APIConnectionError | stripe.RateLimitError | stripe.APIError):
        return GatewayUnavailable(f"Stripe could not be reached: {e}")
    return InvalidBillingRequest(f"Stripe refused the request: {e.user_message or e}")


class StripeGateway:
    name = NAME

    def __init__(
        self,
        conn: psycopg.Connection,
        book_id: uuid.UUID,
        api_key: str,
        base_url: str | None = None,
        webhook_secret: str | None = None,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        self.conn = conn
        self.book_id = book_id
        self.webhook_secret = webhook_secret
        # No retries inside the library: a retry is the attempt resumed later with
        # the same idempotency key, so an unknown outcome is never hidden in here.
        self.client = stripe.StripeClient(
            api_key,
            base_addresses={"api": base_url.rstrip("/")} if base_url else None,
            max_network_retries=0,
            http_client=stripe.HTTPXClient(timeout=timeout, allow_sync_methods=True),
        )

    # --- charges ----------------------------------------------------------------------

    def charge(self, request: ChargeRequest) -> ChargeResult:
        params: dict[str, Any] = {
            "amount": to_minor(request.amount),
            "currency": request.amount.currency.lower(),
            "payment_method": request.token,
            "confirm": True,
            "off_session": True,
            "metadata": {**request.metadata, "attempt": str(request.idempotency_key)},
            "expand": ["latest_charge.balance_transaction"],
        }
        if request.customer:
            params["customer"] = request.customer
        try:
            intent = self.client.v1.payment_intents.create(
                params,  # type: ignore[arg-type]
                {"idempotency_key": f"attempt-{request.idempotency_key}"},
            ).to_dict()
        except stripe.CardError as e:
            return self._record(request, *self._declined(e))
        except (stripe.APIConnectionError, stripe.RateLimitError) as e:
            raise GatewayUnavailable(f"Stripe could not be reached: {e.user_message or e}") from e
        except stripe.InvalidRequestError as e:
            # A token Stripe does not know (resource_missing) is a failed attempt, like
            # the fake gateway's; other invalid requests are ours to fix.
            if e.code in ("resource_missing", "payment_method_unactivated"):
                return self._record(request, request.idempotency_key.hex, "failed", e.code, None)
            raise InvalidBillingRequest(f"Stripe refused the charge: {e.user_message}") from e
        except stripe.IdempotencyError as e:
            raise InvalidBillingRequest(f"Stripe refused the idempotency key: {e}") from e
        except stripe.APIError as e:  # 5xx: the outcome is unknown
            raise GatewayUnavailable(f"Stripe answered {e.http_status}: retry later") from e
        except (stripe.AuthenticationError, stripe.PermissionError) as e:
            raise InvalidBillingRequest(
                f"Stripe refused this book's stripe.api_key: {e.user_message}"
            ) from e
        except stripe.StripeError as e:  # anything else: the outcome is not known
            raise GatewayUnavailable(f"Stripe answered {e.http_status}: {e}") from e
        return self._record(request, *self.intent_outcome(intent))

    @staticmethod
    def intent_outcome(intent: Mapping[str, Any]) -> tuple[str, str, str | None, Money | None]:
        """(charge id, outcome, code, fee) of a PaymentIntent Stripe answered with."""
        latest = intent.get("latest_charge")
        charge = latest if isinstance(latest, Mapping) else None
        charge_id = str(charge["id"]) if charge else str(latest or intent["id"])
        status = intent.get("status")
        if status == "succeeded":
            return charge_id, "succeeded", None, fee_of(charge) if charge else None
        if status == "requires_action":
            return charge_id, "requires_action", "authentication_required", None
        if status in ("processing", "requires_capture"):
            raise GatewayUnavailable(f"Stripe is still processing {intent['id']}: retry later")
        error = intent.get("last_payment_error") or {}
        code = error.get("decline_code") or error.get("code") or str(status)
        return charge_id, "failed", code, None

    @staticmethod
    def _declined(e: stripe.CardError) -> tuple[str, str, str | None, Money | None]:
        error = e.error
        code = (error.decline_code or error.code) if error else e.code
        intent = error.payment_intent if error else None
        charge_id = (error.charge if error else None) or (intent.id if intent else None)
        if (error and error.code) == "authentication_required":
            return charge_id or "", "requires_action", "authentication_required", None
        return charge_id or "", "failed", code or "card_declined", None

    def _record(
        self,
        request: ChargeRequest,
        charge_id: str,
        outcome: str,
        code: str | None,
        fee: Money | None,
    ) -> ChargeResult:
        charge_id = charge_id or f"pi_attempt_{request.idempotency_key.hex}"
        fee = fee or Money.zero(request.amount.currency)
        self.mirror_charge(
            charge_id,
            request.idempotency_key,
            request.token,
            request.amount,
            fee,
            outcome,
            code,
            request.on,
        )
        return ChargeResult(charge_id, ChargeOutcome(outcome), code, fee)

    def mirror_charge(
        self,
        charge_id: str,
        attempt_id: uuid.UUID,
        token: str,
        amount: Money,
        fee: Money,
        outcome: str,
        code: str | None,
        on: date,
    ) -> None:
        """The attempt's charge in our gateway_charges. Written once a charge succeeded
        (its answer or its webhook, whichever comes first); before that, a later
        outcome replaces an earlier one (requires_action, then authenticated)."""
        self.conn.execute(
            "insert into gateway_charges (book_id, id, gateway, attempt_id, token, amount,"
            " currency, fee, status, code, captured_on)"
            " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " on conflict (book_id, attempt_id) do update set id = excluded.id,"
            " amount = excluded.amount, fee = excluded.fee, status = excluded.status,"
            " code = excluded.code where gateway_charges.status <> 'succeeded'",
            (
                self.book_id,
                charge_id,
                NAME,
                attempt_id,
                token,
                amount.amount,
                amount.currency,
                fee.amount,
                outcome,
                code,
                on,
            ),
        )

    def retrieve_charge(self, charge_id: str) -> dict[str, Any]:
        """A charge with its balance transaction (for the fee), as Stripe's JSON."""
        try:
            return self.client.v1.charges.retrieve(
                charge_id, {"expand": ["balance_transaction"]}
            ).to_dict()
        except stripe.StripeError as e:
            raise _read_error(e) from e

    # --- refunds ----------------------------------------------------------------------

    def refund(
        self, charge_id: str, amount: Money, idempotency_key: uuid.UUID, on: date
    ) -> GatewayRefund:
        try:
            refund = self.client.v1.refunds.create(
                {"charge": charge_id, "amount": to_minor(amount)},
                {"idempotency_key": f"refund-{idempotency_key}"},
            ).to_dict()
        except (stripe.APIConnectionError, stripe.RateLimitError) as e:
            raise GatewayUnavailable(f"Stripe could not be reached: {e}") from e
        except stripe.APIError as e:
            raise GatewayUnavailable(f"Stripe answered {e.http_status}: retry later") from e
        except stripe.StripeError as e:  # charge_already_refunded, amount too large…
            raise InvalidBillingRequest(
                f"Stripe refused the refund of {charge_id}: {e.user_message or e}",
                stripe_code=e.code,
            ) from e
        if refund.get("status") == "failed":
            raise InvalidBillingRequest(f"Stripe's refund {refund['id']} failed")
        return GatewayRefund(
            str(refund["id"]), charge_id, from_minor(int(refund["amount"]), refund["currency"])
        )

    # --- payouts ----------------------------------------------------------------------

    @staticmethod
    def payout_info(payout: Mapping[str, Any]) -> PayoutInfo:
        arrival = day_of(payout.get("arrival_date"))
        assert arrival is not None
        return PayoutInfo(
            payout_uuid(str(payout["id"])),
            from_minor(int(payout["amount"]), str(payout["currency"])),
            arrival,
            "paid" if payout.get("status") == "paid" else "pending",
        )

    def fetch_payout(self, payout_id: str) -> StripePayout:
        """A payout and the balance transactions it settled (charges, refunds, fees)."""
        try:
            payout = self.client.v1.payouts.retrieve(payout_id).to_dict()
            txns = self.client.v1.balance_transactions.list(
                {"payout": payout_id, "limit": 100}
            ).auto_paging_iter()
            found = tuple(t.to_dict() for t in txns)
        except stripe.StripeError as e:
            raise _read_error(e) from e
        return StripePayout(self.payout_info(payout), payout_id, found)

    def payouts(self, through: date) -> list[PayoutInfo]:
        until = int(datetime(through.year, through.month, through.day, tzinfo=UTC).timestamp())
        try:
            found = self.client.v1.payouts.list(
                {"arrival_date": {"lte": until + 86399}, "limit": 100}
            ).auto_paging_iter()
            return sorted(
                (self.payout_info(p.to_dict()) for p in found), key=lambda p: p.arrival_date
            )
        except stripe.StripeError as e:
            raise _read_error(e) from e

    # --- webhooks ---------------------------------------------------------------------

    def parse_webhook(self, payload: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        if not self.webhook_secret:
            raise WebhookRejected("this book has no stripe.webhook_secret")
        now = int(datetime.now(UTC).timestamp())
        verify_signature(payload, headers.get("Stripe-Signature"), self.webhook_secret, now)
        try:
            event = json.loads(payload)
        except ValueError:
            raise WebhookRejected("the webhook body is not JSON") from None
        if not (
            isinstance(event, dict)
            and isinstance(event.get("id"), str)
            and isinstance(event.get("type"), str)
        ):
            raise WebhookRejected("a Stripe event is an object with an id and a type")
        data = event.get("data")
        return WebhookEvent(event["id"], event["type"], data if isinstance(data, dict) else {})
