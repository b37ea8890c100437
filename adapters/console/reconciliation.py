"""The console's reconciliation page (API.md `/console/reconciliation`): a bank
account's unmatched statement lines beside their candidate postings, with
forms to accept a match, undo one, run auto-match and post an entry for a
line (a bank fee). Every write calls the function the API's route calls
(adapters.reconciliation.store) in one unit of work; the candidates come from
the auto-match rules (matching.candidates). Accountants and admins only: the
same permission the API's reconciliation routes require."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import quote

import psycopg
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template

from adapters.console import session as sessions
from adapters.console.pages import (
    FORM,
    SignInNeeded,
    _forbidden,
    _page,
    _reader,
    _session,
    _to_sign_in,
    page_locale,
)
from adapters.http.reconciliation_api import RECONCILE
from adapters.keys import Principal
from adapters.reconciliation import store
from adapters.reconciliation.matching import Candidate, candidates
from adapters.runtime import Runtime
from ledger.accounts import AccountType
from ledger.errors import LedgerError
from ledger.postgres import books as book_store
from ledger.postgres.books import Account
from ledger.postgres.unit_of_work import unit_of_work

HOME = "/console/reconciliation"
# Accounts a bank line's other side usually goes to (fees, interest), listed first.
COUNTER_TYPES = (AccountType.EXPENSE, AccountType.INCOME)


def bank_accounts(conn: psycopg.Connection, book_id: uuid.UUID) -> list[str]:
    """Accounts that have bank statements, by name."""
    rows = conn.execute(
        "select distinct a.name from bank_statements s join accounts a"
        " on a.book_id = s.book_id and a.id = s.account_id where s.book_id = %s order by 1",
        (book_id,),
    ).fetchall()
    return [r[0] for r in rows]


def _line_rows(
    conn: psycopg.Connection, book_id: uuid.UUID, account_id: uuid.UUID
) -> list[dict[str, Any]]:
    rows = conn.execute(
        "select l.id, l.statement_id, l.line_no, l.booking_date, l.amount, l.currency,"
        " l.bank_reference, l.counterparty_name, l.remittance_info from bank_statement_lines l"
        " where l.book_id = %s and l.account_id = %s and not exists"
        " (select 1 from statement_match_lines x where x.book_id = l.book_id"
        "  and x.line_id = l.id and x.released_at is null)"
        " order by l.booking_date, l.statement_id, l.line_no",
        (book_id, account_id),
    ).fetchall()
    keys = ("id", "statement_id", "line_no", "booking_date", "amount", "currency",
            "bank_reference", "counterparty_name", "remittance_info")  # fmt: skip
    return [{**dict(zip(keys, r, strict=True)), "id": str(r[0])} for r in rows]


def reconciliation_context(
    conn: psycopg.Connection, principal: Principal, account_name: str | None
) -> dict[str, Any]:
    book_id = principal.book_id
    accounts = bank_accounts(conn, book_id)
    chosen = account_name or (accounts[0] if accounts else None)
    context: dict[str, Any] = {"accounts": accounts, "account": chosen, "lines": [],
                               "matches": [], "counter_accounts": []}  # fmt: skip
    if chosen is None:
        return context
    account = book_store.get_account(conn, book_id, chosen)
    lines = store.open_lines(conn, book_id, account.id)
    shown = _line_rows(conn, book_id, account.id)
    postings: dict[tuple[str, int], Any] = {}
    found: dict[str, list[Candidate]] = {}
    if lines:
        margin = timedelta(days=store.CANDIDATE_DAYS)
        open_postings = store.open_postings(
            conn,
            book_id,
            account.id,
            min(x.booking_date for x in lines) - margin,
            max(x.booking_date for x in lines) + margin,
        )
        postings = {p.key: p for p in open_postings}
        found = candidates(lines, open_postings, nearby_days=store.CANDIDATE_DAYS)
    counters = sorted(
        (a for a in book_store.list_accounts(conn, book_id)
         if a.id != account.id and a.closed_at is None),
        key=lambda a: (a.type not in COUNTER_TYPES, a.name),
    )  # fmt: skip
    by_id = {row["id"]: row for row in shown}
    for row in shown:
        row["suggested"] = _suggested(row["amount"], counters)
        row["candidates"] = [
            {
                "rule": c.rule,
                "amount": c.amount,
                "postings": [postings[k] for k in c.postings],
                "value": ",".join(f"{e}:{n}" for e, n in c.postings),
                "lines": ",".join(c.lines),
                "others": [by_id[x] for x in c.lines if x != row["id"] and x in by_id],
            }
            for c in found.get(row["id"], [])
        ]
    context.update(
        lines=shown,
        matches=store.list_matches(conn, book_id, account_id=account.id, limit=200),
        counter_accounts=[a.name for a in counters],
    )
    return context


def _suggested(amount: Decimal, counters: list[Account]) -> str | None:
    """The counter-account offered first: a fee account for money out, interest for money in."""
    words = ("Bank-Fee", "Payment-Fee", "Fee") if amount < 0 else ("Interest",)
    for word in words:
        found: str | None = next((a.name for a in counters if word in a.name), None)
        if found is not None:
            return found
    return None


def _back(account: str | None) -> str:
    return f"{HOME}?account={quote(account)}" if account else HOME


def _postings(value: str) -> list[tuple[str, int]]:
    """`entry:line,entry:line` from the form."""
    out = []
    for part in filter(None, value.split(",")):
        entry, _, line = part.partition(":")
        if not line.isdigit():
            raise ValueError(part)
        out.append((entry, int(line)))
    return out


class ReconciliationPages(Controller):
    path = HOME
    include_in_schema = False
    exception_handlers = {SignInNeeded: _to_sign_in}

    def _allowed(
        self, request: Request[Any, Any, Any], runtime: Runtime
    ) -> tuple[Principal, sessions.Session, Template | None]:
        principal, signed = _session(request, runtime)
        if not principal.may(RECONCILE):
            why = f"A {principal.role.value} key may not reconcile (accountants and admins do)."
            return principal, signed, _forbidden(request, signed, why)
        return principal, signed, None

    @get("/", sync_to_thread=True)
    def show(
        self,
        request: Request[Any, Any, Any],
        runtime: NamedDependency[Runtime],
        account: Annotated[str | None, QueryParameter(name="account")] = None,
    ) -> Template:
        principal, signed, refused = self._allowed(request, runtime)
        if refused is not None:
            return refused
        with _reader(runtime, principal) as conn:
            context = reconciliation_context(conn, principal, account)
            context["locale"] = page_locale(conn, principal)
        return _page(request, "reconciliation.html", context, signed)

    def _write(
        self,
        request: Request[Any, Any, Any],
        runtime: Runtime,
        data: dict[str, str],
        work: Any,
    ) -> Response[Any]:
        """Check the form's token and the role, run `work(conn, principal)` in one
        unit of work, and go back to the account's page (or show the refusal)."""
        principal, signed, refused = self._allowed(request, runtime)
        if not sessions.same_token(data.get("csrf"), signed.csrf):
            return _forbidden(request, signed, "The form was not sent from this session.")
        if refused is not None:
            return refused
        try:
            with unit_of_work(runtime.connection) as uow:
                work(uow.conn, principal)
                uow.commit()
        except LedgerError as exc:  # ReconciliationError, NotFound, InvalidEntry
            return _page(
                request, "error.html", {"title": "Refused", "message": exc.message},
                signed, exc.status,
            )  # fmt: skip
        except ValueError:
            return _page(
                request, "error.html",
                {"title": "Refused", "message": "The form's postings are not entry:line pairs."},
                signed, 400,
            )  # fmt: skip
        return Redirect(_back(data.get("account")), status_code=303)

    @post("/match", sync_to_thread=True, status_code=303)
    def accept(
        self,
        request: Request[Any, Any, Any],
        runtime: NamedDependency[Runtime],
        data: Annotated[dict[str, str], FORM],
    ) -> Response[Any]:
        def work(conn: psycopg.Connection, principal: Principal) -> None:
            store.create_match(
                conn,
                principal.book_id,
                line_ids=[x for x in (data.get("lines") or data.get("line", "")).split(",") if x],
                postings=_postings(data.get("postings", "")),
                note=data.get("note", "")[:500],
                created_by=principal.key_id,
            )

        return self._write(request, runtime, data, work)

    @post("/matches/{match_id:str}/undo", sync_to_thread=True, status_code=303)
    def undo(
        self,
        request: Request[Any, Any, Any],
        runtime: NamedDependency[Runtime],
        match_id: FromPath[str],
        data: Annotated[dict[str, str], FORM],
    ) -> Response[Any]:
        def work(conn: psycopg.Connection, principal: Principal) -> None:
            store.undo_match(conn, principal.book_id, match_id, principal.key_id)

        return self._write(request, runtime, data, work)

    @post("/auto-match", sync_to_thread=True, status_code=303)
    def auto(
        self,
        request: Request[Any, Any, Any],
        runtime: NamedDependency[Runtime],
        data: Annotated[dict[str, str], FORM],
    ) -> Response[Any]:
        def work(conn: psycopg.Connection, principal: Principal) -> None:
            store.run_auto_match(
                conn, principal.book_id, account_ref=data.get("account") or None,
                created_by=principal.key_id,
            )  # fmt: skip

        return self._write(request, runtime, data, work)

    @post("/lines/{statement_id:str}/{line_id:str}/entry", sync_to_thread=True, status_code=303)
    def entry(
        self,
        request: Request[Any, Any, Any],
        runtime: NamedDependency[Runtime],
        statement_id: FromPath[str],
        line_id: FromPath[str],
        data: Annotated[dict[str, str], FORM],
    ) -> Response[Any]:
        def work(conn: psycopg.Connection, principal: Principal) -> None:
            store.entry_from_line(
                conn,
                principal.book_id,
                statement_id,
                line_id,
                counter_account=data.get("counter_account", ""),
                memo=(data.get("memo") or "").strip()[:1000] or None,
                created_by=principal.key_id,
            )

        return self._write(request, runtime, data, work)
