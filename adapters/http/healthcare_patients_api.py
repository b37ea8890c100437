"""Healthcare, the patient's side and the revenue-cycle reports (API.md, Healthcare):
patient statements (JSON or HTML), payment plans, refunds of patient credit
balances, small-balance write-offs; denials, days in AR, net collection rate,
expected vs actual payments.

A statement names the patient and their visits: PHI, so only keys that may see
PHI (admin, billing_staff) get one, and every one served is in the access log.
Plans, refunds, write-offs and reports carry opaque ids and amounts only.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from adapters.http.commands import require
from adapters.http.healthcare_api import _money
from adapters.http.problems import ApiError
from adapters.http.routes import Reader, Reply, Run, Tx, book_today, command, json_response
from adapters.invoice_pdf import html_to_pdf
from adapters.keys import Permission, Principal
from adapters.patient_statement import render_statement_html
from adapters.runtime import Runtime
from billing.postgres import healthcare as store
from billing.postgres import healthcare_patients as patients
from billing.postgres import healthcare_reports as reports
from ledger.postgres.books import get_book

STATEMENT_FORMATS = ("json", "html", "pdf")


class PaymentPlanIn(msgspec.Struct, forbid_unknown_fields=True):
    total: str
    installments: int
    interval: str = "monthly"
    start_date: date | None = None
    currency: str | None = None


class RefundIn(msgspec.Struct, forbid_unknown_fields=True):
    amount: str | None = None  # default: the whole credit balance
    method: str = "check"
    paid_on: date | None = None
    currency: str | None = None


class WriteOffIn(msgspec.Struct, forbid_unknown_fields=True):
    as_of: date
    max_amount: str
    currency: str | None = None


def _money_or_none(value: Decimal | None) -> str | None:
    return None if value is None else _money(value)


def _rate(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def plan_json(plan: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(plan["id"]),
        "object": "payment_plan",
        "patient": str(plan["patient_id"]),
        "status": plan["status"],
        "currency": plan["currency"],
        "total": _money(plan["total"]),
        "installments": plan["installments"],
        "interval": plan["interval"],
        "start_date": plan["start_date"].isoformat(),
        "paid": _money(plan["paid"]),
        "remaining": _money(plan["remaining"]),
        "as_of": plan["as_of"].isoformat(),
        "schedule": [
            {
                "seq": i["seq"],
                "due_on": i["due_on"].isoformat(),
                "amount": _money(i["amount"]),
                "paid": _money(i["paid"]),
                "remaining": _money(i["remaining"]),
                "status": i["status"],
            }
            for i in plan["schedule"]
        ],
        "missed": plan["missed"],
        "created_at": plan["created_at"].isoformat(),
    }


def statement_json(st: dict[str, Any]) -> dict[str, Any]:
    patient = st["patient"]
    money_keys = ("charges", "insurance_paid", "adjustments", "patient_responsibility",
                  "payments", "write_offs", "balance")  # fmt: skip
    return {
        "object": "patient_statement",
        "patient": str(patient["id"]),
        "patient_name": f"{patient['first_name']} {patient['last_name']}",
        "address": patient["address"],
        "as_of": st["as_of"].isoformat(),
        "currency": st["currency"],
        "encounters": [
            {
                "encounter": e["encounter"],
                "date_of_service": e["date_of_service"].isoformat(),
                **{k: _money(e[k]) for k in money_keys},
            }
            for e in st["encounters"]
        ],
        "payments": [
            {
                "id": str(p["id"]),
                "received_on": p["received_on"].isoformat(),
                "amount": _money(p["amount"]),
                "method": p["method"],
            }
            for p in st["payments"]
        ],
        "refunds": [
            {
                "id": str(r["id"]),
                "paid_on": r["paid_on"].isoformat(),
                "amount": _money(r["amount"]),
                "method": r["method"],
            }
            for r in st["refunds"]
        ],
        "totals": {k: _money(v) for k, v in st["totals"].items()},
        "payment_plan": plan_json(st["payment_plan"]) if st["payment_plan"] else None,
    }


def _dates(value: Any) -> Any:
    """Dates to ISO strings, Decimals to money strings, through a report's nesting."""
    if isinstance(value, dict):
        return {k: _dates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_dates(v) for v in value]
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return _money(value)
    return value


def denials_json(found: dict[str, Any]) -> dict[str, Any]:
    for row in [found, *found["payers"]]:
        row["denial_rate"] = _rate(row["denial_rate"])
    for row in [*found["by_carc"], *(c for p in found["payers"] for c in p["by_carc"])]:
        row["rate"] = _rate(row["rate"])
    return {"object": "denial_report", **_dates(found)}


def days_in_ar_json(found: dict[str, Any]) -> dict[str, Any]:
    figure = found.pop("days_in_ar")
    return {"object": "days_in_ar", **_dates(found), "days_in_ar": _rate(figure)}


def net_collection_rate_json(found: dict[str, Any]) -> dict[str, Any]:
    rate = found.pop("net_collection_rate")
    return {"object": "net_collection_rate", **_dates(found), "net_collection_rate": _rate(rate)}


def expected_payments_json(found: dict[str, Any]) -> dict[str, Any]:
    return {"object": "expected_payments", **_dates(found)}


class HealthcarePatientsController(Controller):
    path = "/v1"
    tags = ["healthcare"]

    @get("/patients/{ref:str}/statement", operation_id="getPatientStatement", sync_to_thread=True)
    def statement(
        self,
        ref: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        as_of: FromQuery[date | None] = None,
        fmt: Annotated[str, QueryParameter(name="format")] = "json",
    ) -> Response[bytes]:
        require(principal, Permission.SEE_PHI)  # names, address, visits: all PHI
        if fmt not in STATEMENT_FORMATS:
            raise ApiError(422, "format_unavailable", f"format {fmt!r}: use json, html or pdf")
        with Reader(runtime, principal, logs_access=True) as conn:
            day = as_of or book_today(conn, runtime, principal)
            raw = patients.statement(conn, principal.book_id, ref, day)
            found = statement_json(raw)
            provider = get_book(conn, principal.book_id).name
            store.log_phi(
                conn,
                principal.book_id,
                principal.key_id,
                principal.role.value,
                [raw["patient"]["id"]],
                "read",
                "GET /v1/patients/{id}/statement",
            )
            conn.commit()  # the access is logged before the statement goes out
        if fmt == "html":
            html = render_statement_html(found, provider)
            return Response(content=html.encode(), media_type="text/html; charset=utf-8")
        if fmt == "pdf":  # the same page, printed (adapters/invoice_pdf.py: WeasyPrint)
            pdf = html_to_pdf(render_statement_html(found, provider))
            return Response(content=pdf, media_type="application/pdf")
        return json_response(found)

    @command("/patients/{ref:str}/payment-plans", "createPaymentPlan", Permission.BILLING_WRITE)
    def create_plan(
        self, ref: FromPath[str], data: JSONBody[PaymentPlanIn], run: Run
    ) -> Response[bytes]:
        body = msgspec.to_builtins(data)
        body["start_date"] = data.start_date

        def work(tx: Tx) -> dict[str, Any]:
            return plan_json(
                patients.create_payment_plan(tx.conn, tx.book_id, ref, body, tx.today())
            )

        return run({"ref": ref, "body": data}, work)

    @get("/payment-plans/{ref:str}", operation_id="getPaymentPlan", sync_to_thread=True)
    def get_plan(
        self,
        ref: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        as_of: FromQuery[date | None] = None,
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            day = as_of or book_today(conn, runtime, principal)
            plan = patients.get_payment_plan(conn, principal.book_id, ref)
            found = patients.plan_view(conn, principal.book_id, plan, day)
        return json_response(plan_json(found))

    @command("/patients/{ref:str}/refunds", "createPatientRefund", Permission.BILLING_WRITE)
    def refund(self, ref: FromPath[str], data: JSONBody[RefundIn], run: Run) -> Response[bytes]:
        body = msgspec.to_builtins(data)
        body["paid_on"] = data.paid_on

        def work(tx: Tx) -> dict[str, Any]:
            row = patients.create_refund(tx.conn, tx.book_id, ref, body, tx.today())
            return {
                "id": str(row["id"]),
                "object": "patient_refund",
                "patient": str(row["patient_id"]),
                "amount": _money(row["amount"]),
                "currency": row["currency"],
                "method": row["method"],
                "paid_on": row["paid_on"].isoformat(),
                "entry": str(row["entry_id"]),
                "credit_balance": _money(row["credit_balance"]),
            }

        return run({"ref": ref, "body": data}, work)

    @command("/patient-balances/write-offs", "writeOffSmallBalances", Permission.BILLING_WRITE)
    def write_off(self, data: JSONBody[WriteOffIn], run: Run) -> Response[bytes]:
        body = msgspec.to_builtins(data)
        body["as_of"] = data.as_of

        def work(tx: Tx) -> Any:
            fresh, summary = patients.write_off_small_balances(
                tx.conn, tx.book_id, body, tx.today()
            )
            return summary if fresh else Reply(200, summary)

        return run(data, work)

    @get("/reports/denials", operation_id="getDenialReport", sync_to_thread=True)
    def denials(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        date_from: Annotated[date | None, QueryParameter(name="from")] = None,
        date_to: Annotated[date | None, QueryParameter(name="to")] = None,
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            end = date_to or book_today(conn, runtime, principal)
            start = date_from or end.replace(month=1, day=1)
            found = reports.denials(conn, principal.book_id, start, end)
        return json_response(denials_json(found))

    @get("/reports/days-in-ar", operation_id="getDaysInAr", sync_to_thread=True)
    def days_in_ar(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        as_of: FromQuery[date | None] = None,
        days: Annotated[int, QueryParameter(ge=1, le=reports.MAX_WINDOW_DAYS)] = 90,
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            day = as_of or book_today(conn, runtime, principal)
            found = reports.days_in_ar_report(conn, principal.book_id, day, days)
        return json_response(days_in_ar_json(found))

    @get("/reports/net-collection-rate", operation_id="getNetCollectionRate", sync_to_thread=True)
    def net_collection_rate(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        date_from: Annotated[date | None, QueryParameter(name="from")] = None,
        date_to: Annotated[date | None, QueryParameter(name="to")] = None,
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            end = date_to or book_today(conn, runtime, principal)
            start = date_from or end.replace(month=1, day=1)
            found = reports.net_collection_rate(conn, principal.book_id, start, end)
        return json_response(net_collection_rate_json(found))

    @get("/reports/expected-payments", operation_id="getExpectedPayments", sync_to_thread=True)
    def expected_payments(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        date_from: Annotated[date | None, QueryParameter(name="from")] = None,
        date_to: Annotated[date | None, QueryParameter(name="to")] = None,
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            end = date_to or book_today(conn, runtime, principal)
            start = date_from or end.replace(month=1, day=1)
            found = reports.expected_vs_actual(conn, principal.book_id, start, end)
        return json_response(expected_payments_json(found))
