"""HubSpot through `hubspot-api-client` (CRM v3 objects API).

Reads: `GET /crm/v3/objects/companies?properties=…&associations=contacts`,
following `paging.next.after`; the billing contact is the company's first
associated contact (named in the listing, or by `GET …/companies/{id}?
associations=contacts`), read by `GET /crm/v3/objects/contacts/{id}`;
closed-won deals are the deals in stage `closedwon` (`GET /crm/v3/objects/deals?associations=
companies,line_items`) with each line item read by id. Writes:
`PATCH /crm/v3/objects/companies/{id}` with `{"properties": {...}}` (values as
strings, as HubSpot stores them).

HubSpot's list endpoint has no modified-since filter and its search endpoint
returns no associations, so an incremental sync pages the list and keeps the
companies whose `updatedAt` is after the cursor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeVar

from hubspot import Client
from hubspot.crm.companies import SimplePublicObjectInput

from adapters.crm.base import (
    TIMEOUT_SECONDS,
    CrmAccount,
    CrmContact,
    CrmDeal,
    CrmError,
    CrmLineItem,
)

DEFAULT_BASE_URL = "https://api.hubapi.com"
PAGE = 100
T = TypeVar("T")


class HubSpotAdapter:
    provider = "hubspot"

    def __init__(
        self,
        access_token: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # One attempt per call: retries are the outbox's (with its backoff), not urllib3's.
        self.client = Client.create(access_token=access_token, host=self.base_url, retry=False)
        self.timeout = timeout
        # Contacts associated with the companies already listed: no second read per company.
        self._contacts: dict[str, list[str]] = {}

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, _request_timeout=self.timeout, **kwargs)
        except Exception as exc:  # the generated clients raise ApiException or urllib3 errors
            status = getattr(exc, "status", None)
            if status is not None:
                raise CrmError(f"HubSpot answered {status} to {what}") from None
            raise CrmError(
                f"cannot reach HubSpot at {self.base_url}: {type(exc).__name__}"
            ) from None

    def changed_accounts(self, since: datetime | None, fields: list[str]) -> Iterator[CrmAccount]:
        after: str | None = None
        api = self.client.crm.companies.basic_api
        while True:
            page = self._call(
                "a list of companies",
                api.get_page,
                limit=PAGE,
                after=after,
                properties=_properties(fields),
                associations=["contacts"],
                archived=False,
            )
            for company in page.results:
                if since is None or company.updated_at > since:
                    self._contacts[str(company.id)] = _associated(company, "contacts")
                    yield _account(company, fields)
            paging = page.paging
            if paging is None or paging.next is None:
                return
            after = paging.next.after

    def get_account(self, record_id: str, fields: list[str]) -> CrmAccount:
        api = self.client.crm.companies.basic_api
        company = self._call(
            f"company {record_id}", api.get_by_id, record_id, properties=_properties(fields)
        )
        return _account(company, fields)

    def billing_contact(self, record_id: str) -> CrmContact | None:
        ids = self._contacts.pop(record_id, None)
        if ids is None:
            api = self.client.crm.companies.basic_api
            company = self._call(
                f"company {record_id}", api.get_by_id, record_id, associations=["contacts"]
            )
            ids = _associated(company, "contacts")
        if not ids:
            return None
        contact = self._call(
            f"contact {ids[0]}",
            self.client.crm.contacts.basic_api.get_by_id,
            ids[0],
            properties=["email", "firstname", "lastname"],
        )
        p = contact.properties or {}
        name = " ".join(x for x in (p.get("firstname"), p.get("lastname")) if x) or None
        return CrmContact(contact.id, p.get("email"), name)

    def won_deals(self, since: datetime | None) -> Iterator[CrmDeal]:
        after: str | None = None
        api = self.client.crm.deals.basic_api
        while True:
            page = self._call(
                "a list of deals",
                api.get_page,
                limit=PAGE,
                after=after,
                properties=["dealstage", "closedate"],
                associations=["companies", "line_items"],
                archived=False,
            )
            for deal in page.results:
                if since is not None and deal.updated_at <= since:
                    continue
                found = self._won(deal)
                if found is not None:
                    yield found
            paging = page.paging
            if paging is None or paging.next is None:
                return
            after = paging.next.after

    def get_deal(self, deal_id: str) -> CrmDeal | None:
        deal = self._call(
            f"deal {deal_id}",
            self.client.crm.deals.basic_api.get_by_id,
            deal_id,
            properties=["dealstage", "closedate"],
            associations=["companies", "line_items"],
        )
        return self._won(deal)

    def _won(self, deal: Any) -> CrmDeal | None:
        props = deal.properties or {}
        if props.get("dealstage") != "closedwon":
            return None
        companies = _associated(deal, "companies")
        return CrmDeal(
            id=str(deal.id),
            account_id=companies[0] if companies else None,
            closed_on=_day(props.get("closedate")),
            items=tuple(self._line_item(i) for i in _associated(deal, "line_items")),
            modified_at=deal.updated_at,
        )

    def _line_item(self, item_id: str) -> CrmLineItem:
        item = self._call(
            f"line item {item_id}",
            self.client.crm.line_items.basic_api.get_by_id,
            item_id,
            properties=["hs_product_id", "quantity"],
        )
        p = item.properties or {}
        return CrmLineItem(str(p.get("hs_product_id") or ""), Decimal(p.get("quantity") or "1"))

    def update_account(self, record_id: str, values: dict[str, Any]) -> None:
        body = SimplePublicObjectInput(properties={k: _property(v) for k, v in values.items()})
        self._call(
            f"the update of company {record_id}",
            self.client.crm.companies.basic_api.update,
            record_id,
            body,
        )


def _property(value: Any) -> str:
    """HubSpot stores every property as a string; a checkbox is "true"/"false", empty clears."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _properties(fields: list[str]) -> list[str]:
    return sorted({"name", *fields})


def _associated(obj: Any, kind: str) -> list[str]:
    found = (obj.associations or {}).get(kind)
    return [str(a.id) for a in found.results] if found is not None else []


def _day(text: str | None) -> date | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).date()


def _account(company: Any, fields: list[str]) -> CrmAccount:
    props = company.properties or {}
    return CrmAccount(
        id=str(company.id), fields={f: props.get(f) for f in fields}, modified_at=company.updated_at
    )
