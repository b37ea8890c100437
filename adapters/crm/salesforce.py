"""Salesforce through `simple-salesforce` (REST API: SOQL queries, sObject PATCH).

Reads: `GET /services/data/vXX.X/query?q=SOQL`, following `nextRecordsUrl`
while `done` is false. Writes: `PATCH /services/data/vXX.X/sobjects/Account/{Id}`
(204). The instance URL and access token are the book's `salesforce` setting.
The billing contact is the account's oldest Contact; closed-won means
`IsWon = true`, line items are `OpportunityLineItems` (Product2Id, Quantity).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import requests
from simple_salesforce.api import Salesforce, SFType
from simple_salesforce.exceptions import SalesforceError

from adapters.crm.base import (
    TIMEOUT_SECONDS,
    CrmAccount,
    CrmContact,
    CrmDeal,
    CrmError,
    CrmLineItem,
)

API_VERSION = "59.0"
_ID = re.compile(r"^[A-Za-z0-9]{15,18}$")
FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class _Session(requests.Session):
    """requests has no default timeout; a CRM that never answers must not hang a sync."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout

    def request(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self.timeout)
        return super().request(*args, **kwargs)


def _when(text: str | None) -> datetime | None:
    if not text:
        return None
    # Salesforce writes 2026-01-05T10:00:00.000+0000
    return datetime.fromisoformat(re.sub(r"([+-]\d\d)(\d\d)$", r"\1:\2", text))


def soql_datetime(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _record_id(record_id: str) -> str:
    if not _ID.match(record_id):
        raise CrmError(f"{record_id!r} is not a Salesforce record id")
    return record_id


class SalesforceAdapter:
    provider = "salesforce"

    def __init__(
        self,
        instance_url: str,
        access_token: str,
        *,
        version: str = API_VERSION,
        timeout: float = TIMEOUT_SECONDS,
        verify: str | bool = True,
    ) -> None:
        self.instance_url = instance_url
        session = _Session(timeout)
        session.verify = verify
        self.sf = Salesforce(
            instance_url=instance_url, session_id=access_token, version=version, session=session
        )
        self.accounts = SFType(
            "Account", access_token, self.sf.sf_instance, sf_version=version, session=session,
            salesforce=self.sf,
        )  # fmt: skip

    def _query(self, soql: str) -> Iterator[dict[str, Any]]:
        try:
            yield from self.sf.query_all_iter(soql)
        except SalesforceError as exc:
            raise CrmError(f"Salesforce refused the query: {exc}") from None
        except requests.RequestException as exc:
            raise CrmError(
                f"cannot reach Salesforce at {self.instance_url}: {type(exc).__name__}"
            ) from None

    def changed_accounts(self, since: datetime | None, fields: list[str]) -> Iterator[CrmAccount]:
        where = f" WHERE LastModifiedDate > {soql_datetime(since)}" if since else ""
        for r in self._query(
            f"SELECT {_select(fields)} FROM Account{where} ORDER BY LastModifiedDate, Id"
        ):
            yield _account(r, fields)

    def get_account(self, record_id: str, fields: list[str]) -> CrmAccount:
        soql = f"SELECT {_select(fields)} FROM Account WHERE Id = '{_record_id(record_id)}'"
        for r in self._query(soql):
            return _account(r, fields)
        raise CrmError(f"Salesforce has no Account {record_id}")

    def billing_contact(self, record_id: str) -> CrmContact | None:
        soql = (
            "SELECT Id, Name, Email FROM Contact"
            f" WHERE AccountId = '{_record_id(record_id)}' ORDER BY CreatedDate LIMIT 1"
        )
        for r in self._query(soql):
            return CrmContact(r["Id"], r.get("Email"), r.get("Name"))
        return None

    def won_deals(self, since: datetime | None) -> Iterator[CrmDeal]:
        where = f" AND LastModifiedDate > {soql_datetime(since)}" if since else ""
        yield from self._deals(where)

    def get_deal(self, deal_id: str) -> CrmDeal | None:
        for deal in self._deals(f" AND Id = '{_record_id(deal_id)}'"):
            return deal
        return None

    def _deals(self, where: str) -> Iterator[CrmDeal]:
        soql = (
            "SELECT Id, AccountId, CloseDate, LastModifiedDate,"
            " (SELECT Id, Product2Id, Quantity FROM OpportunityLineItems)"
            f" FROM Opportunity WHERE IsWon = true{where} ORDER BY LastModifiedDate, Id"
        )
        for r in self._query(soql):
            lines = (r.get("OpportunityLineItems") or {}).get("records") or []
            yield CrmDeal(
                id=r["Id"],
                account_id=r.get("AccountId"),
                closed_on=date.fromisoformat(r["CloseDate"]) if r.get("CloseDate") else None,
                items=tuple(
                    CrmLineItem(li["Product2Id"], Decimal(str(li.get("Quantity") or 1)))
                    for li in lines
                ),
                modified_at=_when(r.get("LastModifiedDate")),
            )

    def update_account(self, record_id: str, values: dict[str, Any]) -> None:
        try:
            self.accounts.update(_record_id(record_id), values)
        except SalesforceError as exc:
            raise CrmError(f"Salesforce refused the update of Account {record_id}: {exc}") from None
        except requests.RequestException as exc:
            raise CrmError(
                f"cannot reach Salesforce at {self.instance_url}: {type(exc).__name__}"
            ) from None


def _select(fields: list[str]) -> str:
    names = ["Id", "LastModifiedDate", *(f for f in fields if f not in ("Id", "LastModifiedDate"))]
    for name in names:
        if not FIELD_NAME.match(name):  # never spliced into SOQL unless a plain name
            raise CrmError(f"{name!r} is not a Salesforce field name")
    return ", ".join(names)


def _account(r: dict[str, Any], fields: list[str]) -> CrmAccount:
    return CrmAccount(
        id=r["Id"],
        fields={f: r.get(f) for f in fields},
        modified_at=_when(r.get("LastModifiedDate")),
    )
