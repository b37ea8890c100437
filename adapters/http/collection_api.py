"""The fake gateway's payouts and disputes (API.md): `GET /v1/payouts`,
`GET /v1/disputes`, `POST /v1/disputes/{id}/close`.

The fake gateway has no one to decide a dispute, so the operator closes it
with the outcome (`won` or `lost`), dated the book's today.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, JSONBody, RawBody

from adapters.gateways import collection
from adapters.gateways.base import WebhookRejected
from adapters.gateways.stripe_webhooks import receive_stripe_event
from adapters.http.problems import ApiError
from adapters.http.routes import Reader, Run, Tx, command, json_response
from adapters.keys import Permission, Principal
from adapters.runtime import Runtime
from ledger.money import minor_unit_text as money
from ledger.postgres import books as book_store
from ledger.postgres.unit_of_work import unit_of_work


class DisputeCloseIn(msgspec.Struct, forbid_unknown_fields=True):
    outcome: str


def payout_json(p: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(p["id"]),
        "object": "payout",
        "gateway": p["gateway"],
        "amount": money(p["amount"], p["currency"]),
        "currency": p["currency"],
        "arrival_date": p["arrival_date"].isoformat(),
        "status": p["status"],
        "entry": str(p["entry_id"]) if p["entry_id"] else None,
    }


def dispute_json(d: dict[str, Any]) -> dict[str, Any]:
    c = d["currency"]
    return {
        "id": str(d["id"]),
        "object": "dispute",
        "gateway": d["gateway"],
        "charge": d["charge_id"],
        "payment": str(d["payment_id"]),
        "amount": money(d["amount"], c),
        "fee": money(d["fee"], c),
        "currency": c,
        "opened_on": d["opened_on"].isoformat(),
        "evidence_due": d["evidence_due"].isoformat(),
        "status": d["status"],
        "closed_on": d["closed_on"].isoformat() if d["closed_on"] else None,
        "entry": str(d["entry_id"]) if d["entry_id"] else None,
        "closing_entry": str(d["closing_entry_id"]) if d["closing_entry_id"] else None,
    }


class CollectionController(Controller):
    path = "/v1"
    tags = ["payments"]

    @get("/payouts", operation_id="listPayouts", sync_to_thread=True)
    def list_payouts(
        self, principal: NamedDependency[Principal], runtime: NamedDependency[Runtime]
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            found = collection.list_payouts(conn, principal.book_id)
        return json_response({"data": [payout_json(p) for p in found]})

    @get("/disputes", operation_id="listDisputes", sync_to_thread=True)
    def list_disputes(
        self, principal: NamedDependency[Principal], runtime: NamedDependency[Runtime]
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            found = collection.list_disputes(conn, principal.book_id)
        return json_response({"data": [dispute_json(d) for d in found]})

    @command("/disputes/{ref:str}/close", "closeDispute", Permission.BILLING_WRITE, status=200)
    def close_dispute(
        self, ref: FromPath[str], data: JSONBody[DisputeCloseIn], run: Run
    ) -> Response[bytes]:
        def work(tx: Tx) -> dict[str, Any]:
            return dispute_json(
                collection.close_dispute(tx.conn, tx.book_id, ref, data.outcome, tx.today())
            )

        return run({"close": ref, "body": data}, work)


class StripeWebhookController(Controller):
    """Stripe's events for a book: no bearer key, the signature is the authentication.
    Events are acted on (adapters/gateways/stripe_webhooks.py) in the transaction
    that stores them, so an event that fails is not stored and Stripe sends it again."""

    path = "/v1/webhooks"
    tags = ["payments"]

    @post(
        "/stripe/{book_id:uuid}",
        operation_id="receiveStripeWebhook",
        sync_to_thread=True,
        status_code=200,
    )
    def receive(
        self,
        book_id: FromPath[uuid.UUID],
        body: RawBody,
        state: State,
        signature: Annotated[str | None, HeaderParameter(name="Stripe-Signature")] = None,
    ) -> Response[bytes]:
        runtime: Runtime = state.runtime
        try:
            with unit_of_work(runtime.connection) as uow:
                today = book_store.get_book(uow.conn, book_id).today(runtime.today())
                event, replayed = receive_stripe_event(
                    uow.conn, book_id, body, signature, int(time.time()), today
                )
                uow.commit()
        except WebhookRejected as e:
            raise ApiError(400, "invalid_webhook", str(e)) from None
        return json_response({"received": True, "event": event, "duplicate": replayed})
