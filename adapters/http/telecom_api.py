"""Rate plans, subscribers, CDRs and rating runs (API.md, "Usage and telecom").

A CDR batch stores its good records and reports the others by position
(`index`, from 0) with a reason; a re-sent record is a duplicate, the same id
with other content a `conflict`.
"""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Any

import msgspec
from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from adapters.http.routes import Reader, Run, Tx, command
from adapters.keys import Permission, Principal
from adapters.runtime import Runtime
from billing.postgres import telecom as store
from billing.telecom import PlanVersion
from ledger.money import minor_unit_text as money


class RatePlanIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    effective_from: str
    currency: str
    time_zone: str
    rates: list[dict[str, Any]]
    bands: list[dict[str, Any]] = []
    zones: list[dict[str, Any]] = []
    allowances: list[dict[str, Any]] = []
    roaming_uplift_percent: str = "0"


class SubscriberIn(msgspec.Struct, forbid_unknown_fields=True):
    subscriber: str
    customer: str
    rate_plan: str
    wallet: str | None = None


class CdrBatchIn(msgspec.Struct, forbid_unknown_fields=True):
    cdrs: list[dict[str, Any]]


class CdrRatingIn(msgspec.Struct, forbid_unknown_fields=True):
    through: date


def rate_plan_json(plan_id: object, plan: PlanVersion, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(plan_id),
        "object": "rate_plan",
        "name": plan.name,
        "effective_from": plan.effective_from.isoformat(),
        "currency": plan.currency,
        "time_zone": plan.time_zone,
        "bands": body["bands"],
        "zones": body["zones"],
        "rates": body["rates"],
        "allowances": body["allowances"],
        "roaming_uplift_percent": str(plan.roaming_uplift_percent),
    }


DETAIL_COLUMNS = (
    "id",
    "start",
    "event_type",
    "destination",
    "zone",
    "band",
    "quantity",
    "billed_quantity",
    "amount",
)


def usage_detail_csv(rows: list[dict[str, Any]]) -> str:
    """API.md's usage-detail columns, one line per rated CDR."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(DETAIL_COLUMNS)
    for r in rows:
        if r["amount"] is None:
            continue
        writer.writerow(
            [
                r["id"],
                r["start"].isoformat(),
                r["event_type"],
                r["destination"],
                r["zone"] or "",
                r["band"] or "",
                r["quantity"],
                r["billed_quantity"],
                money(r["amount"], r["currency"]),
            ]
        )
    return out.getvalue()


class TelecomController(Controller):
    path = "/v1"
    tags = ["telecom"]

    @command("/rate-plans", "createRatePlan", Permission.BILLING_WRITE)
    def create_rate_plan(self, data: JSONBody[RatePlanIn], run: Run) -> Response[bytes]:
        body = msgspec.to_builtins(data)

        def work(tx: Tx) -> dict[str, Any]:
            plan_id, plan = store.create_rate_plan(tx.conn, tx.book_id, body)
            return rate_plan_json(plan_id, plan, body)

        return run(data, work)

    @command("/subscribers", "createSubscriber", Permission.BILLING_WRITE)
    def create_subscriber(self, data: JSONBody[SubscriberIn], run: Run) -> Response[bytes]:
        def work(tx: Tx) -> dict[str, Any]:
            s = store.create_subscriber(
                tx.conn, tx.book_id, data.subscriber, data.customer, data.rate_plan, data.wallet
            )
            return {
                "subscriber": s.subscriber,
                "object": "subscriber",
                "customer": str(s.customer_id),
                "rate_plan": s.rate_plan,
                "wallet": None if s.wallet_id is None else str(s.wallet_id),
                "created_at": s.created_at.isoformat(),
            }

        return run(data, work)

    @command("/cdrs", "importCdrs", Permission.BILLING_WRITE, status=200)
    def import_cdrs(self, data: JSONBody[CdrBatchIn], run: Run) -> Response[bytes]:
        def work(tx: Tx) -> dict[str, Any]:
            result = store.import_cdrs(tx.conn, tx.book_id, list(enumerate(data.cdrs))).json()
            for r in result["rejected"]:
                r["index"] = r.pop("line")
            return result

        return run(data, work)

    @command("/cdr-ratings", "runCdrRating", Permission.BILLING_WRITE)
    def rate(self, data: JSONBody[CdrRatingIn], run: Run) -> Response[bytes]:
        def work(tx: Tx) -> dict[str, Any]:
            r = store.rate_through(tx.conn, tx.book_id, data.through)
            return {
                "id": str(r.id),
                "object": "cdr_rating_run",
                "through": r.through.isoformat(),
                "rated": r.rated,
                "unrateable": r.unrateable,
                "entries": r.entries,
                "amounts": {c: money(a, c) for c, a in sorted(r.amounts.items())},
            }

        return run(data, work)

    @get(
        "/subscribers/{subscriber:str}/usage-detail",
        operation_id="getSubscriberUsageDetail",
        sync_to_thread=True,
    )
    def usage_detail(
        self,
        subscriber: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            rows = store.usage_detail(conn, principal.book_id, subscriber)
        return Response(content=usage_detail_csv(rows).encode(), media_type="text/csv")
