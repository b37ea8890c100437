"""Products and prices (with per-customer overrides)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from billing.errors import InvalidBillingRequest
from billing.periods import Interval
from billing.postgres.ids import parse_id
from billing.rating import (
    Charge,
    ChargeModel,
    FlatCharge,
    GraduatedCharge,
    PackageCharge,
    PercentageCharge,
    PerUnitCharge,
    VolumeCharge,
    parse_tiers,
)
from ledger.accounts import account_type_of
from ledger.errors import NotFound
from ledger.money import check_currency

AGGREGATIONS = ("sum", "count", "max", "unique_count", "last")


@dataclass(frozen=True, slots=True)
class Product:
    id: uuid.UUID
    name: str
    description: str | None
    revenue_account: str
    active: bool
    metadata: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PriceSpec:
    product: str
    currency: str
    charge_model: str
    unit_amount: Decimal | None = None
    tiers: Sequence[Mapping[str, Any]] | None = None
    package_size: int | None = None
    interval: str | None = None
    interval_count: int = 1
    metric: str | None = None
    aggregation: str | None = None
    free_units: Decimal | None = None  # usage prices: units free each period
    minimum_amount: Decimal | None = None  # usage prices: minimum commitment per period
    tax_behavior: str = "exclusive"
    customer: str | None = None  # a per-customer override
    overrides_price: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Price:
    id: uuid.UUID
    product_id: uuid.UUID
    currency: str
    charge_model: ChargeModel
    unit_amount: Decimal | None
    tiers: list[dict[str, Any]] | None
    package_size: int | None
    interval: Interval | None
    interval_count: int
    metric: str | None
    aggregation: str | None
    tax_behavior: str
    customer_id: uuid.UUID | None
    overrides_price_id: uuid.UUID | None
    active: bool
    metadata: dict[str, Any]
    free_units: Decimal | None = None
    minimum_amount: Decimal | None = None

    @property
    def recurring(self) -> bool:
        return self.interval is not None

    def charge(self) -> Charge:
        return charge_of(
            self.charge_model, self.currency, self.unit_amount, self.tiers, self.package_size
        )


def charge_of(
    model: ChargeModel,
    currency: str,
    unit_amount: Decimal | None,
    tiers: Sequence[Mapping[str, Any]] | None,
    package_size: int | None,
) -> Charge:
    def amount() -> Decimal:
        if unit_amount is None:
            raise InvalidBillingRequest(f"a {model} price needs unit_amount")
        return unit_amount

    if model is ChargeModel.FLAT:
        return FlatCharge(currency, amount())
    if model is ChargeModel.PER_UNIT:
        return PerUnitCharge(currency, amount())
    if model in (ChargeModel.GRADUATED, ChargeModel.VOLUME):
        if not tiers:
            raise InvalidBillingRequest(f"a {model} price needs tiers")
        parsed = parse_tiers(tiers)
        return (GraduatedCharge if model is ChargeModel.GRADUATED else VolumeCharge)(
            currency, parsed
        )
    if model is ChargeModel.PACKAGE:
        if not package_size or package_size < 1:
            raise InvalidBillingRequest("a package price needs package_size ≥ 1")
        return PackageCharge(currency, amount(), package_size)
    return PercentageCharge(amount())


def create_product(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    name: str,
    *,
    description: str | None = None,
    revenue_account: str = "Income:Subscriptions",
    metadata: dict[str, Any] | None = None,
) -> Product:
    if not name.strip():
        raise InvalidBillingRequest("a product needs a name")
    account_type_of(revenue_account)
    if not revenue_account.startswith("Income:"):
        raise InvalidBillingRequest("revenue_account must be an Income account")
    exists = conn.execute(
        "select 1 from accounts where book_id = %s and name = %s", (book_id, revenue_account)
    ).fetchone()
    if not exists:
        raise NotFound(f"account {revenue_account!r} does not exist in this book")
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "insert into products (book_id, id, name, description, revenue_account, metadata)"
            " values (%s, %s, %s, %s, %s, %s)"
            " returning id, name, description, revenue_account, active, metadata",
            (book_id, uuid.uuid4(), name, description, revenue_account, Jsonb(metadata or {})),
        ).fetchone()
    assert row is not None
    return Product(**row)


def get_product(conn: psycopg.Connection, book_id: uuid.UUID, ref: str) -> Product:
    product_id = parse_id(ref, "product")
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "select id, name, description, revenue_account, active, metadata from products"
            " where book_id = %s and id = %s",
            (book_id, product_id),
        ).fetchone()
    if row is None:
        raise NotFound(f"product {ref!r} does not exist in this book")
    return Product(**row)


def list_products(
    conn: psycopg.Connection, book_id: uuid.UUID, *, after: uuid.UUID | None, limit: int
) -> list[Product]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "select id, name, description, revenue_account, active, metadata from products"
            " where book_id = %s and (%s::uuid is null or id > %s) order by id limit %s",
            (book_id, after, after, limit),
        ).fetchall()
    return [Product(**r) for r in rows]


_PRICE_COLUMNS = (
    "id, product_id, currency, charge_model, unit_amount, tiers, package_size, interval,"
    " interval_count, metric, aggregation, tax_behavior, customer_id, overrides_price_id,"
    " active, metadata, free_units, minimum_amount"
)


def _price(row: dict[str, Any]) -> Price:
    return Price(
        **{
            **row,
            "charge_model": ChargeModel(row["charge_model"]),
            "interval": Interval(row["interval"]) if row["interval"] else None,
        }
    )


def create_price(conn: psycopg.Connection, book_id: uuid.UUID, spec: PriceSpec) -> Price:
    check_currency(spec.currency)
    try:
        model = ChargeModel(spec.charge_model)
    except ValueError:
        raise InvalidBillingRequest(
            f"charge_model must be one of {', '.join(m.value for m in ChargeModel)}"
        ) from None
    interval: Interval | None = None
    if spec.interval is not None:
        try:
            interval = Interval(spec.interval)
        except ValueError:
            raise InvalidBillingRequest("interval must be day, week, month or year") from None
        if not 1 <= spec.interval_count <= 1000:
            raise InvalidBillingRequest("interval_count must be between 1 and 1000")
    if (spec.metric is None) != (spec.aggregation is None):
        raise InvalidBillingRequest("a usage price needs both metric and aggregation")
    if spec.aggregation is not None and spec.aggregation not in AGGREGATIONS:
        raise InvalidBillingRequest(f"aggregation must be one of {', '.join(AGGREGATIONS)}")
    for name in ("free_units", "minimum_amount"):
        value = getattr(spec, name)
        if value is not None and spec.metric is None:
            raise InvalidBillingRequest(f"{name} is for usage prices (with metric)", field=name)
        if value is not None and (not value.is_finite() or value < 0):
            raise InvalidBillingRequest(f"{name} must be zero or more", field=name)
    if spec.tax_behavior not in ("exclusive", "inclusive"):
        raise InvalidBillingRequest("tax_behavior must be exclusive or inclusive")
    charge_of(model, spec.currency, spec.unit_amount, spec.tiers, spec.package_size)
    product = get_product(conn, book_id, spec.product)
    customer_id: uuid.UUID | None = None
    overrides = get_price(conn, book_id, spec.overrides_price) if spec.overrides_price else None
    if spec.customer:
        from billing.postgres.customers import get_customer

        customer = get_customer(conn, book_id, spec.customer)  # its id or external id
        customer_id = customer.id
        if customer.currency != spec.currency:
            raise InvalidBillingRequest(
                f"customer bills in {customer.currency}, the price is in {spec.currency}",
                customer_currency=customer.currency,
                price_currency=spec.currency,
            )
    if overrides is not None and overrides.product_id != product.id:
        raise InvalidBillingRequest("an override must be for the same product")
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "insert into prices (book_id, id, product_id, currency, charge_model, unit_amount,"
            " tiers, package_size, interval, interval_count, metric, aggregation, tax_behavior,"
            " customer_id, overrides_price_id, metadata, free_units, minimum_amount)"
            " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            f" returning {_PRICE_COLUMNS}",
            (
                book_id,
                uuid.uuid4(),
                product.id,
                spec.currency,
                model.value,
                spec.unit_amount,
                Jsonb([dict(t) for t in spec.tiers]) if spec.tiers else None,
                spec.package_size,
                interval.value if interval else None,
                spec.interval_count,
                spec.metric,
                spec.aggregation,
                spec.tax_behavior,
                customer_id,
                overrides.id if overrides else None,
                Jsonb(spec.metadata),
                spec.free_units,
                spec.minimum_amount,
            ),
        ).fetchone()
    assert row is not None
    return _price(row)


def get_price(conn: psycopg.Connection, book_id: uuid.UUID, ref: str) -> Price:
    price_id = parse_id(ref, "price")
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"select {_PRICE_COLUMNS} from prices where book_id = %s and id = %s",
            (book_id, price_id),
        ).fetchone()
    if row is None:
        raise NotFound(f"price {ref!r} does not exist in this book", price=ref)
    return _price(row)


def price_for_customer(
    conn: psycopg.Connection, book_id: uuid.UUID, price: Price, customer_id: uuid.UUID
) -> Price:
    """The customer's own override of a price, if one exists, else the price itself."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"select {_PRICE_COLUMNS} from prices where book_id = %s"
            " and overrides_price_id = %s and customer_id = %s and active"
            " order by created_at desc limit 1",
            (book_id, price.id, customer_id),
        ).fetchone()
    return _price(row) if row else price
