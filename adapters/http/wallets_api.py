"""Prepaid wallets and real-time authorization (API.md, "Usage and telecom").

`available` is the balance less the holds still open; a hold the wallet cannot
cover is a 402 problem (`insufficient_funds`), or with `"partial": true` is
granted up to what is available. A hold's TTL runs on real time.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from adapters.http.billing_fields import decimal_field
from adapters.http.routes import Reader, Run, Tx, command, json_response
from adapters.keys import Permission, Principal
from adapters.runtime import Runtime
from billing.postgres import wallets as store
from ledger.money import minor_unit_text as money


class WalletIn(msgspec.Struct, forbid_unknown_fields=True):
    customer: str
    currency: str
    low_balance_threshold: str | None = None


class TopUpIn(msgspec.Struct, forbid_unknown_fields=True):
    amount: str
    payment_method: str = "bank_transfer"
    valid_days: int | None = None  # the value is good from today for this many days


class ReservationIn(msgspec.Struct, forbid_unknown_fields=True):
    amount: str
    ttl_seconds: int = 300
    partial: bool = False


class CaptureIn(msgspec.Struct, forbid_unknown_fields=True):
    amount: str


class ExpireIn(msgspec.Struct, forbid_unknown_fields=True):
    amount: str | None = None


def wallet_json(wallet: store.Wallet) -> dict[str, Any]:
    return wallet.as_json()


def reservation_json(r: store.Reservation, currency: str) -> dict[str, Any]:
    return {
        "id": str(r.id),
        "object": "wallet_reservation",
        "wallet": str(r.wallet_id),
        "requested": money(r.requested, currency),
        "amount": money(r.amount, currency),
        "captured": None if r.captured is None else money(r.captured, currency),
        "status": r.status,
        "expires_at": r.expires_at.isoformat(),
        "closed_at": None if r.closed_at is None else r.closed_at.isoformat(),
        "entry": None if r.entry_id is None else str(r.entry_id),
        "created_at": r.created_at.isoformat(),
    }


def _with_entry(wallet: store.Wallet, entry_id: object) -> dict[str, Any]:
    return {"wallet": wallet_json(wallet), "entry": str(entry_id)}


class WalletsController(Controller):
    path = "/v1/wallets"
    tags = ["wallets"]

    @command("/", "createWallet", Permission.BILLING_WRITE)
    def create_wallet(self, data: JSONBody[WalletIn], run: Run) -> Response[bytes]:
        threshold = data.low_balance_threshold
        limit = None if threshold is None else decimal_field(threshold, "low_balance_threshold")

        def work(tx: Tx) -> dict[str, Any]:
            wallet = store.create_wallet(tx.conn, tx.book_id, data.customer, data.currency, limit)
            return wallet_json(wallet)

        return run(data, work)

    @get("/{ref:str}", operation_id="getWallet", sync_to_thread=True)
    def get_wallet(
        self,
        ref: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            body = wallet_json(store.get_wallet(conn, principal.book_id, ref))
        return json_response(body)

    @command("/{ref:str}/top-ups", "topUpWallet", Permission.BILLING_WRITE)
    def top_up(self, ref: FromPath[str], data: JSONBody[TopUpIn], run: Run) -> Response[bytes]:
        amount = decimal_field(data.amount, "amount")

        def work(tx: Tx) -> dict[str, Any]:
            wallet, entry_id = store.top_up(
                tx.conn, tx.book_id, ref, amount, tx.today(), data.payment_method, data.valid_days
            )
            return _with_entry(wallet, entry_id)

        return run({"ref": ref, "body": data}, work)

    @command("/{ref:str}/expire", "expireWalletValue", Permission.BILLING_WRITE)
    def expire(self, ref: FromPath[str], data: JSONBody[ExpireIn], run: Run) -> Response[bytes]:
        amount = None if data.amount is None else decimal_field(data.amount, "amount")

        def work(tx: Tx) -> dict[str, Any]:
            wallet, entry_id = store.expire_value(tx.conn, tx.book_id, ref, tx.today(), amount)
            return _with_entry(wallet, entry_id)

        return run({"ref": ref, "body": data}, work)

    @get("/{ref:str}/transactions", operation_id="listWalletTransactions", sync_to_thread=True)
    def list_transactions(
        self,
        ref: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            wallet = store.get_wallet(conn, principal.book_id, ref)
            found = store.transactions(conn, principal.book_id, ref)
        c = wallet.currency
        data = [
            {
                "entry": str(t.entry_id),
                "date": t.effective_date.isoformat(),
                "recorded_at": t.recorded_at.isoformat(),
                "kind": t.kind,
                "amount": money(t.amount, c),
                "memo": t.memo,
            }
            for t in found
        ]
        return json_response({"data": data})

    @get("/{ref:str}/events", operation_id="listWalletEvents", sync_to_thread=True)
    def list_events(
        self,
        ref: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            wallet = store.get_wallet(conn, principal.book_id, ref)
            found = store.events(conn, principal.book_id, ref)
        c = wallet.currency
        data = [
            {
                "id": str(e.id),
                "kind": e.kind,
                "available": money(e.available, c),
                "threshold": money(e.threshold, c),
                "created_at": e.created_at.isoformat(),
            }
            for e in found
        ]
        return json_response({"data": data})

    @command("/{ref:str}/reservations", "createWalletReservation", Permission.BILLING_WRITE)
    def reserve(
        self, ref: FromPath[str], data: JSONBody[ReservationIn], run: Run
    ) -> Response[bytes]:
        amount = decimal_field(data.amount, "amount")

        def work(tx: Tx) -> dict[str, Any]:
            r = store.reserve(
                tx.conn,
                tx.book_id,
                ref,
                amount,
                data.ttl_seconds,
                partial=data.partial,
                wall_clock_today=tx.runtime.today(),
            )
            return reservation_json(r, store.wallet_currency(tx.conn, tx.book_id, ref))

        return run({"ref": ref, "body": data}, work)

    @get("/{ref:str}/reservations", operation_id="listWalletReservations", sync_to_thread=True)
    def list_reservations(
        self,
        ref: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            wallet = store.get_wallet(conn, principal.book_id, ref)
            found = store.list_reservations(conn, principal.book_id, ref)
        return json_response({"data": [reservation_json(r, wallet.currency) for r in found]})

    @command(
        "/{ref:str}/reservations/{rid:str}/capture",
        "captureWalletReservation",
        Permission.BILLING_WRITE,
        status=200,
    )
    def capture(
        self, ref: FromPath[str], rid: FromPath[str], data: JSONBody[CaptureIn], run: Run
    ) -> Response[bytes]:
        amount = decimal_field(data.amount, "amount")

        def work(tx: Tx) -> dict[str, Any]:
            r = store.capture(tx.conn, tx.book_id, ref, rid, amount, tx.today())
            return reservation_json(r, store.wallet_currency(tx.conn, tx.book_id, ref))

        return run({"ref": ref, "rid": rid, "body": data}, work)

    @command(
        "/{ref:str}/reservations/{rid:str}/release",
        "releaseWalletReservation",
        Permission.BILLING_WRITE,
        status=200,
    )
    def release(self, ref: FromPath[str], rid: FromPath[str], run: Run) -> Response[bytes]:
        def work(tx: Tx) -> dict[str, Any]:
            r = store.release(tx.conn, tx.book_id, ref, rid)
            return reservation_json(r, store.wallet_currency(tx.conn, tx.book_id, ref))

        return run({"ref": ref, "rid": rid}, work)
