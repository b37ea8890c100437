"""Value-added services and vouchers (billing.postgres.add_ons).

- `POST /v1/wallets/{id}/add-ons` `{"price", "quantity"}` — sold from the
  wallet; 402 when its available balance is short (nothing written).
- `POST /v1/subscriptions/{id}/add-ons` `{"price", "quantity"}` — billed
  postpaid on the subscription's next invoice.
- `POST /v1/vouchers` `{"currency", "amount", "count", "payment_method"}` — a
  batch of codes, returned once.
- `POST /v1/wallets/{id}/voucher-redemptions` `{"code"}` — a code tops the
  wallet up once (409 when already redeemed).
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Response
from litestar.params import FromPath, JSONBody

from adapters.http.billing_fields import decimal_field
from adapters.http.routes import Run, Tx, command
from adapters.http.wallets_api import wallet_json
from adapters.keys import Permission
from billing.postgres import add_ons as store
from ledger.money import minor_unit_text as money


class AddOnIn(msgspec.Struct, forbid_unknown_fields=True):
    price: str
    quantity: str = "1"


class VouchersIn(msgspec.Struct, forbid_unknown_fields=True):
    currency: str
    amount: str
    count: int = 1
    payment_method: str = "bank_transfer"


class RedemptionIn(msgspec.Struct, forbid_unknown_fields=True):
    code: str


def _add_on_json(sale: store.AddOn) -> dict[str, Any]:
    c = sale.amount.currency
    return {
        "id": str(sale.id),
        "object": "add_on",
        "price": str(sale.price_id),
        "quantity": format(sale.quantity.normalize(), "f"),
        "amount": money(sale.amount.amount, c),
        "currency": c,
        "revenue_account": sale.revenue_account,
    }


class AddOnsController(Controller):
    path = "/v1"
    tags = ["telecom"]

    @command("/wallets/{ref:str}/add-ons", "sellWalletAddOn", Permission.BILLING_WRITE)
    def sell(self, ref: FromPath[str], data: JSONBody[AddOnIn], run: Run) -> Response[bytes]:
        quantity = decimal_field(data.quantity, "quantity")

        def work(tx: Tx) -> dict[str, Any]:
            sale, wallet = store.sell_add_on(
                tx.conn, tx.book_id, ref, data.price, quantity, tx.today()
            )
            return {
                **_add_on_json(sale),
                "wallet": wallet_json(wallet),
                "entry": str(sale.entry_id) if sale.entry_id else None,
            }

        return run({"ref": ref, "body": data}, work)

    @command("/subscriptions/{ref:str}/add-ons", "addSubscriptionAddOn", Permission.BILLING_WRITE)
    def postpaid(self, ref: FromPath[str], data: JSONBody[AddOnIn], run: Run) -> Response[bytes]:
        quantity = decimal_field(data.quantity, "quantity")

        def work(tx: Tx) -> dict[str, Any]:
            sale = store.add_on_to_next_invoice(
                tx.conn, tx.book_id, ref, data.price, quantity, tx.today()
            )
            return {
                **_add_on_json(sale),
                "subscription": str(sale.subscription_id),
                "pending_invoice": str(sale.invoice_id),
            }

        return run({"ref": ref, "body": data}, work)

    @command("/vouchers", "issueVouchers", Permission.BILLING_WRITE)
    def issue(self, data: JSONBody[VouchersIn], run: Run) -> Response[bytes]:
        amount = decimal_field(data.amount, "amount")

        def work(tx: Tx) -> dict[str, Any]:
            batch = store.issue_vouchers(
                tx.conn,
                tx.book_id,
                data.currency,
                amount,
                data.count,
                tx.today(),
                data.payment_method,
            )
            return {
                "id": str(batch.id),
                "object": "voucher_batch",
                "currency": batch.amount.currency,
                "amount": money(batch.amount.amount, batch.amount.currency),
                "count": len(batch.codes),
                "codes": list(batch.codes),
                "entry": str(batch.entry_id),
            }

        return run(data, work)

    @command("/wallets/{ref:str}/voucher-redemptions", "redeemVoucher", Permission.BILLING_WRITE)
    def redeem(self, ref: FromPath[str], data: JSONBody[RedemptionIn], run: Run) -> Response[bytes]:
        def work(tx: Tx) -> dict[str, Any]:
            wallet, value = store.redeem_voucher(tx.conn, tx.book_id, ref, data.code, tx.today())
            return {
                "object": "voucher_redemption",
                "amount": money(value.amount, value.currency),
                "currency": value.currency,
                "wallet": wallet_json(wallet),
            }

        return run({"ref": ref, "body": data}, work)
