"""The catalog: products and their prices (API.md).

Unit prices keep the places they were given (up to 12).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from adapters.http.billing_fields import MAX_PAGE, decimal_field
from adapters.http.cursors import decode_cursor, id_page
from adapters.http.routes import Reader, Run, command, json_response
from adapters.keys import Permission, Principal
from adapters.runtime import Runtime
from billing.postgres import catalog


class ProductIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    description: str | None = None
    revenue_account: str = "Income:Subscriptions"
    metadata: dict[str, Any] = {}


class TierIn(msgspec.Struct, forbid_unknown_fields=True):
    up_to: int | None
    unit_amount: str = "0"
    flat_amount: str = "0"


class PriceIn(msgspec.Struct, forbid_unknown_fields=True):
    product: str
    currency: str
    charge_model: str
    unit_amount: str | None = None
    tiers: list[TierIn] | None = None
    package_size: int | None = None
    interval: str | None = None
    interval_count: int = 1
    metric: str | None = None
    aggregation: str | None = None
    free_units: str | None = None
    minimum_amount: str | None = None
    tax_behavior: str = "exclusive"
    customer: str | None = None
    overrides_price: str | None = None
    metadata: dict[str, Any] = {}


def product_json(product: catalog.Product) -> dict[str, Any]:
    return {
        "id": str(product.id),
        "object": "product",
        "name": product.name,
        "description": product.description,
        "revenue_account": product.revenue_account,
        "active": product.active,
        "metadata": product.metadata,
    }


def price_json(price: catalog.Price) -> dict[str, Any]:
    return {
        "id": str(price.id),
        "object": "price",
        "product": str(price.product_id),
        "currency": price.currency,
        "charge_model": price.charge_model.value,
        "unit_amount": None if price.unit_amount is None else str(price.unit_amount),
        "tiers": price.tiers,
        "package_size": price.package_size,
        "recurring": price.recurring,
        "interval": price.interval.value if price.interval else None,
        "interval_count": price.interval_count if price.interval else None,
        "metric": price.metric,
        "aggregation": price.aggregation,
        "free_units": None if price.free_units is None else str(price.free_units),
        "minimum_amount": None if price.minimum_amount is None else str(price.minimum_amount),
        "tax_behavior": price.tax_behavior,
        "customer": str(price.customer_id) if price.customer_id else None,
        "overrides_price": str(price.overrides_price_id) if price.overrides_price_id else None,
        "active": price.active,
        "metadata": price.metadata,
    }


def price_spec(body: PriceIn) -> catalog.PriceSpec:
    return catalog.PriceSpec(
        product=body.product,
        currency=body.currency,
        charge_model=body.charge_model,
        unit_amount=None
        if body.unit_amount is None
        else decimal_field(body.unit_amount, "unit_amount"),
        tiers=None
        if body.tiers is None
        else [
            {"up_to": t.up_to, "unit_amount": t.unit_amount, "flat_amount": t.flat_amount}
            for t in body.tiers
        ],
        package_size=body.package_size,
        interval=body.interval,
        interval_count=body.interval_count,
        metric=body.metric,
        aggregation=body.aggregation,
        free_units=None
        if body.free_units is None
        else decimal_field(body.free_units, "free_units"),
        minimum_amount=None
        if body.minimum_amount is None
        else decimal_field(body.minimum_amount, "minimum_amount"),
        tax_behavior=body.tax_behavior,
        customer=body.customer,
        overrides_price=body.overrides_price,
        metadata=body.metadata,
    )


class CatalogController(Controller):
    path = "/v1"
    tags = ["billing"]

    @command("/products", "createProduct", Permission.BILLING_WRITE)
    def create_product(self, data: JSONBody[ProductIn], run: Run) -> Response[bytes]:
        return run(
            data,
            lambda tx: product_json(
                catalog.create_product(
                    tx.conn,
                    tx.book_id,
                    data.name,
                    description=data.description,
                    revenue_account=data.revenue_account,
                    metadata=data.metadata,
                )
            ),
        )

    @get("/products", operation_id="listProducts", sync_to_thread=True)
    def list_products(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 100,
    ) -> Response[bytes]:
        after = decode_cursor(cursor)
        with Reader(runtime, principal) as conn:
            found = catalog.list_products(conn, principal.book_id, after=after, limit=limit)
        return json_response(id_page(found, limit, product_json))

    @get("/products/{ref:str}", operation_id="getProduct", sync_to_thread=True)
    def get_product(
        self,
        ref: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            product = catalog.get_product(conn, principal.book_id, ref)
        return json_response(product_json(product))

    @command("/prices", "createPrice", Permission.BILLING_WRITE)
    def create_price(self, data: JSONBody[PriceIn], run: Run) -> Response[bytes]:
        spec = price_spec(data)
        return run(data, lambda tx: price_json(catalog.create_price(tx.conn, tx.book_id, spec)))

    @get("/prices/{ref:str}", operation_id="getPrice", sync_to_thread=True)
    def get_price(
        self,
        ref: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            price = catalog.get_price(conn, principal.book_id, ref)
        return json_response(price_json(price))
