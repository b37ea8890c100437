"""The console's pages (API.md: `/console`, `customers`, `invoices`,
`reports/trial-balance`, `audit`). Every figure comes from the functions the
API's routes call; the templates escape everything they print."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import jinja2
import psycopg
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath, QueryParameter
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.router import Router
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from adapters import locale_format
from adapters.console import session as sessions
from adapters.console.charts import bar_chart
from adapters.http.cursors import decode_sort_key, encode_sort_key
from adapters.http.customers_api import customer_with_balances, statement_json
from adapters.http.forecasts_api import cash_document
from adapters.http.invoices_api import invoice_document, render_document
from adapters.http.ledger_api import trial_balance_json
from adapters.http.metrics_api import mrr_document
from adapters.http.problems import ApiError
from adapters.http.routes import Reader, book_today
from adapters.invoice_pdf import html_to_pdf
from adapters.keys import Permission, Principal, authenticate, principal_by_id
from adapters.runtime import Runtime
from billing.postgres import customers as customer_store
from billing.postgres import invoices as invoice_store
from billing.postgres import payments as payment_store
from billing.postgres.collections import aging_trend
from ledger.errors import LedgerError
from ledger.periods import PeriodStatus, parse_period
from ledger.postgres import books as book_store
from ledger.postgres import posting as entry_store
from ledger.postgres import queries
from ledger.postgres.sealer import seal_head
from ledger.postgres.unit_of_work import unit_of_work

HERE = Path(__file__).parent
STATIC = "/console/static"
PAGE = 50
FORM = Body(media_type=RequestEncodingType.URL_ENCODED)
INVOICE_STATUSES = ("draft", "open", "paid", "void", "uncollectible")


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    # autoescape on for every template: a customer named <script> is text.
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    # Money and dates in the book's locale: `{{ amount | money(currency, locale) }}`.
    environment.filters["money"] = locale_format.money
    environment.filters["day"] = locale_format.day
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(environment))


def static_files() -> Router:
    return create_static_files_router(
        path=STATIC, directories=[HERE / "static"], include_in_schema=False
    )


class SignInNeeded(Exception):
    """No valid session: the page sends the browser to the sign-in form."""


def _to_sign_in(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    del request, exc
    response: Response[Any] = Redirect("/console/sign-in", status_code=303)
    response.delete_cookie(sessions.COOKIE, path="/console")
    return response


def _page(
    request: Request[Any, Any, Any],
    name: str,
    context: dict[str, Any],
    signed: sessions.Session | None,
    status: int = 200,
) -> Template:
    return Template(
        template_name=name,
        context={
            "locale": locale_format.DEFAULT_LOCALE,
            **context,
            "csrf": signed.csrf if signed else "",
            "signed_in": signed is not None,
            "path": request.url.path,
            "static": STATIC,
        },
        status_code=status,
    )


def _session(
    request: Request[Any, Any, Any], runtime: Runtime
) -> tuple[Principal, sessions.Session]:
    signed = sessions.verify(request.cookies.get(sessions.COOKIE), time.time())
    if signed is None:
        raise SignInNeeded
    with runtime.connection() as conn:
        principal = principal_by_id(conn, signed.book_id, signed.key_id)
        conn.rollback()
    if principal is None:  # the key was revoked since
        raise SignInNeeded
    return principal, signed


@contextmanager
def _reader(runtime: Runtime, principal: Principal) -> Iterator[psycopg.Connection]:
    with Reader(runtime, principal) as conn:
        yield conn


def page_locale(conn: psycopg.Connection, principal: Principal) -> str:
    return locale_format.book_locale(conn, principal.book_id)


def _forbidden(
    request: Request[Any, Any, Any], signed: sessions.Session | None, why: str
) -> Template:
    return _page(request, "error.html", {"title": "Refused", "message": why}, signed, 403)


def _money_rows(document: dict[str, Any], currency: str) -> list[dict[str, Any]]:
    return [m for m in document["months"] if m["currency"] == currency]


def dashboard_context(
    conn: psycopg.Connection, runtime: Runtime, principal: Principal
) -> dict[str, Any]:
    """The dashboard's figures: the API's MRR, cash forecast and aging documents."""
    today = book_today(conn, runtime, principal)
    book = book_store.get_book(conn, principal.book_id)
    mrr = mrr_document(conn, principal.book_id, None, None, today)
    cash = cash_document(conn, principal.book_id, today, 13)
    first = date(today.year - (1 if today.month <= 5 else 0), (today.month - 6) % 12 + 1, 1)
    aging = aging_trend(conn, principal.book_id, first, today)
    currencies = sorted({m["currency"] for m in mrr["months"]} | {book.base_currency})
    currency = book.base_currency if book.base_currency in currencies else currencies[0]
    months = _money_rows(mrr, currency)
    latest = months[-1] if months else None
    mrr_chart = bar_chart(
        [
            (
                m["month"],
                [
                    (
                        "gain",
                        Decimal(m["new"]) + Decimal(m["expansion"]) + Decimal(m["reactivation"]),
                        m["new"],
                    ),
                    ("loss", Decimal(m["contraction"]) + Decimal(m["churn"]), m["churn"]),
                    ("end", Decimal(m["end"]), m["end"]),
                ],
            )
            for m in months
        ]
    )
    last_aging = [p for p in aging if p["currency"] == currency]
    buckets = last_aging[-1]["buckets"] if last_aging else {}
    aging_chart = bar_chart(
        [(b, [("aging", v, str(v))]) for b, v in buckets.items() if b != "total"], height=180
    )
    weeks = [w for w in cash["weeks"] if w["currency"] == currency]
    cash_chart = bar_chart(
        [(w["start"][5:], [("cash", Decimal(w["net"]), w["net"])]) for w in weeks], height=180
    )
    return {
        "today": today,
        "currency": currency,
        "months": months,
        "latest": latest,
        "mrr_chart": mrr_chart,
        "aging": buckets,
        "aging_as_of": last_aging[-1]["as_of"] if last_aging else today,
        "aging_chart": aging_chart,
        "weeks": weeks,
        "cash_chart": cash_chart,
        "ltv": [x for x in mrr["ltv"] if x["currency"] == currency],
        "totals": mrr.get("totals", []),
        "locale": locale_format.book_locale(conn, principal.book_id),
    }


def customer_context(
    conn: psycopg.Connection,
    runtime: Runtime,
    principal: Principal,
    ref: str,
    date_from: date | None,
    date_to: date | None,
) -> dict[str, Any]:
    """A customer's page: the API's customer (with its ledger balances), their
    invoices and payments, and the statement the API's route builds (default:
    the book's year to date)."""
    book_id = principal.book_id
    customer = customer_store.get_customer(conn, book_id, ref)
    end = date_to or book_today(conn, runtime, principal)
    start = date_from or end.replace(month=1, day=1)
    if end < start:
        raise ApiError(400, "invalid_range", "`to` must not be before `from`")
    return {
        "customer": customer,
        "balances": customer_with_balances(conn, book_id, customer),
        "invoices": invoice_store.list_invoices(
            conn, book_id, customer_id=customer.id, status=None, after=None, limit=PAGE
        ),
        "payments": payment_store.list_payments(conn, book_id, customer_id=customer.id, limit=PAGE),
        "statement": statement_json(
            customer,
            customer_store.statement(conn, book_id, customer.id, customer.currency, start, end),
        ),
        "locale": locale_format.book_locale(conn, book_id),
    }


class ConsoleController(Controller):
    path = "/console"
    include_in_schema = False
    exception_handlers = {SignInNeeded: _to_sign_in}

    @get("/sign-in", sync_to_thread=False)
    def sign_in_form(self, request: Request[Any, Any, Any]) -> Template:
        token = sessions.new_token()
        page = _page(request, "sign_in.html", {"form_token": token, "error": None}, None)
        page.set_cookie(
            sessions.CSRF_COOKIE, token, path="/console", httponly=True, samesite="strict"
        )
        return page

    @post("/sign-in", sync_to_thread=True, status_code=303)
    def sign_in(
        self,
        request: Request[Any, Any, Any],
        runtime: NamedDependency[Runtime],
        data: Annotated[dict[str, str], FORM],
    ) -> Response[Any]:
        expected = request.cookies.get(sessions.CSRF_COOKIE) or ""
        if not expected or not sessions.same_token(data.get("csrf"), expected):
            return _forbidden(request, None, "The form expired or was not sent from this console.")
        key = data.get("api_key", "")
        with unit_of_work(runtime.connection) as uow:
            principal = authenticate(uow.conn, key) if key else None
            uow.commit()
        if principal is None:
            page = _page(
                request,
                "sign_in.html",
                {"form_token": expected, "error": "That API key is not valid."},
                None,
                401,
            )
            return page
        signed = sessions.Session(
            principal.book_id,
            principal.key_id,
            sessions.new_token(),
            int(time.time()) + sessions.SESSION_SECONDS,
        )
        response: Response[Any] = Redirect("/console", status_code=303)
        response.set_cookie(
            sessions.COOKIE,
            sessions.sign(signed),
            path="/console",
            max_age=sessions.SESSION_SECONDS,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        response.delete_cookie(sessions.CSRF_COOKIE, path="/console")
        return response

    @post("/sign-out", sync_to_thread=True, status_code=303)
    def sign_out(
        self,
        request: Request[Any, Any, Any],
        runtime: NamedDependency[Runtime],
        data: Annotated[dict[str, str], FORM],
    ) -> Response[Any]:
        _, signed = _session(request, runtime)
        if not sessions.same_token(data.get("csrf"), signed.csrf):
            return _forbidden(request, signed, "The form was not sent from this session.")
        return _to_sign_in(request, SignInNeeded())

    @get("/", sync_to_thread=True)
    def dashboard(
        self, request: Request[Any, Any, Any], runtime: NamedDependency[Runtime]
    ) -> Template:
        principal, signed = _session(request, runtime)
        with _reader(runtime, principal) as conn:
            context = dashboard_context(conn, runtime, principal)
        return _page(request, "dashboard.html", context, signed)

    @get("/customers", sync_to_thread=True)
    def customers(
        self,
        request: Request[Any, Any, Any],
        runtime: NamedDependency[Runtime],
        q: Annotated[str | None, QueryParameter(name="q")] = None,
        after: Annotated[uuid.UUID | None, QueryParameter(name="after")] = None,
    ) -> Template:
        principal, signed = _session(request, runtime)
        with _reader(runtime, principal) as conn:
            found = customer_store.list_customers(
                conn, principal.book_id, after=after, limit=PAGE + 1, search=q or None
            )
        more = len(found) > PAGE
        found = found[:PAGE]
        return _page(
            request,
            "customers.html",
            {"customers": found, "q": q or "", "next": found[-1].id if more else None},
            signed,
        )

    @get("/customers/{ref:str}", sync_to_thread=True)
    def customer(
        self,
        request: Request[Any, Any, Any],
        runtime: NamedDependency[Runtime],
        ref: FromPath[str],
        date_from: Annotated[date | None, QueryParameter(name="from")] = None,
        date_to: Annotated[date | None, QueryParameter(name="to")] = None,
    ) -> Template:
        principal, signed = _session(request, runtime)
        with _reader(runtime, principal) as conn:
            context = customer_context(conn, runtime, principal, ref, date_from, date_to)
        return _page(request, "customer.html", context, signed)

    @get("/invoices", sync_to_thread=True)
    def invoices(
        self,
        request: Request[Any, Any, Any],
        runtime: NamedDependency[Runtime],
        status: Annotated[str | None, QueryParameter(name="status")] = None,
        customer: Annotated[uuid.UUID | None, QueryParameter(name="customer")] = None,
        cursor: Annotated[str | None, QueryParameter(name="cursor")] = None,
    ) -> Template:
        principal, signed = _session(request, runtime)
        after = decode_sort_key(cursor)
        if status and status not in INVOICE_STATUSES:
            raise ApiError(
                400, "invalid_status", f"status must be one of {', '.join(INVOICE_STATUSES)}"
            )
        with _reader(runtime, principal) as conn:
            found = invoice_store.list_invoices(
                conn,
                principal.book_id,
                customer_id=customer,
                status=status or None,
                after=after,
                limit=PAGE + 1,
            )
            names = dict(
                conn.execute(
                    "select id, name from customers where book_id = %s and id = any(%s)",
                    (principal.book_id, list({i.customer_id for i in found})),
                ).fetchall()
            )
            locale = page_locale(conn, principal)
        more = len(found) > PAGE
        found = found[:PAGE]
        last = invoice_store.invoice_sort_key(found[-1], "number") if more else None
        query = {"status": status or "", "customer": str(customer) if customer else ""}
        next_page = (
            "/console/invoices?"
            + urlencode({**{k: v for k, v in query.items() if v}, "cursor": encode_sort_key(last)})
            if last is not None
            else None
        )
        return _page(
            request,
            "invoices.html",
            {
                "next": next_page,
                "invoices": found,
                "names": names,
                "status": status or "",
                "statuses": INVOICE_STATUSES,
                "locale": locale,
            },
            signed,
        )

    @get("/invoices/{ref:str}/document", sync_to_thread=True)
    def invoice_document(
        self, request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], ref: FromPath[str]
    ) -> Response[str]:
        principal, _ = _session(request, runtime)
        with _reader(runtime, principal) as conn:
            html = render_document(conn, principal.book_id, ref)
        return Response(content=html, media_type="text/html")

    @get("/invoices/{ref:str}/document.pdf", sync_to_thread=True)
    def invoice_pdf(
        self, request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], ref: FromPath[str]
    ) -> Response[bytes]:
        """The API's PDF (`?format=pdf`): the same HTML, rendered by WeasyPrint."""
        principal, _ = _session(request, runtime)
        with _reader(runtime, principal) as conn:
            invoice, html = invoice_document(conn, principal.book_id, ref)
        name = invoice.number or f"draft-{invoice.id}"
        return Response(
            content=html_to_pdf(html),
            media_type="application/pdf",
            headers={"content-disposition": f'inline; filename="{name}.pdf"'},
        )

    @get("/reports/trial-balance", sync_to_thread=True)
    def trial_balance(
        self,
        request: Request[Any, Any, Any],
        runtime: NamedDependency[Runtime],
        as_of: Annotated[date | None, QueryParameter(name="as_of")] = None,
    ) -> Template:
        principal, signed = _session(request, runtime)
        with _reader(runtime, principal) as conn:
            day = as_of or book_today(conn, runtime, principal)
            document = trial_balance_json(
                day, queries.trial_balance_as_of(conn, principal.book_id, day)
            )
            document["locale"] = page_locale(conn, principal)
        return _page(request, "trial_balance.html", document, signed)

    @get("/reports/trial-balance/entries", sync_to_thread=True)
    def account_entries(
        self,
        request: Request[Any, Any, Any],
        runtime: NamedDependency[Runtime],
        account: Annotated[str, QueryParameter(name="account")],
        as_of: Annotated[date | None, QueryParameter(name="as_of")] = None,
    ) -> Template:
        principal, signed = _session(request, runtime)
        with _reader(runtime, principal) as conn:
            day = as_of or book_today(conn, runtime, principal)
            found = book_store.get_account(conn, principal.book_id, account)
            entries = entry_store.list_entries(
                conn,
                principal.book_id,
                entry_store.EntryFilter(None, day, found.id, None, None),
                limit=200,
            )
            locale = page_locale(conn, principal)
        rows = [
            {"entry": e, "posting": p}
            for e in entries
            for p in e.postings
            if p.account == found.name
        ]
        return _page(
            request,
            "entries.html",
            {"account": found.name, "as_of": day, "rows": rows, "locale": locale},
            signed,
        )

    @get("/audit", sync_to_thread=True)
    def audit(self, request: Request[Any, Any, Any], runtime: NamedDependency[Runtime]) -> Template:
        principal, signed = _session(request, runtime)
        with _reader(runtime, principal) as conn:
            periods = book_store.period_statuses(conn, principal.book_id)
            head = seal_head(conn, principal.book_id)
        return _page(
            request,
            "audit.html",
            {
                "periods": [(p, s.value) for p, s in sorted(periods.items())],
                "seal_head": head,
                "may_close": principal.may(Permission.CLOSE_PERIODS),
            },
            signed,
        )

    @post("/audit/periods/{period:str}/{action:str}", sync_to_thread=True, status_code=303)
    def set_period(
        self,
        request: Request[Any, Any, Any],
        runtime: NamedDependency[Runtime],
        period: FromPath[str],
        action: FromPath[str],
        data: Annotated[dict[str, str], FORM],
    ) -> Response[Any]:
        principal, signed = _session(request, runtime)
        if not sessions.same_token(data.get("csrf"), signed.csrf):
            return _forbidden(request, signed, "The form was not sent from this session.")
        if not principal.may(Permission.CLOSE_PERIODS):
            return _forbidden(
                request, signed, f"A {principal.role.value} key may not close or reopen periods."
            )
        statuses = {"close": PeriodStatus.CLOSED, "reopen": PeriodStatus.OPEN}
        if action not in statuses:
            raise ApiError(404, "not_found", f"no action {action!r}: close or reopen")
        parse_period(period)
        try:
            with unit_of_work(runtime.connection) as uow:
                book_store.set_period_status(uow.conn, principal.book_id, period, statuses[action])
                uow.commit()
        except LedgerError as exc:
            return _page(
                request,
                "error.html",
                {"title": "Refused", "message": exc.message},
                signed,
                exc.status,
            )
        return Redirect("/console/audit", status_code=303)


def console_handlers() -> list[Any]:
    from adapters.console.reconciliation import ReconciliationPages

    return [ConsoleController, ReconciliationPages, static_files()]
