"""CRM sync state in PostgreSQL: mappings, record links, deals, the sync log."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from billing.crm import DEFAULT_FIELDS, DEFAULT_OUTBOUND, check_fields, check_outbound
from billing.errors import InvalidBillingRequest
from billing.postgres.catalog import get_price
from ledger.errors import NotFound


@dataclass(frozen=True, slots=True)
class Mapping:
    provider: str
    fields: dict[str, str]  # CRM field → customer field
    outbound: dict[str, str]  # billing status field → CRM field
    products: dict[str, str]  # CRM product id → price id
    cursor: str | None
    synced_at: datetime | None

    def json(self) -> dict[str, Any]:
        return {
            "object": "crm_mapping",
            "provider": self.provider,
            "fields": self.fields,
            "outbound": self.outbound,
            "products": self.products,
            "cursor": self.cursor,
            "synced_at": self.synced_at.isoformat() if self.synced_at else None,
        }


def get_mapping(conn: psycopg.Connection, book_id: uuid.UUID, provider: str) -> Mapping:
    """The book's mapping for the provider; the defaults (billing/crm.py) where unset."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "select fields, outbound, products, cursor, synced_at from crm_connections"
            " where book_id = %s and provider = %s",
            (book_id, provider),
        ).fetchone()
    row = row or {"fields": {}, "outbound": {}, "products": {}, "cursor": None, "synced_at": None}
    return Mapping(
        provider=provider,
        fields=row["fields"] or DEFAULT_FIELDS[provider],
        outbound=row["outbound"] or DEFAULT_OUTBOUND[provider],
        products=row["products"],
        cursor=row["cursor"],
        synced_at=row["synced_at"],
    )


def set_mapping(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    provider: str,
    *,
    fields: dict[str, Any] | None,
    outbound: dict[str, Any] | None,
    products: dict[str, Any] | None,
) -> Mapping:
    """Replace the parts given; every error of every part is reported at once (422)."""
    errors = (check_fields(fields) if fields is not None else []) + (
        check_outbound(outbound) if outbound is not None else []
    )
    resolved: dict[str, str] | None = None
    if products is not None:
        resolved = {}
        for crm_product, price in products.items():
            try:
                resolved[crm_product] = str(get_price(conn, book_id, str(price)).id)
            except NotFound:
                errors.append(
                    f"product {crm_product!r} maps to price {price!r}, which does not exist"
                )
    if errors:
        raise InvalidBillingRequest("; ".join(errors), errors=errors)
    conn.execute(
        "insert into crm_connections (book_id, provider, fields, outbound, products)"
        " values (%(b)s, %(p)s, coalesce(%(f)s::jsonb, '{}'), coalesce(%(o)s::jsonb, '{}'),"
        " coalesce(%(r)s::jsonb, '{}'))"
        " on conflict (book_id, provider) do update set"
        "  fields = coalesce(%(f)s::jsonb, crm_connections.fields),"
        "  outbound = coalesce(%(o)s::jsonb, crm_connections.outbound),"
        "  products = coalesce(%(r)s::jsonb, crm_connections.products), updated_at = now()",
        {
            "b": book_id,
            "p": provider,
            "f": None if fields is None else Jsonb(fields),
            "o": None if outbound is None else Jsonb(outbound),
            "r": None if resolved is None else Jsonb(resolved),
        },
    )
    return get_mapping(conn, book_id, provider)


def save_cursor(
    conn: psycopg.Connection, book_id: uuid.UUID, provider: str, cursor: str | None
) -> None:
    conn.execute(
        "insert into crm_connections (book_id, provider, cursor, synced_at)"
        " values (%s, %s, %s, now()) on conflict (book_id, provider) do update set"
        " cursor = coalesce(excluded.cursor, crm_connections.cursor), synced_at = now()",
        (book_id, provider, cursor),
    )


@dataclass(frozen=True, slots=True)
class Link:
    record_id: str
    customer_id: uuid.UUID
    last_values: dict[str, Any]
    pushed: dict[str, Any] | None


def lock_link(
    conn: psycopg.Connection, book_id: uuid.UUID, provider: str, record_id: str
) -> Link | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "select record_id, customer_id, last_values, pushed from crm_links"
            " where book_id = %s and provider = %s and record_id = %s for update",
            (book_id, provider, record_id),
        ).fetchone()
    return Link(**row) if row else None


def save_link(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    provider: str,
    record_id: str,
    customer_id: uuid.UUID,
    last_values: dict[str, Any],
) -> None:
    conn.execute(
        "insert into crm_links (book_id, provider, record_id, customer_id, last_values)"
        " values (%s, %s, %s, %s, %s) on conflict (book_id, provider, record_id) do update set"
        " customer_id = excluded.customer_id, last_values = excluded.last_values,"
        " synced_at = now()",
        (book_id, provider, record_id, customer_id, Jsonb(last_values)),
    )


def customer_of_record(
    conn: psycopg.Connection, book_id: uuid.UUID, provider: str, record_id: str
) -> uuid.UUID | None:
    row = conn.execute(
        "select customer_id from crm_links where book_id = %s and provider = %s and record_id = %s",
        (book_id, provider, record_id),
    ).fetchone()
    return row[0] if row else None


def deal_subscription(
    conn: psycopg.Connection, book_id: uuid.UUID, provider: str, deal_id: str
) -> uuid.UUID | None:
    row = conn.execute(
        "select subscription_id from crm_deals where book_id = %s and provider = %s"
        " and deal_id = %s",
        (book_id, provider, deal_id),
    ).fetchone()
    return row[0] if row else None


def save_deal(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    provider: str,
    deal_id: str,
    subscription_id: uuid.UUID,
) -> None:
    conn.execute(
        "insert into crm_deals (book_id, provider, deal_id, subscription_id)"
        " values (%s, %s, %s, %s)",
        (book_id, provider, deal_id, subscription_id),
    )


def log(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    provider: str,
    kind: str,
    *,
    record_id: str | None = None,
    customer_id: uuid.UUID | None = None,
    field: str | None = None,
    crm_value: Any = None,
    billing_value: Any = None,
    resolution: str | None = None,
    message: str | None = None,
) -> None:
    conn.execute(
        "insert into crm_sync_log (book_id, provider, record_id, customer_id, kind, field,"
        " crm_value, billing_value, resolution, message)"
        " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            book_id,
            provider,
            record_id,
            customer_id,
            kind,
            field,
            Jsonb(crm_value),
            Jsonb(billing_value),
            resolution,
            message,
        ),
    )


def list_log(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    *,
    provider: str | None,
    kind: str | None,
    before: int | None,
    limit: int,
) -> list[dict[str, Any]]:
    """The sync log, newest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "select id, provider, record_id, customer_id, kind, field, crm_value,"
            " billing_value, resolution, message, at from crm_sync_log where book_id = %s"
            " and (%s::text is null or provider = %s) and (%s::text is null or kind = %s)"
            " and (%s::bigint is null or id < %s) order by id desc limit %s",
            (book_id, provider, provider, kind, kind, before, before, limit),
        ).fetchall()
    out = []
    for r in rows:
        customer = r.pop("customer_id")
        out.append(
            {
                **r,
                "id": str(r["id"]),
                "object": "crm_sync_log_entry",
                "customer": str(customer) if customer else None,
                "at": r["at"].isoformat(),
            }
        )
    return out
