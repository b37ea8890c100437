"""Services (MSP): rate cards, contracts, device counts, milestones, time entries,
the contract billing run and the client's time statement (API.md, "Services")."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter, RawBody

from adapters.http.problems import ApiError
from adapters.http.routes import Reader, Run, Tx, command, json_response
from adapters.invoice_pdf import html_to_pdf
from adapters.keys import Permission, Principal
from adapters.runtime import Runtime
from billing.msp import hours_text
from billing.postgres import invoices as invoice_store
from billing.postgres import msp
from billing.postgres.msp_expenses import expense_statement
from billing.postgres.msp_import import import_time_csv
from ledger.money import minor_unit_text as money
from ledger.money import price_text


class RateCardIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    currency: str
    rates: dict[str, str] = {}
    default_rate: str | None = None
    customer: str | None = None  # a client's override card


class ContractIn(msgspec.Struct, forbid_unknown_fields=True):
    customer: str
    type: str
    start_date: date
    currency: str | None = None
    end_date: date | None = None
    interval: str = "month"
    hourly_rate: str | None = None
    rates: dict[str, str] | None = None
    rounding: dict[str, Any] | None = None
    after_hours_multiplier: str | None = None
    business_hours: dict[str, str] | None = None  # {"start": "08:00", "end": "18:00"}
    cap: str | None = None
    included_hours: str | None = None
    overage_rate: str | None = None
    rollover: str | None = None
    rollover_max_hours: str | None = None
    monthly_fee: str | None = None
    unit_price: str | None = None  # per device
    unit_prices: dict[str, str] | None = None  # {"device": …, "user": …}
    proration: str | None = None
    milestones: list[dict[str, Any]] | None = None
    fee: str | None = None  # fixed_fee by percent complete (POST /v1/contracts/{id}/progress)


class CountIn(msgspec.Struct, forbid_unknown_fields=True):
    date: date
    quantity: int
    kind: str = "device"  # or "user": priced by the contract's unit_prices


class TimeEntryIn(msgspec.Struct, forbid_unknown_fields=True):
    person: str
    contract: str
    date: date
    role: str
    minutes: int | None = None
    start: str | None = None
    end: str | None = None
    billable: str = "billable"
    notes: str = ""
    ticket: str | None = None
    project: str | None = None
    after_hours: bool = False
    external_id: str | None = None
    adjusts: str | None = None


class TimeEntryUpdateIn(msgspec.Struct, forbid_unknown_fields=True):
    notes: str | None = None
    ticket: str | None = None
    project: str | None = None


class RunIn(msgspec.Struct, forbid_unknown_fields=True):
    as_of: date | None = None


def rate_card_json(card: msp.RateCard) -> dict[str, Any]:
    return {
        "id": str(card.id),
        "object": "rate_card",
        "name": card.name,
        "currency": card.currency,
        "customer": str(card.customer_id) if card.customer_id else None,
        "rates": {k: price_text(v, card.currency) for k, v in card.rates.items()},
        "default_rate": price_text(card.default_rate, card.currency)
        if card.default_rate is not None
        else None,
    }


def contract_json(contract: msp.Contract) -> dict[str, Any]:
    c = contract.currency
    return {
        "id": str(contract.id),
        "object": "contract",
        "customer": str(contract.customer_id),
        "type": contract.type,
        "currency": c,
        "start_date": contract.start_date.isoformat(),
        "end_date": contract.end_date.isoformat() if contract.end_date else None,
        "interval": contract.interval,
        "status": contract.status,
        "terms": contract.raw_terms,
        "milestones": [
            {
                "name": m["name"],
                "amount": money(Decimal(m["amount"]), c),
                "completed_on": m["completed_on"].isoformat() if m["completed_on"] else None,
                "invoice": str(m["invoice_id"]) if m["invoice_id"] else None,
            }
            for m in contract.milestones
        ],
        "counts": [
            {"date": d.isoformat(), "quantity": q, "kind": k} for d, q, k in contract.counts
        ],
    }


def _clock_text(minute: int | None) -> str | None:
    return None if minute is None else f"{minute // 60:02d}:{minute % 60:02d}"


def time_entry_json(entry: msp.TimeEntry, currency: str) -> dict[str, Any]:
    return {
        "id": str(entry.id),
        "object": "time_entry",
        "contract": str(entry.contract_id),
        "customer": str(entry.customer_id),
        "person": entry.person,
        "date": entry.date.isoformat(),
        "start": _clock_text(entry.start_minute),
        "end": _clock_text(entry.end_minute),
        "minutes": entry.minutes,
        "rounded_minutes": entry.rounded_minutes,
        "hours": hours_text(entry.rounded_minutes),
        "role": entry.role,
        "billable": entry.billable,
        "after_hours": entry.after_hours,
        "notes": entry.notes,
        "ticket": entry.ticket,
        "project": entry.project,
        "rate": price_text(entry.rate, currency),
        "rate_source": entry.rate_source,
        "amount": money(entry.amount, currency),
        "status": entry.status,
        "drawn_minutes": entry.drawn_minutes,
        "overage_minutes": entry.overage_minutes,
        "written_down": money(entry.written_down, currency),
        "invoice": str(entry.invoice_id) if entry.invoice_id else None,
        "invoice_line": entry.invoice_line,
        "adjusts": str(entry.adjusts) if entry.adjusts else None,
    }


def _entry_json(tx: Tx, entry: msp.TimeEntry) -> dict[str, Any]:
    contract = msp.get_contract(tx.conn, tx.book_id, str(entry.contract_id))
    return time_entry_json(entry, contract.currency)


def run_json(result: msp.RunResult) -> dict[str, Any]:
    return {
        "object": "contract_billing_run",
        "as_of": result.as_of.isoformat(),
        "invoices": [
            {
                "id": str(i.id),
                "number": i.number,
                "customer": str(i.customer_id),
                "total": money(i.total, i.currency),
            }
            for i in result.invoices
        ],
        "written_down": {k: str(v) for k, v in result.written_down.items()},
        "expired_hours": {k: hours_text(v) for k, v in result.expired_minutes.items()},
        "held_below_zero": {k: str(v) for k, v in result.held_below_zero.items()},
    }


def wip_json(as_of: date, lines: list[msp.WipLine]) -> dict[str, Any]:
    return {
        "object": "wip_accrual",
        "as_of": as_of.isoformat(),
        "contracts": [
            {
                "contract": str(w.contract_id),
                "customer": str(w.customer_id),
                "currency": w.currency,
                "amount": money(w.amount, w.currency),
                "entries": w.entries,
            }
            for w in lines
        ],
    }


class ServicesController(Controller):
    path = "/v1"
    tags = ["services"]

    @command("/rate-cards", "createRateCard", Permission.BILLING_WRITE)
    def create_rate_card(self, data: JSONBody[RateCardIn], run: Run) -> Response[bytes]:
        return run(
            data,
            lambda tx: rate_card_json(
                msp.create_rate_card(
                    tx.conn,
                    tx.book_id,
                    data.name,
                    data.currency,
                    data.rates,
                    data.default_rate,
                    data.customer,
                )
            ),
        )

    @command("/contracts", "createContract", Permission.BILLING_WRITE)
    def create_contract(self, data: JSONBody[ContractIn], run: Run) -> Response[bytes]:
        terms = {k: getattr(data, k) for k in msp.TERM_FIELDS}

        def work(tx: Tx) -> dict[str, Any]:
            contract = msp.create_contract(
                tx.conn,
                tx.book_id,
                data.customer,
                data.type,
                data.start_date,
                terms,
                currency=data.currency,
                end_date=data.end_date,
                interval=data.interval,
            )
            return contract_json(contract)

        return run(data, work)

    @get("/contracts", operation_id="listContracts", sync_to_thread=True)
    def list_contracts(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        customer: FromQuery[str | None] = None,
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            found = msp.list_contracts(conn, principal.book_id, customer)
        return json_response({"data": [contract_json(c) for c in found]})

    @get("/contracts/{ref:str}", operation_id="getContract", sync_to_thread=True)
    def get_contract(
        self,
        ref: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            body = contract_json(msp.get_contract(conn, principal.book_id, ref))
        return json_response(body)

    @command("/contracts/{ref:str}/counts", "recordContractCount", Permission.BILLING_WRITE)
    def record_count(
        self, ref: FromPath[str], data: JSONBody[CountIn], run: Run
    ) -> Response[bytes]:
        return run(
            {"ref": ref, "body": data},
            lambda tx: contract_json(
                msp.record_count(tx.conn, tx.book_id, ref, data.date, data.quantity, data.kind)
            ),
        )

    @command(
        "/contracts/{ref:str}/milestones/{name:str}/complete",
        "completeMilestone",
        Permission.BILLING_WRITE,
        status=200,
    )
    def complete_milestone(
        self, ref: FromPath[str], name: FromPath[str], run: Run
    ) -> Response[bytes]:
        return run(
            {"ref": ref, "name": name},
            lambda tx: contract_json(
                msp.complete_milestone(tx.conn, tx.book_id, ref, name, tx.today())
            ),
        )

    @command("/contracts/{ref:str}/close", "closeContract", Permission.BILLING_WRITE, status=200)
    def close_contract(self, ref: FromPath[str], run: Run) -> Response[bytes]:
        return run(
            {"ref": ref}, lambda tx: contract_json(msp.close_contract(tx.conn, tx.book_id, ref))
        )

    @command("/time-entries", "createTimeEntry", Permission.BILLING_WRITE)
    def create_time_entry(self, data: JSONBody[TimeEntryIn], run: Run) -> Response[bytes]:
        spec = msp.TimeEntrySpec(**msgspec.structs.asdict(data))
        return run(
            data, lambda tx: _entry_json(tx, msp.create_time_entry(tx.conn, tx.book_id, spec))
        )

    @command("/time-entries/import", "importTimeEntries", Permission.BILLING_WRITE)
    def import_time_entries(
        self,
        request: Request[Any, Any, Any],
        body: RawBody,  # the request body as sent (a `data` parameter is parsed as JSON)
        run: Run,
        approve: FromQuery[bool] = False,
    ) -> Response[bytes]:
        """The CLI's `time import` over HTTP: a ConnectWise Manage export as a
        text/csv body, imported whole or not at all (msp_import says the layout)."""
        media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media != "text/csv":
            raise ApiError(415, "unsupported_media_type", "this endpoint takes text/csv")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(422, "invalid_request", "the CSV must be UTF-8", field="body") from None

        def work(tx: Tx) -> dict[str, Any]:
            entries = import_time_csv(tx.conn, tx.book_id, text, tx.today() if approve else None)
            return {
                "object": "time_entry_import",
                "imported": len(entries),
                "time_entries": [_entry_json(tx, e) for e in entries],
            }

        return run({"csv": text, "approve": approve}, work)

    @get("/time-entries", operation_id="listTimeEntries", sync_to_thread=True)
    def list_time_entries(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        contract: FromQuery[str | None] = None,
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            entries = msp.list_time_entries(conn, principal.book_id, contract_ref=contract)
            currencies = {c.id: c.currency for c in msp.list_contracts(conn, principal.book_id)}
        return json_response(
            {"data": [time_entry_json(e, currencies[e.contract_id]) for e in entries]}
        )

    @get("/time-entries/{ref:str}", operation_id="getTimeEntry", sync_to_thread=True)
    def get_time_entry(
        self,
        ref: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            entry = msp.get_time_entry(conn, principal.book_id, ref)
            contract = msp.get_contract(conn, principal.book_id, str(entry.contract_id))
        return json_response(time_entry_json(entry, contract.currency))

    @command("/time-entries/{ref:str}", "updateTimeEntry", Permission.BILLING_WRITE, status=200)
    def update_time_entry(
        self, ref: FromPath[str], data: JSONBody[TimeEntryUpdateIn], run: Run
    ) -> Response[bytes]:
        return run(
            {"ref": ref, "body": data},
            lambda tx: _entry_json(
                tx,
                msp.update_time_entry(
                    tx.conn, tx.book_id, ref, data.notes, data.ticket, data.project
                ),
            ),
        )

    @command(
        "/time-entries/{ref:str}/approve", "approveTimeEntry", Permission.BILLING_WRITE, status=200
    )
    def approve_time_entry(self, ref: FromPath[str], run: Run) -> Response[bytes]:
        return run(
            {"ref": ref},
            lambda tx: _entry_json(
                tx, msp.approve_time_entry(tx.conn, tx.book_id, ref, tx.today())
            ),
        )

    @command("/contract-billing-runs", "createContractBillingRun", Permission.BILLING_WRITE)
    def create_run(self, data: JSONBody[RunIn], run: Run) -> Response[bytes]:
        return run(
            data,
            lambda tx: run_json(
                msp.contract_billing_run(tx.conn, tx.book_id, data.as_of or tx.today(), tx.today())
            ),
        )

    @command("/contract-wip-accruals", "createWipAccrual", Permission.BILLING_WRITE)
    def accrue_wip(self, data: JSONBody[RunIn], run: Run) -> Response[bytes]:
        def work(tx: Tx) -> dict[str, Any]:
            today = tx.today()
            as_of = data.as_of or today
            return wip_json(as_of, msp.accrue_wip(tx.conn, tx.book_id, as_of, today))

        return run(data, work)

    @get("/reports/utilization", operation_id="getUtilization", sync_to_thread=True)
    def utilization(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        date_from: Annotated[date, QueryParameter(name="from")],
        date_to: Annotated[date, QueryParameter(name="to")],
        hours_per_day: FromQuery[Decimal] = Decimal(8),
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            rows = msp.utilization_report(
                conn, principal.book_id, date_from, date_to, hours_per_day
            )
        return json_response(
            {
                "from": date_from.isoformat(),
                "to": date_to.isoformat(),
                "people": [
                    {
                        "person": u.person,
                        "billable_hours": hours_text(u.billable_minutes),
                        "non_billable_hours": hours_text(u.non_billable_minutes),
                        "available_hours": hours_text(u.available_minutes),
                        "utilization": None if u.utilization is None else str(u.utilization),
                    }
                    for u in rows
                ],
            }
        )

    @get("/reports/realization", operation_id="getRealization", sync_to_thread=True)
    def realization(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        date_from: Annotated[date, QueryParameter(name="from")],
        date_to: Annotated[date, QueryParameter(name="to")],
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            rows = msp.realization_report(conn, principal.book_id, date_from, date_to)
        return json_response(
            {
                "from": date_from.isoformat(),
                "to": date_to.isoformat(),
                "clients": [
                    {
                        "customer": str(r.customer_id),
                        "currency": r.currency,
                        "standard": money(r.standard, r.currency),
                        "billed": money(r.billed, r.currency),
                        "realization": None if r.realization is None else str(r.realization),
                    }
                    for r in rows
                ],
            }
        )

    @get("/invoices/{ref:str}/time-statement", operation_id="getTimeStatement", sync_to_thread=True)
    def time_statement(
        self,
        ref: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        format: FromQuery[Literal["csv", "html", "pdf"]] = "csv",
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            invoice = invoice_store.get_invoice(conn, principal.book_id, ref)
            rows = msp.time_statement(conn, principal.book_id, invoice)
            expenses = expense_statement(conn, principal.book_id, invoice.id)
        if format == "html":
            return Response(
                content=msp.statement_html(invoice, rows, expenses).encode(),
                media_type="text/html",
            )
        if format == "pdf":  # the same page, printed (adapters/invoice_pdf.py: WeasyPrint)
            pdf = html_to_pdf(msp.statement_html(invoice, rows, expenses))
            return Response(content=pdf, media_type="application/pdf")
        return Response(content=msp.statement_csv(rows, expenses).encode(), media_type="text/csv")
