"""The port every CRM adapter implements, and the plain records it returns.

A CRM is read as accounts (Salesforce Account, HubSpot Company) with their
fields flat by the CRM's own names, a billing contact per account, and
closed-won deals (Opportunity, Deal) with product line items; billing status
is written back onto the account. Adapters use the vendor's maintained client
(`simple-salesforce`, `hubspot-api-client`) and never touch the database.

Errors, all `CrmError` (answered 502 by the API, exit 2 by the CLI):
    CrmError          the CRM could not be reached or refused the request
    CrmRefused        the CRM's URL is a loopback/private address and the book
                      did not allow it (422: a setting to fix, not an outage)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol

from billing.errors import InvalidBillingRequest
from ledger.errors import LedgerError

__all__ = [
    "PROVIDERS",
    "CrmAccount",
    "CrmAdapter",
    "CrmContact",
    "CrmDeal",
    "CrmError",
    "CrmLineItem",
    "CrmRefused",
]

PROVIDERS = ("salesforce", "hubspot")
TIMEOUT_SECONDS = 15.0


class CrmError(LedgerError):
    """The CRM could not be reached, or answered with an error."""

    code = "crm_unavailable"
    status = 502


class CrmRefused(InvalidBillingRequest):
    """The CRM URL points into a private network the book has not allowed."""

    code = "crm_address_refused"


@dataclass(frozen=True, slots=True)
class CrmAccount:
    id: str
    fields: dict[str, Any]  # the CRM's field names → values (strings, numbers, null)
    modified_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class CrmContact:
    id: str
    email: str | None
    name: str | None


@dataclass(frozen=True, slots=True)
class CrmLineItem:
    product: str  # Salesforce Product2Id, HubSpot hs_product_id
    quantity: Decimal


@dataclass(frozen=True, slots=True)
class CrmDeal:
    id: str
    account_id: str | None
    closed_on: date | None
    items: tuple[CrmLineItem, ...] = field(default=())
    modified_at: datetime | None = None


class CrmAdapter(Protocol):
    provider: str

    def changed_accounts(self, since: datetime | None, fields: list[str]) -> Iterator[CrmAccount]:
        """Accounts modified after `since` (every account when None), oldest change first."""
        ...

    def get_account(self, record_id: str, fields: list[str]) -> CrmAccount: ...

    def billing_contact(self, record_id: str) -> CrmContact | None: ...

    def won_deals(self, since: datetime | None) -> Iterator[CrmDeal]:
        """Closed-won deals modified after `since`, with their line items."""
        ...

    def get_deal(self, deal_id: str) -> CrmDeal | None:
        """The deal with its line items when it is closed-won, else None."""
        ...

    def update_account(self, record_id: str, values: dict[str, Any]) -> None: ...
