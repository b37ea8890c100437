"""The built-in `fake` gateway: Stripe's test payment methods, on the book's clock.

Its whole state is in the database (gateway_charges, gateway_balance_transactions,
payouts, disputes), written on the caller's connection. Being a local table
write, a fake charge is atomic with the ledger entry that records it: there is
no remote side effect that a rollback could leave behind. (A real gateway is
called outside the posting transaction; see adapters/gateways/collection.py.)

Tokens (Stripe's names): `pm_card_visa` succeeds; `pm_card_chargeDeclined`
fails with `generic_decline`; `pm_card_chargeDeclinedInsufficientFunds` with
`insufficient_funds`; `pm_card_createDispute` succeeds and a dispute opens 7
days later; `pm_card_authenticationRequired` requires action
(`authentication_required`); any other token fails with `resource_missing`.

Balance: a succeeded charge adds its amount less the fee, a refund takes its
amount, an opened dispute its amount and fee, a won dispute gives the amount
back. Each is available 2 business days (Mon-Fri) after it happened and is
paid out on that day, one payout per arrival date.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row

from adapters.gateways.base import (
    ChargeOutcome,
    ChargeRequest,
    ChargeResult,
    GatewayRefund,
    PayoutInfo,
    WebhookEvent,
    WebhookRejected,
)
from billing.errors import ExceedsAvailable, InvalidBillingRequest
from billing.payment_methods import GatewayFee, add_business_days, gateway_fee
from ledger.money import Money

NAME = "fake"
PAYOUT_DELAY_DAYS = 2  # business days
DISPUTE_AFTER_DAYS = 7
DEFAULT_FEE = GatewayFee(Decimal("2.9"), Decimal("0.30"))
DEFAULT_DISPUTE_FEE = Decimal("15.00")

OUTCOMES: dict[str, tuple[ChargeOutcome, str | None]] = {
    "pm_card_visa": (ChargeOutcome.SUCCEEDED, None),
    "pm_card_createDispute": (ChargeOutcome.SUCCEEDED, None),
    "pm_card_chargeDeclined": (ChargeOutcome.FAILED, "generic_decline"),
    "pm_card_chargeDeclinedInsufficientFunds": (ChargeOutcome.FAILED, "insufficient_funds"),
    "pm_card_authenticationRequired": (ChargeOutcome.REQUIRES_ACTION, "authentication_required"),
}


def fee_setting(settings: Mapping[str, Any]) -> GatewayFee:
    """Book setting `fake_gateway_fee` ({percent, fixed}), default 2.9 % + 0.30."""
    raw = settings.get("fake_gateway_fee") or {}
    return GatewayFee(
        Decimal(str(raw.get("percent", DEFAULT_FEE.percent))),
        Decimal(str(raw.get("fixed", DEFAULT_FEE.fixed))),
    )


def dispute_fee_setting(settings: Mapping[str, Any]) -> Decimal:
    raw = settings.get("fake_gateway_dispute_fee")
    return Decimal(str(raw)) if raw is not None else DEFAULT_DISPUTE_FEE


def fake_payout_id(currency: str, arrival: date) -> uuid.UUID:
    """The fake pays out once per currency and arrival date: that is its payout's key
    (Stripe itself may pay out twice a day, so the table does not key payouts by day)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"fake:payout:{currency}:{arrival.isoformat()}")


class FakeGateway:
    name = NAME

    def __init__(
        self,
        conn: psycopg.Connection,
        book_id: uuid.UUID,
        fee: GatewayFee = DEFAULT_FEE,
        dispute_fee: Decimal = DEFAULT_DISPUTE_FEE,
    ) -> None:
        self.conn = conn
        self.book_id = book_id
        self.fee = fee
        self.dispute_fee = dispute_fee

    def charge(self, request: ChargeRequest) -> ChargeResult:
        """Charge once per idempotency key: a repeated key returns the first result."""
        charge_id = f"ch_fake_{request.idempotency_key.hex}"
        outcome, code = OUTCOMES.get(request.token, (ChargeOutcome.FAILED, "resource_missing"))
        currency = request.amount.currency
        fee = (
            gateway_fee(request.amount, self.fee)
            if outcome is ChargeOutcome.SUCCEEDED
            else Money.zero(currency)
        )
        dispute_on = (
            request.on + timedelta(days=DISPUTE_AFTER_DAYS)
            if request.token == "pm_card_createDispute"
            else None
        )
        self.conn.execute(
            "insert into gateway_charges (book_id, id, gateway, attempt_id, token, amount,"
            " currency, fee, status, code, captured_on, dispute_on)"
            " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " on conflict (book_id, attempt_id) do nothing",
            (
                self.book_id,
                charge_id,
                NAME,
                request.idempotency_key,
                request.token,
                request.amount.amount,
                currency,
                fee.amount,
                outcome.value,
                code,
                request.on,
                dispute_on,
            ),
        )
        if outcome is ChargeOutcome.SUCCEEDED:
            self._balance(f"txn_{charge_id}", "charge", charge_id, request.amount - fee, request.on)
        return self.get_charge(charge_id)

    def get_charge(self, charge_id: str) -> ChargeResult:
        row = self.conn.execute(
            "select id, status, code, fee, currency from gateway_charges"
            " where book_id = %s and id = %s",
            (self.book_id, charge_id),
        ).fetchone()
        if row is None:
            raise InvalidBillingRequest(f"the fake gateway has no charge {charge_id!r}")
        return ChargeResult(row[0], ChargeOutcome(row[1]), row[2], Money(row[3], row[4]))

    def refund(
        self, charge_id: str, amount: Money, idempotency_key: uuid.UUID, on: date
    ) -> GatewayRefund:
        row = self.conn.execute(
            "select c.amount, c.status, coalesce((select -sum(t.amount)"
            "   from gateway_balance_transactions t where t.book_id = c.book_id"
            "   and t.charge_id = c.id and t.type = 'refund'), 0)"
            " from gateway_charges c where c.book_id = %s and c.id = %s for update",
            (self.book_id, charge_id),
        ).fetchone()
        if row is None or row[1] != ChargeOutcome.SUCCEEDED:
            raise InvalidBillingRequest(f"charge {charge_id} did not succeed: nothing to refund")
        refund_id = f"re_fake_{idempotency_key.hex}"
        exists = self.conn.execute(
            "select 1 from gateway_balance_transactions where book_id = %s and id = %s",
            (self.book_id, refund_id),
        ).fetchone()
        if exists is None and amount.amount > row[0] - row[2]:
            raise ExceedsAvailable(
                f"the charge {charge_id} has {row[0] - row[2]} left to refund",
                available=str(row[0] - row[2]),
            )
        self._balance(refund_id, "refund", charge_id, -amount, on)
        return GatewayRefund(refund_id, charge_id, amount)

    def dispute_moved(self, key: str, kind: str, charge_id: str, amount: Money, on: date) -> None:
        """A dispute's effect on the balance: opened takes amount + fee, won gives back."""
        self._balance(key, kind, charge_id, amount, on)

    def _balance(self, key: str, kind: str, charge_id: str, amount: Money, on: date) -> None:
        self.conn.execute(
            "insert into gateway_balance_transactions (book_id, id, gateway, type, charge_id,"
            " amount, currency, available_on) values (%s, %s, %s, %s, %s, %s, %s, %s)"
            " on conflict (book_id, id) do nothing",
            (
                self.book_id,
                key,
                NAME,
                kind,
                charge_id,
                amount.amount,
                amount.currency,
                add_business_days(on, PAYOUT_DELAY_DAYS),
            ),
        )
        self.schedule_payouts()  # a pending payout shows what is on its way at once

    def schedule_payouts(self) -> None:
        """Gather balance not yet in a payout into the payout of its arrival date."""
        rows = self.conn.execute(
            "select currency, available_on, array_agg(id), sum(amount)"
            " from gateway_balance_transactions where book_id = %s and gateway = %s"
            " and payout_id is null group by 1, 2 order by 2, 1",
            (self.book_id, NAME),
        ).fetchall()
        for currency, arrival, ids, total in rows:
            found = self.conn.execute(
                "insert into payouts (book_id, id, gateway, amount, currency, arrival_date)"
                " values (%s, %s, %s, %s, %s, %s)"
                " on conflict (book_id, id)"
                " do update set amount = payouts.amount + excluded.amount"
                " where payouts.status = 'pending' returning id",
                (self.book_id, fake_payout_id(currency, arrival), NAME, total, currency, arrival),
            ).fetchone()
            if found is None:  # that day's payout is already paid: the next business day's
                continue
            self.conn.execute(
                "update gateway_balance_transactions set payout_id = %s"
                " where book_id = %s and id = any(%s)",
                (found[0], self.book_id, ids),
            )

    def payouts(self, through: date) -> list[PayoutInfo]:
        """Payouts arriving by `through` (after gathering the balance into payouts)."""
        self.schedule_payouts()
        with self.conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                "select id, amount, currency, arrival_date, status from payouts"
                " where book_id = %s and gateway = %s and arrival_date <= %s"
                " order by arrival_date, currency",
                (self.book_id, NAME, through),
            ).fetchall()
        return [
            PayoutInfo(r["id"], Money(r["amount"], r["currency"]), r["arrival_date"], r["status"])
            for r in rows
        ]

    def disputes_due(self, through: date) -> list[dict[str, Any]]:
        """Charges whose dispute opens by `through` and has not been opened yet."""
        with self.conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(
                "select c.id, c.amount, c.currency, c.dispute_on, c.attempt_id"
                " from gateway_charges c where c.book_id = %s and c.gateway = %s"
                " and c.dispute_on <= %s and not exists (select 1 from disputes d"
                "   where d.book_id = c.book_id and d.charge_id = c.id)"
                " order by c.dispute_on, c.id for update of c",
                (self.book_id, NAME, through),
            ).fetchall()

    def parse_webhook(self, payload: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        raise WebhookRejected("the fake gateway sends no webhooks: it runs on the book's clock")
