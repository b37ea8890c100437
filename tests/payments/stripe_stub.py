"""A local stand-in for api.stripe.com: a threading http.server on a free loopback
port answering Stripe's documented JSON shapes (docs.stripe.com/api) for what
adapters/gateways/stripe.py calls, so the real adapter, with the official
`stripe` package, runs in tests without the network.

It keeps Stripe's semantics that matter to us:
- requests are form-encoded (`metadata[attempt]=…`, `expand[0]=…`), answers JSON;
- the `Idempotency-Key` header: the same key gets the first answer back (a 4xx too),
  and nothing happens twice;
- test payment methods: `pm_card_visa` succeeds; `pm_card_chargeDeclined`,
  `pm_card_chargeDeclinedInsufficientFunds` are 402 `card_error`s with the
  `decline_code`; `pm_card_authenticationRequired` off-session is a 402 with code
  `authentication_required`; `pm_card_threeDSecureRequired` leaves the intent in
  `requires_action`; an unknown token is a 400 `resource_missing`;
- fees: 2.9 % + 30 minor units (zero-decimal currencies: 3.6 %), half-up, on the
  charge's balance transaction.

Faults for tests: `fault = "drop"` performs the next PaymentIntent create and
closes the connection without answering (a timeout seen by the client);
`fault = "500"` answers the next request 500 without doing anything. `on_intent` is called with
the intent before the answer is sent (to race a webhook against it).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from adapters.gateways.stripe import ZERO_DECIMAL
from adapters.gateways.stripe_signature import sign

Json = dict[str, Any]

DECLINES = {
    "pm_card_chargeDeclined": "generic_decline",
    "pm_card_chargeDeclinedInsufficientFunds": "insufficient_funds",
}


def nest(pairs: list[tuple[str, str]]) -> Json:
    """Stripe's form encoding back to JSON: a[b]=1 → {"a": {"b": "1"}}, e[0]=x → lists."""
    out: Json = {}
    for key, value in pairs:
        parts = key.replace("]", "").split("[")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    result = _lists(out)
    assert isinstance(result, dict)
    return result


def _lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    fixed = {k: _lists(v) for k, v in node.items()}
    if fixed and all(k.isdigit() for k in fixed):
        return [fixed[k] for k in sorted(fixed, key=int)]
    return fixed


class StripeStub:
    def __init__(self, api_key: str = "sk_test_stub", webhook_secret: str = "whsec_stub") -> None:
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.objects: dict[str, Json] = {}
        self.idempotent: dict[str, tuple[int, Json]] = {}
        self.keys_seen: list[str] = []
        self.intents_created = 0
        self.fault: str | None = None
        self.on_intent: Callable[[Json], None] | None = None
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> StripeStub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- objects -----------------------------------------------------------------------

    def _id(self, prefix: str) -> str:
        return f"{prefix}_stub{next(self.ids):06d}"

    @staticmethod
    def fee(amount: int, currency: str) -> int:
        if currency.upper() in ZERO_DECIMAL:
            return int((Decimal(amount) * Decimal("0.036")).quantize(Decimal(1), ROUND_HALF_UP))
        rounded = (Decimal(amount) * Decimal("0.029")).quantize(Decimal(1), ROUND_HALF_UP)
        return int(rounded) + 30

    def _txn(self, kind: str, source: str, amount: int, fee: int, currency: str) -> Json:
        txn: Json = {
            "id": self._id("txn"),
            "object": "balance_transaction",
            "amount": amount,
            "currency": currency,
            "fee": fee,
            "fee_details": [{"amount": fee, "currency": currency, "type": "stripe_fee"}]
            if fee
            else [],
            "net": amount - fee,
            "exchange_rate": None,
            "type": kind,
            "source": source,
            "status": "pending",
            "available_on": int(time.time()) + 2 * 86400,
            "created": int(time.time()),
            "payout": None,
        }
        self.objects[txn["id"]] = txn
        return txn

    def _intent(self, form: Json) -> tuple[int, Json]:
        amount, currency = int(form["amount"]), str(form["currency"])
        token = str(form.get("payment_method", ""))
        if not token.startswith("pm_card_"):
            return 400, {
                "error": {
                    "type": "invalid_request_error",
                    "code": "resource_missing",
                    "param": "payment_method",
                    "message": f"No such PaymentMethod: '{token}'",
                }
            }
        self.intents_created += 1
        intent: Json = {
            "id": self._id("pi"),
            "object": "payment_intent",
            "amount": amount,
            "amount_received": 0,
            "currency": currency,
            "customer": form.get("customer"),
            "payment_method": token,
            "metadata": form.get("metadata", {}),
            "created": int(time.time()),
            "latest_charge": None,
            "last_payment_error": None,
            "next_action": None,
            "livemode": False,
            "status": "requires_payment_method",
        }
        self.objects[intent["id"]] = intent
        if token == "pm_card_threeDSecureRequired":
            intent["status"] = "requires_action"
            intent["next_action"] = {"type": "use_stripe_sdk", "use_stripe_sdk": {}}
            return 200, intent
        charge = self._charge(intent, token)
        intent["latest_charge"] = charge["id"]
        code = DECLINES.get(token)
        if token == "pm_card_authenticationRequired":
            error = {
                "type": "card_error",
                "code": "authentication_required",
                "decline_code": "authentication_required",
            }
        elif code:
            error = {"type": "card_error", "code": "card_declined", "decline_code": code}
        else:
            intent["status"] = "succeeded"
            intent["amount_received"] = amount
            return 200, intent
        charge["status"] = "failed"
        error |= {"message": "Your card was declined.", "charge": charge["id"]}
        intent["last_payment_error"] = dict(error)
        return 402, {"error": error | {"payment_intent": dict(intent)}}

    def authenticate(self, intent_id: str) -> Json:
        """The customer completes 3-D Secure: the intent is charged and succeeds."""
        intent = self.objects[intent_id]
        charge = self._charge(intent, "pm_card_visa")
        intent |= {"status": "succeeded", "amount_received": intent["amount"],
                   "latest_charge": charge["id"], "next_action": None}  # fmt: skip
        return intent

    def _charge(self, intent: Json, token: str) -> Json:
        charge: Json = {
            "id": self._id("ch"),
            "object": "charge",
            "amount": intent["amount"],
            "amount_captured": intent["amount"],
            "amount_refunded": 0,
            "currency": intent["currency"],
            "payment_intent": intent["id"],
            "payment_method": token,
            "balance_transaction": None,
            "captured": True,
            "disputed": False,
            "refunded": False,
            "status": "succeeded",
            "metadata": intent["metadata"],
            "refunds": {"object": "list", "data": [], "has_more": False},
        }
        if token not in DECLINES and token != "pm_card_authenticationRequired":
            fee = self.fee(intent["amount"], intent["currency"])
            txn = self._txn("charge", charge["id"], intent["amount"], fee, intent["currency"])
            charge["balance_transaction"] = txn["id"]
        self.objects[charge["id"]] = charge
        return charge

    def _refund(self, form: Json) -> tuple[int, Json]:
        charge = self.objects.get(str(form.get("charge")))
        if charge is None:
            return 404, {
                "error": {
                    "type": "invalid_request_error",
                    "code": "resource_missing",
                    "message": "No such charge",
                }
            }
        amount = int(form.get("amount", charge["amount"] - charge["amount_refunded"]))
        if amount > charge["amount"] - charge["amount_refunded"]:
            return 400, {
                "error": {
                    "type": "invalid_request_error",
                    "code": "charge_already_refunded",
                    "message": "Refund amount is greater than unrefunded",
                }
            }
        return 200, self.refund_in_dashboard(charge["id"], amount)

    def refund_in_dashboard(self, charge_id: str, amount: int) -> Json:
        """A refund as Stripe makes it (the API's and the dashboard's are the same)."""
        charge = self.objects[charge_id]
        refund = {
            "id": self._id("re"),
            "object": "refund",
            "amount": amount,
            "charge": charge_id,
            "currency": charge["currency"],
            "payment_intent": charge["payment_intent"],
            "status": "succeeded",
            "balance_transaction": None,
        }
        txn = self._txn("refund", refund["id"], -amount, 0, charge["currency"])
        refund["balance_transaction"] = txn["id"]
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        charge["refunds"]["data"].insert(0, refund)
        self.objects[refund["id"]] = refund
        return refund

    def dispute(self, charge_id: str, fee: int = 1500) -> Json:
        charge = self.objects[charge_id]
        dispute_id = self._id("dp")
        txn = self._txn("adjustment", dispute_id, -charge["amount"], fee, charge["currency"])
        txn["reporting_category"] = "dispute"
        charge["disputed"] = True
        dispute = {
            "id": dispute_id,
            "object": "dispute",
            "amount": charge["amount"],
            "currency": charge["currency"],
            "charge": charge_id,
            "payment_intent": charge["payment_intent"],
            "reason": "fraudulent",
            "status": "needs_response",
            "evidence_details": {
                "due_by": 1770595199,  # 2026-02-08 23:59:59 UTC
                "has_evidence": False,
                "past_due": False,
                "submission_count": 0,
            },
            "balance_transactions": [txn],
            "is_charge_refundable": False,
            "created": int(time.time()),
        }
        self.objects[dispute_id] = dispute
        return dispute

    def close_dispute(self, dispute_id: str, status: str) -> Json:
        dispute = self.objects[dispute_id]
        dispute["status"] = status
        if status == "won":
            txn = self._txn("adjustment", dispute_id, dispute["amount"], 0, dispute["currency"])
            dispute["balance_transactions"].append(txn)
        return dispute

    def payout(self, arrival_date: int) -> Json:
        """Pay out every balance transaction not yet paid out, in one payout."""
        txns = [
            t
            for t in self.objects.values()
            if t["object"] == "balance_transaction"
            and t["payout"] is None
            and t["type"] != "payout"
        ]
        currency = txns[0]["currency"] if txns else "usd"
        payout_id = self._id("po")
        total = sum(t["net"] for t in txns)
        own = self._txn("payout", payout_id, -total, 0, currency)
        for t in [*txns, own]:
            t["payout"] = payout_id
        payout = {
            "id": payout_id,
            "object": "payout",
            "amount": total,
            "currency": currency,
            "arrival_date": arrival_date,
            "automatic": True,
            "balance_transaction": own["id"],
            "method": "standard",
            "type": "bank_account",
            "status": "paid",
        }
        self.objects[payout_id] = payout
        return payout

    def event(self, kind: str, obj: Json) -> bytes:
        body = {
            "id": self._id("evt"),
            "object": "event",
            "type": kind,
            "api_version": "2025-01-27.acacia",
            "created": int(time.time()),
            "data": {"object": obj},
            "livemode": False,
        }
        return json.dumps(body).encode()

    def signature(self, payload: bytes) -> str:
        return sign(payload, self.webhook_secret, int(time.time()))

    # --- HTTP --------------------------------------------------------------------------

    def _expanded(self, obj: Json, paths: list[str]) -> Json:
        out: Json = json.loads(json.dumps(obj))
        for path in paths:
            node: Any = out
            for part in path.split("."):
                if isinstance(node, dict) and isinstance(node.get(part), str):
                    node[part] = json.loads(json.dumps(self.objects[node[part]]))
                node = node.get(part) if isinstance(node, dict) else None
        return out

    def _route(self, method: str, path: str, form: Json) -> tuple[int, Json]:
        parts = path.strip("/").split("/")
        expand = list(form.get("expand", []))
        if method == "POST" and parts == ["v1", "payment_intents"]:
            status, body = self._intent(form)
            if status == 200:
                body = self._expanded(body, expand)
            return status, body
        if method == "POST" and parts == ["v1", "refunds"]:
            return self._refund(form)
        if method == "GET" and len(parts) == 3 and parts[2] in self.objects:
            return 200, self._expanded(self.objects[parts[2]], expand)
        if method == "GET" and parts[1:] == ["balance_transactions"]:
            data = [
                t
                for t in self.objects.values()
                if t["object"] == "balance_transaction" and t["payout"] == form.get("payout")
            ]
            return 200, {"object": "list", "data": data, "has_more": False, "url": path}
        if method == "GET" and parts[1:] == ["payouts"]:
            until = int(form.get("arrival_date", {}).get("lte", 2**62))
            data = [p for p in self.objects.values()
                    if p["object"] == "payout" and p["arrival_date"] <= until]  # fmt: skip
            return 200, {"object": "list", "data": data, "has_more": False, "url": path}
        return 404, {
            "error": {
                "type": "invalid_request_error",
                "code": "resource_missing",
                "message": f"Unrecognized request URL ({method}: {path})",
            }
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _answer(self, status: int, body: Json) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.send_header("Request-Id", f"req_{next(stub.ids)}")
                self.end_headers()
                self.wfile.write(raw)

            def _serve(self, method: str) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else url.query
                form = nest(parse_qsl(raw, keep_blank_values=True))
                if self.headers.get("Authorization") != f"Bearer {stub.api_key}":
                    self._answer(
                        401,
                        {
                            "error": {
                                "type": "invalid_request_error",
                                "message": "Invalid API Key provided",
                            }
                        },
                    )
                    return
                key = self.headers.get("Idempotency-Key")
                with stub.lock:
                    if key:
                        stub.keys_seen.append(key)
                    if key and key in stub.idempotent:
                        status, body = stub.idempotent[key]
                    elif stub.fault == "500":
                        stub.fault = None
                        self._answer(
                            500, {"error": {"type": "api_error", "message": "Something went wrong"}}
                        )
                        return
                    else:
                        status, body = stub._route(method, url.path, form)
                        if key:
                            stub.idempotent[key] = (status, body)
                    drop = method == "POST" and stub.fault == "drop"
                    if drop:
                        stub.fault = None
                hook = stub.on_intent
                if hook is not None and body.get("object") == "payment_intent":
                    stub.on_intent = None
                    hook(body)
                if drop:  # done, but the answer never reaches the client
                    self.close_connection = True
                    return
                self._answer(status, body)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

        return Handler
