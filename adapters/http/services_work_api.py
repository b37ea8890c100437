"""Services (MSP), continued: expenses, percent-complete progress, people's cost
rates, and the WIP-by-age, retainer burn-down and profitability reports."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from adapters.http.routes import Reader, Run, Tx, book_today, command, json_response
from adapters.keys import Permission, Principal
from adapters.runtime import Runtime
from billing.msp import AGE_BUCKETS, contract_position, hours_text
from billing.postgres import msp_expenses, msp_progress, msp_reports
from billing.postgres.ids import parse_id
from ledger.money import minor_unit_text as money
from ledger.money import price_text


class ExpenseIn(msgspec.Struct, forbid_unknown_fields=True):
    contract: str
    person: str
    date: date
    description: str
    amount: str
    currency: str | None = None
    markup_percent: str | None = None
    billable_amount: str | None = None
    billable: bool = True
    receipt: dict[str, str] | None = None
    external_id: str | None = None
    adjusts: str | None = None


class ExpenseUpdateIn(msgspec.Struct, forbid_unknown_fields=True):
    description: str | None = None


class ProgressIn(msgspec.Struct, forbid_unknown_fields=True):
    percent_complete: str
    date: date | None = None
    adjustment: bool = False


class PersonIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    cost_rate: str
    currency: str
    role: str | None = None


def expense_json(e: msp_expenses.Expense) -> dict[str, Any]:
    c = e.currency
    return {
        "id": str(e.id),
        "object": "expense",
        "contract": str(e.contract_id),
        "customer": str(e.customer_id),
        "person": e.person,
        "date": e.date.isoformat(),
        "description": e.description,
        "currency": c,
        "amount": money(e.cost, c),
        "markup_percent": None if e.markup_percent is None else str(e.markup_percent),
        "billable_amount": money(e.billable_amount, c),
        "billable": e.billable,
        "receipt": e.receipt,
        "status": e.status,
        "invoice": str(e.invoice_id) if e.invoice_id else None,
        "invoice_line": e.invoice_line,
        "external_id": e.external_id,
        "adjusts": str(e.adjusts) if e.adjusts else None,
    }


def progress_json(
    contract_id: str, currency: str, state: msp_progress.ProgressState
) -> dict[str, Any]:
    unbilled, deferred = contract_position(state.earned, state.billed)
    return {
        "object": "contract_progress",
        "contract": contract_id,
        "kind": state.kind,
        "date": state.date.isoformat(),
        "percent_complete": str(state.percent_complete),
        "earned": money(state.earned, currency),
        "billed": money(state.billed, currency),
        "unbilled": money(unbilled, currency),
        "deferred": money(deferred, currency),
    }


def person_json(p: msp_reports.Person) -> dict[str, Any]:
    return {
        "object": "person",
        "name": p.name,
        "currency": p.currency,
        "cost_rate": price_text(p.cost_rate, p.currency),
        "role": p.role,
    }


def wip_report_json(as_of: date, rows: list[msp_reports.WipAge]) -> dict[str, Any]:
    return {
        "as_of": as_of.isoformat(),
        "buckets": list(AGE_BUCKETS),
        "clients": [
            {
                "customer": str(w.customer_id),
                "currency": w.currency,
                "buckets": {b: money(v, w.currency) for b, v in w.buckets.items()},
                "total": money(w.total, w.currency),
            }
            for w in rows
        ],
    }


def burn_down_json(rows: list[msp_reports.BurnDown]) -> dict[str, Any]:
    return {
        "periods": [
            {
                "contract": str(b.contract_id),
                "customer": str(b.customer_id),
                "period_start": b.period_start.isoformat(),
                "period_end": b.period_end.isoformat(),
                "included_hours": hours_text(b.included_minutes),
                "carried_in_hours": hours_text(b.carried_in_minutes),
                "used_hours": hours_text(b.used_minutes),
                "drawn_hours": hours_text(b.drawn_minutes),
                "overage_hours": hours_text(b.overage_minutes),
                "remaining_hours": hours_text(b.remaining_minutes),
                "carried_out_hours": hours_text(b.carried_out_minutes),
                "expired_hours": hours_text(b.expired_minutes),
                "closed": b.closed,
            }
            for b in rows
        ]
    }


def profitability_json(start: date, end: date, rows: list[msp_reports.Profitability]) -> Any:
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "clients": [
            {
                "customer": str(p.customer_id),
                "currency": p.currency,
                "revenue": money(p.revenue, p.currency),
                "labor_cost": money(p.labor_cost, p.currency),
                "expense_cost": money(p.expense_cost, p.currency),
                "cost": money(p.cost, p.currency),
                "margin": money(p.margin, p.currency),
                "margin_ratio": None if p.margin_ratio is None else str(p.margin_ratio),
                "unpriced_hours": hours_text(p.unpriced_minutes),
            }
            for p in rows
        ],
    }


class ServicesWorkController(Controller):
    path = "/v1"
    tags = ["services"]

    @command("/expenses", "createExpense", Permission.BILLING_WRITE)
    def create_expense(self, data: JSONBody[ExpenseIn], run: Run) -> Response[bytes]:
        spec = msp_expenses.ExpenseSpec(**msgspec.structs.asdict(data))
        return run(
            data, lambda tx: expense_json(msp_expenses.create_expense(tx.conn, tx.book_id, spec))
        )

    @get("/expenses", operation_id="listExpenses", sync_to_thread=True)
    def list_expenses(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        contract: FromQuery[str | None] = None,
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            found = msp_expenses.list_expenses(conn, principal.book_id, contract_ref=contract)
        return json_response({"data": [expense_json(e) for e in found]})

    @get("/expenses/{ref:str}", operation_id="getExpense", sync_to_thread=True)
    def get_expense(
        self,
        ref: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            found = msp_expenses.get_expense(conn, principal.book_id, ref)
        return json_response(expense_json(found))

    @command("/expenses/{ref:str}", "updateExpense", Permission.BILLING_WRITE, status=200)
    def update_expense(
        self, ref: FromPath[str], data: JSONBody[ExpenseUpdateIn], run: Run
    ) -> Response[bytes]:
        return run(
            {"ref": ref, "body": data},
            lambda tx: expense_json(
                msp_expenses.update_expense(tx.conn, tx.book_id, ref, data.description)
            ),
        )

    @command("/expenses/{ref:str}/approve", "approveExpense", Permission.BILLING_WRITE, status=200)
    def approve_expense(self, ref: FromPath[str], run: Run) -> Response[bytes]:
        return run(
            {"ref": ref},
            lambda tx: expense_json(msp_expenses.approve_expense(tx.conn, tx.book_id, ref)),
        )

    @command("/contracts/{ref:str}/progress", "recordContractProgress", Permission.BILLING_WRITE)
    def record_progress(
        self, ref: FromPath[str], data: JSONBody[ProgressIn], run: Run
    ) -> Response[bytes]:
        def work(tx: Tx) -> dict[str, Any]:
            from billing.postgres.msp import get_contract

            state = msp_progress.record_progress(
                tx.conn,
                tx.book_id,
                ref,
                data.date or tx.today(),
                data.percent_complete,
                adjustment=data.adjustment,
            )
            contract = get_contract(tx.conn, tx.book_id, ref)
            return progress_json(str(contract.id), contract.currency, state)

        return run({"ref": ref, "body": data}, work)

    @command("/people", "setPerson", Permission.BILLING_WRITE)
    def set_person(self, data: JSONBody[PersonIn], run: Run) -> Response[bytes]:
        return run(
            data,
            lambda tx: person_json(
                msp_reports.set_person(
                    tx.conn, tx.book_id, data.name, data.cost_rate, data.currency, data.role
                )
            ),
        )

    @get("/people", operation_id="listPeople", sync_to_thread=True)
    def list_people(
        self, principal: NamedDependency[Principal], runtime: NamedDependency[Runtime]
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            found = msp_reports.list_people(conn, principal.book_id)
        return json_response({"data": [person_json(p) for p in found]})

    @get("/reports/wip", operation_id="getWipReport", sync_to_thread=True)
    def wip(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        as_of: FromQuery[date | None] = None,
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            day = as_of or book_today(conn, runtime, principal)
            rows = msp_reports.wip_by_age(conn, principal.book_id, day)
        return json_response(wip_report_json(day, rows))

    @get("/reports/retainer-burn-down", operation_id="getRetainerBurnDown", sync_to_thread=True)
    def burn_down(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        contract: FromQuery[str | None] = None,
    ) -> Response[bytes]:
        contract_id = parse_id(contract, "contract") if contract else None
        with Reader(runtime, principal) as conn:
            rows = msp_reports.retainer_burn_down(conn, principal.book_id, contract_id)
        return json_response(burn_down_json(rows))

    @get("/reports/profitability", operation_id="getProfitability", sync_to_thread=True)
    def profitability(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        date_from: Annotated[date, QueryParameter(name="from")],
        date_to: Annotated[date, QueryParameter(name="to")],
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            rows = msp_reports.profitability(conn, principal.book_id, date_from, date_to)
        return json_response(profitability_json(date_from, date_to, rows))
