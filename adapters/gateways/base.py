"""The port every payment gateway implements (STYLE.md: Protocol ports).

A gateway charges a tokenized payment method, refunds a charge, reports its
payouts, and parses and verifies its webhooks. Calls carry our idempotency
key (the attempt's or the refund's id), so a repeated call returns what the
first did and never charges twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any, Protocol

from ledger.errors import LedgerError
from ledger.money import Money

__all__ = [
    "ChargeOutcome",
    "ChargeRequest",
    "ChargeResult",
    "Gateway",
    "GatewayRefund",
    "GatewayUnavailable",
    "PayoutInfo",
    "WebhookEvent",
    "WebhookRejected",
    "clearing_account",
]


class ChargeOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REQUIRES_ACTION = "requires_action"


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    idempotency_key: uuid.UUID  # the attempt's id
    token: str
    amount: Money
    on: date
    # What the gateway keeps beside the charge (our book, invoice, attempt) so an
    # event about it can be traced back; and the gateway's own customer, if any.
    metadata: Mapping[str, str] = field(default_factory=dict)
    customer: str | None = None


@dataclass(frozen=True, slots=True)
class ChargeResult:
    charge_id: str
    outcome: ChargeOutcome
    code: str | None
    fee: Money


@dataclass(frozen=True, slots=True)
class GatewayRefund:
    refund_id: str
    charge_id: str
    amount: Money


@dataclass(frozen=True, slots=True)
class PayoutInfo:
    payout_id: uuid.UUID
    amount: Money
    arrival_date: date
    status: str  # pending | paid


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    event_id: str
    type: str
    data: Mapping[str, Any] = field(default_factory=dict)


class GatewayUnavailable(LedgerError):
    """The gateway could not be reached, timed out or answered 5xx/429: the outcome is
    unknown, nothing is posted, and the same idempotency key is sent again on retry."""

    code = "gateway_unavailable"
    status = 503


class WebhookRejected(Exception):
    """A webhook whose signature is missing, wrong or stale (answered 400)."""


class Gateway(Protocol):
    name: str

    def charge(self, request: ChargeRequest) -> ChargeResult: ...

    def refund(
        self, charge_id: str, amount: Money, idempotency_key: uuid.UUID, on: date
    ) -> GatewayRefund: ...

    def payouts(self, through: date) -> list[PayoutInfo]: ...

    def parse_webhook(self, payload: bytes, headers: Mapping[str, str]) -> WebhookEvent: ...


def clearing_account(gateway: str) -> str:
    """Assets:Clearing:{Gateway} (ACCOUNTING.md): `fake` → Assets:Clearing:Fake."""
    return f"Assets:Clearing:{gateway.capitalize()}"
