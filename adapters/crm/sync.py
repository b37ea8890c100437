"""Inbound sync: CRM accounts become customers, closed-won deals subscriptions.

Each account is upserted by `external_id` (the CRM record id) through
`upsert_customer`, the service function behind `POST /v1/customers`, as a
merge that names only the fields the sync takes: a field the CRM does not map,
or whose conflict billing wins (billing/crm.py states the rule), is not sent
and keeps its value. Every account and deal is its own unit of work, and CRM
calls are made outside any transaction; a record that fails is logged and the
sync goes on. The cursor (the newest modification seen) is saved at the end.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import psycopg

from adapters.crm import store
from adapters.crm.base import CrmAccount, CrmAdapter, CrmContact, CrmDeal
from adapters.crm.factory import adapter_for, check_provider
from billing.crm import MISSING, canonical, resolve
from billing.errors import InvalidBillingRequest
from billing.postgres.customers import Customer, CustomerSpec, get_customer, upsert_customer
from billing.postgres.settings import read_settings
from billing.postgres.subscriptions import ItemSpec, SubscriptionSpec, create_subscription
from ledger.errors import LedgerError
from ledger.postgres.books import get_book

Connect = Callable[[], AbstractContextManager[psycopg.Connection]]
AdapterFactory = Callable[[dict[str, Any], str], CrmAdapter]


@dataclass
class SyncSummary:
    provider: str
    since: str | None
    cursor: str | None = None
    accounts: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    conflicts: int = 0
    deals: int = 0
    subscriptions: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)

    def json(self) -> dict[str, Any]:
        return {"object": "crm_sync", **{k: getattr(self, k) for k in self.__dataclass_fields__}}


def _current(customer: Customer | None, name: str) -> Any:
    if customer is None:
        return None
    head, _, tail = name.partition(".")
    if head in ("address", "metadata") and tail:
        return (getattr(customer, head) or {}).get(tail)
    return getattr(customer, name)


def incoming_values(
    fields: dict[str, str], account: CrmAccount, contact: CrmContact | None
) -> dict[str, Any]:
    """Customer field → the CRM's value, for every mapped field."""
    out: dict[str, Any] = {}
    for crm, target in fields.items():
        if crm == "contact.email":
            out[target] = contact.email if contact else None
        elif crm == "contact.name":
            out[target] = contact.name if contact else None
        else:
            out[target] = account.fields.get(crm)
    return out


def _typed(name: str, value: str | None) -> Any:
    if name == "tax_rate":
        return Decimal(value) if value is not None else None
    if name == "payment_terms_days":
        return int(Decimal(value)) if value is not None else None
    return value


def sync_account(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    mapping: store.Mapping,
    account: CrmAccount,
    contact: CrmContact | None,
    currency: str,
) -> tuple[str, int]:
    """Upsert the account's customer in the caller's transaction; returns
    created, updated or unchanged and the number of conflicts (each logged)."""
    provider = mapping.provider
    link = store.lock_link(conn, book_id, provider, account.id)
    customer: Customer | None = None
    if link is not None:
        customer = get_customer(conn, book_id, str(link.customer_id))
        if customer.external_id != account.id:  # the upsert would make a second customer
            raise InvalidBillingRequest(
                f"customer {customer.id}, linked to {provider} record {account.id}, now has"
                f" external_id {customer.external_id!r}: set it back to sync the record"
            )
    else:
        try:
            customer = get_customer(conn, book_id, account.id)
        except LedgerError:
            customer = None
    last = link.last_values if link else {}
    incoming = incoming_values(mapping.fields, account, contact)
    taken: dict[str, Any] = {}
    conflicts = []
    for name, raw in incoming.items():
        crm = canonical(name, raw)
        billing = canonical(name, _current(customer, name))
        decision = resolve(name, crm, billing, last.get(name, MISSING), customer is not None)
        if decision.take_crm:
            taken[name] = crm
        if decision.conflict:
            conflicts.append(
                (name, crm, billing, "crm_wins" if decision.take_crm else "billing_wins")
            )
    given: set[str] = {"external_id"}
    values: dict[str, Any] = {}
    for name, value in taken.items():
        head, _, tail = name.partition(".")
        if head in ("address", "metadata") and tail:
            part = values.setdefault(head, dict(getattr(customer, head) or {}) if customer else {})
            if value is None:
                part.pop(tail, None)
            else:
                part[tail] = value
            given.add(head)
        else:
            values[name] = _typed(name, value)
            given.add(name)
    if customer is None and not values.get("name"):
        raise InvalidBillingRequest(f"{provider} record {account.id} has no name to bill under")
    if "name" in values and not values["name"]:
        del values["name"]  # a name is never cleared by a sync
        given.discard("name")
    base = {"name": customer.name, "currency": customer.currency} if customer else {}
    spec = CustomerSpec(
        **{"currency": currency, **base, **{k: v for k, v in values.items() if v is not None}},
        external_id=account.id,
    )
    for name in [n for n, v in values.items() if v is None]:
        given.discard(name)  # a blank in the CRM never clears a customer's field
    result, created = upsert_customer(conn, book_id, spec, given=given)
    agreed = {
        name: {"crm": canonical(name, raw), "billing": canonical(name, _current(result, name))}
        for name, raw in incoming.items()
    }
    store.save_link(conn, book_id, provider, account.id, result.id, agreed)
    for name, crm, billing, resolution in conflicts:
        store.log(
            conn,
            book_id,
            provider,
            "conflict",
            record_id=account.id,
            customer_id=result.id,
            field=name,
            crm_value=crm,
            billing_value=billing,
            resolution=resolution,
        )
    outcome = "created" if created else ("updated" if result != customer else "unchanged")
    store.log(conn, book_id, provider, outcome, record_id=account.id, customer_id=result.id)
    return outcome, len(conflicts)


def sync_deal(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    mapping: store.Mapping,
    deal: CrmDeal,
    today: date,
) -> str:
    """A closed-won deal's subscription (once per deal): created, exists or skipped."""
    provider = mapping.provider
    if store.deal_subscription(conn, book_id, provider, deal.id) is not None:
        return "exists"
    customer_id = (
        store.customer_of_record(conn, book_id, provider, deal.account_id)
        if deal.account_id
        else None
    )
    unmapped = [i.product for i in deal.items if i.product not in mapping.products]
    reason = None
    if customer_id is None:
        reason = f"deal {deal.id}: its account {deal.account_id} is not linked to a customer"
    elif not deal.items:
        reason = f"deal {deal.id} has no line items"
    elif unmapped:
        reason = (
            f"deal {deal.id}: no price mapped for CRM products {', '.join(unmapped)}"
            " (POST /v1/crm/mappings with products)"
        )
    if reason is not None:
        store.log(conn, book_id, provider, "skipped", record_id=deal.id, message=reason)
        return "skipped"
    assert customer_id is not None
    spec = SubscriptionSpec(
        customer=str(customer_id),
        items=[ItemSpec(mapping.products[i.product], i.quantity) for i in deal.items],
        start_date=deal.closed_on or today,
        metadata={"crm_provider": provider, "crm_deal": deal.id},
    )
    created = create_subscription(conn, book_id, spec, today)
    store.save_deal(conn, book_id, provider, deal.id, created.id)
    store.log(
        conn,
        book_id,
        provider,
        "subscription",
        record_id=deal.id,
        customer_id=customer_id,
        message=f"subscription {created.id}",
    )
    return "created"


def _needs_contact(mapping: store.Mapping) -> bool:
    return any(crm.startswith("contact.") for crm in mapping.fields)


def _crm_fields(mapping: store.Mapping) -> list[str]:
    return [crm for crm in mapping.fields if not crm.startswith("contact.")]


def _context(
    connect: Connect, book_id: uuid.UUID, provider: str
) -> tuple[dict[str, Any], store.Mapping, str, date]:
    with connect() as conn:
        settings = read_settings(conn, book_id)
        mapping = store.get_mapping(conn, book_id, provider)
        book = get_book(conn, book_id)
        conn.rollback()
    return settings, mapping, book.base_currency, book.today(date.today())


def _log_error(
    connect: Connect, book_id: uuid.UUID, provider: str, record: str, message: str
) -> None:
    with connect() as conn:
        store.log(conn, book_id, provider, "error", record_id=record, message=message)
        conn.commit()


def sync_record(
    connect: Connect,
    book_id: uuid.UUID,
    provider: str,
    record_id: str,
    adapters: AdapterFactory = adapter_for,
) -> str:
    """One account again (an inbound CRM webhook): read it from the CRM, upsert it."""
    settings, mapping, currency, _ = _context(connect, book_id, provider)
    adapter = adapters(settings, provider)
    account = adapter.get_account(record_id, _crm_fields(mapping))
    contact = adapter.billing_contact(record_id) if _needs_contact(mapping) else None
    with connect() as conn:
        outcome, _ = sync_account(conn, book_id, mapping, account, contact, currency)
        conn.commit()
    return outcome


def sync_deal_record(
    connect: Connect,
    book_id: uuid.UUID,
    provider: str,
    deal_id: str,
    adapters: AdapterFactory = adapter_for,
) -> str:
    """One deal again (an inbound CRM webhook): its subscription if it is now closed-won."""
    settings, mapping, _, today = _context(connect, book_id, provider)
    deal = adapters(settings, provider).get_deal(deal_id)
    if deal is None:
        return "not_won"
    with connect() as conn:
        outcome = sync_deal(conn, book_id, mapping, deal, today)
        conn.commit()
    return outcome


def parse_cursor(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidBillingRequest(
            f"--since/since must be an ISO 8601 timestamp, got {text!r}"
        ) from None
    if moment.tzinfo is None:
        raise InvalidBillingRequest(f"since {text!r} needs a time zone (e.g. Z)")
    return moment


def run_sync(
    connect: Connect,
    book_id: uuid.UUID,
    provider: str,
    *,
    since: str | None = None,
    full: bool = False,
    progress: Callable[[SyncSummary], None] | None = None,
    adapters: AdapterFactory = adapter_for,
) -> SyncSummary:
    """A full sync (`full`), or an incremental one from `since` or the saved cursor."""
    check_provider(provider)
    settings, mapping, currency, today = _context(connect, book_id, provider)
    start = None if full else (since or mapping.cursor)
    moment = parse_cursor(start) if start else None
    summary = SyncSummary(provider, start)
    adapter = adapters(settings, provider)
    newest = moment

    def seen(at: datetime | None) -> None:
        nonlocal newest
        if at is not None and (newest is None or at > newest):
            newest = at

    for account in adapter.changed_accounts(moment, _crm_fields(mapping)):
        summary.accounts += 1
        seen(account.modified_at)
        contact = adapter.billing_contact(account.id) if _needs_contact(mapping) else None
        try:
            with connect() as conn:
                outcome, conflicts = sync_account(
                    conn, book_id, mapping, account, contact, currency
                )
                conn.commit()
        except LedgerError as exc:
            summary.errors.append(f"{account.id}: {exc.message}")
            _log_error(connect, book_id, provider, account.id, exc.message)
        else:
            setattr(summary, outcome, getattr(summary, outcome) + 1)
            summary.conflicts += conflicts
        if progress:
            progress(summary)
    for deal in adapter.won_deals(moment):
        summary.deals += 1
        seen(deal.modified_at)
        try:
            with connect() as conn:
                outcome = sync_deal(conn, book_id, mapping, deal, today)
                conn.commit()
        except LedgerError as exc:
            summary.errors.append(f"{deal.id}: {exc.message}")
            _log_error(connect, book_id, provider, deal.id, exc.message)
        else:
            if outcome == "created":
                summary.subscriptions += 1
            elif outcome == "skipped":
                summary.skipped += 1
        if progress:
            progress(summary)
    summary.cursor = newest.isoformat() if newest else None
    with connect() as conn:
        store.save_cursor(conn, book_id, provider, summary.cursor)
        conn.commit()
    return summary
