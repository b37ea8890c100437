"""Ledger endpoints: accounts, journal entries, balances, trial balance, periods, clock."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Any

import msgspec
import psycopg
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from adapters.gateways.collection import on_clock_moved
from adapters.http.commands import JSON, AsyncWork, request_key, require, run_command_async
from adapters.http.cursors import decode_keyset, encode_keyset
from adapters.http.hot_path import needs_no_reads, post_entry_once
from adapters.http.problems import ApiError
from adapters.http.routes import Command, Reader, Run, Tx, book_today, command, json_response
from adapters.keys import Permission, Principal
from adapters.runtime import Runtime
from billing.postgres.events import record_event
from billing.postgres.manual_entries import check_manual_entries, check_manual_entries_async
from ledger.accounts import AccountType
from ledger.balances import totals_by_currency
from ledger.entries import JournalEntry, Posting, build_entry
from ledger.errors import (
    AlreadyReversed,
    IdempotencyConflict,
    InvalidEntry,
    InvalidMoney,
    LedgerError,
    NotFound,
)
from ledger.money import Money, exact_text, parse_amount
from ledger.periods import PeriodStatus, parse_period
from ledger.postgres import books as book_store
from ledger.postgres import posting as entry_store
from ledger.postgres import queries

MAX_BATCH = 1000

# Set in the request's scope state by adapters.http.direct_post, which tried the
# one-round-trip statement before the route: it declined (go the general way),
# or it raised (raise it here, for the app's exception handlers).
HOT_PATH_DECLINED = "hot_path_declined"
HOT_PATH_ERROR = "hot_path_error"


class PostingIn(msgspec.Struct, forbid_unknown_fields=True):
    account: str
    amount: str
    currency: str
    customer: str | None = None
    document: str | None = None
    dimensions: dict[str, str] = {}


class JournalEntryIn(msgspec.Struct, forbid_unknown_fields=True):
    postings: list[PostingIn]
    effective_date: date | None = None
    memo: str = ""
    metadata: dict[str, Any] = {}
    idempotency_key: str | None = None


class JournalEntryBatchIn(msgspec.Struct, forbid_unknown_fields=True):
    entries: list[JournalEntryIn]


class ReverseIn(msgspec.Struct, forbid_unknown_fields=True):
    effective_date: date | None = None
    memo: str | None = None


class AccountIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    type: str | None = None
    currencies: list[str] = []
    code: str | None = None
    min_balance: str | None = None
    metadata: dict[str, Any] = {}


class ClockIn(msgspec.Struct, forbid_unknown_fields=True):
    now: date


def account_json(account: book_store.Account) -> dict[str, Any]:
    return {
        "id": str(account.id),
        "name": account.name,
        "type": account.type.value,
        "currencies": list(account.currencies),
        "code": account.code,
        "min_balance": None if account.min_balance is None else str(account.min_balance),
        "metadata": account.metadata,
        "status": "closed" if account.closed_at else "open",
        "opened_at": account.opened_at.isoformat(),
        "closed_at": account.closed_at.isoformat() if account.closed_at else None,
    }


def entry_json(entry: entry_store.PostedEntry) -> dict[str, Any]:
    return {
        "id": str(entry.id),
        "effective_date": entry.effective_date.isoformat(),
        "recorded_at": entry.recorded_at.isoformat(),
        "memo": entry.memo,
        "metadata": entry.metadata,
        "idempotency_key": entry.idempotency_key,
        "reverses": str(entry.reverses) if entry.reverses else None,
        "sequence": entry.sequence,
        "postings": [
            {
                "account": p.account,
                "amount": str(p.money.quantized().amount),
                "currency": p.currency,
                "customer": p.customer,
                "document": p.document,
                "dimensions": dict(p.dimensions),
            }
            for p in entry.postings
        ],
    }


def to_entry(body: JournalEntryIn, today: date, header_key: str | None) -> JournalEntry:
    postings = []
    for index, p in enumerate(body.postings):
        money = exact_text(p.amount, p.currency)  # the usual "12.50", else:
        if money is None:
            try:
                money = Money.exact(parse_amount(p.amount), p.currency)
            except InvalidMoney as exc:
                exc.fields["posting"] = index
                raise
        postings.append(Posting(p.account, money, p.customer, p.document, p.dimensions))
    return build_entry(
        body.effective_date or today,
        body.memo,
        postings,
        metadata=body.metadata,
        idempotency_key=body.idempotency_key or header_key,
    )


async def book_today_async(
    conn: psycopg.AsyncConnection, runtime: Runtime, book_id: uuid.UUID
) -> date:
    """book_today on an asyncio connection: the simulated date, else the wall clock."""
    cur = await conn.execute("select clock_date from books where id = %s", (book_id,))
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"book {book_id} does not exist")
    clock_date: date | None = row[0]
    return clock_date if clock_date is not None else runtime.today()


def entry_work(
    runtime: Runtime, principal: Principal, data: JournalEntryIn, header_key: str | None
) -> AsyncWork:
    """POST /v1/journal-entries' unit of work, on an asyncio connection."""
    book_id = principal.book_id

    async def work(conn: psycopg.AsyncConnection) -> tuple[int, Any]:
        if data.effective_date is None:
            today = await book_today_async(conn, runtime, book_id)
        else:
            today = date.min
        entry = to_entry(data, today, header_key)
        await check_manual_entries_async(conn, book_id, [entry], name_entry=False)
        posted = await entry_store.post_entry_async(conn, book_id, entry)
        return (201 if posted.created else 200), entry_json(posted)

    return work


class LedgerController(Controller):
    path = "/v1"

    @command("/accounts", "createAccount", Permission.MANAGE_ACCOUNTS)
    def create_account(self, data: JSONBody[AccountIn], run: Run) -> Response[bytes]:
        spec = book_store.AccountSpec(
            name=data.name,
            type=_account_type(data.type),
            currencies=data.currencies,
            code=data.code,
            min_balance=None if data.min_balance is None else parse_amount(data.min_balance),
            metadata=data.metadata,
        )
        return run(
            data, lambda tx: account_json(book_store.create_account(tx.conn, tx.book_id, spec))
        )

    @get("/accounts", operation_id="listAccounts", sync_to_thread=True)
    def list_accounts(
        self, principal: NamedDependency[Principal], runtime: NamedDependency[Runtime]
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            accounts = book_store.list_accounts(conn, principal.book_id)
        return json_response({"data": [account_json(a) for a in accounts]})

    @get("/accounts/{account_id:str}", operation_id="getAccount", sync_to_thread=True)
    def get_account(
        self,
        account_id: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            account = book_store.get_account(conn, principal.book_id, account_id)
        return json_response(account_json(account))

    @command(
        "/accounts/{account_id:str}/close", "closeAccount", Permission.MANAGE_ACCOUNTS, status=200
    )
    def close_account(self, account_id: FromPath[str], run: Run) -> Response[bytes]:
        return run(
            {"close": account_id},
            lambda tx: account_json(book_store.close_account(tx.conn, tx.book_id, account_id)),
        )

    @post("/journal-entries", operation_id="postJournalEntry")
    async def post_journal_entry(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[JournalEntryIn],
        principal: NamedDependency[Principal],
    ) -> Response[bytes]:
        # The hot path: on the event loop with an asyncio pool (no thread hop),
        # and no dependency beyond the principal (the runtime is in app state).
        require(principal, Permission.POST_JOURNAL)
        state = request.app.state
        key = request_key(request)
        tried = request.scope["state"]
        failed = tried.pop(HOT_PATH_ERROR, None)
        if failed is not None:
            raise failed
        if data.effective_date is not None and not tried.pop(HOT_PATH_DECLINED, False):
            # One round trip (adapters/http/hot_path.py) when nothing needs reading
            # first; a request it cannot answer alone goes the general way below,
            # which says what is wrong (and a used key is a 409 before any 422).
            try:
                entry: JournalEntry | None = to_entry(data, date.min, key)
            except LedgerError:
                entry = None
            if entry is not None and needs_no_reads(entry):
                answered = await post_entry_once(
                    state.hot_pool, request.url.path, principal, data, entry, key, tried
                )
                if answered is not None:
                    return Response(content=answered, status_code=201, media_type=JSON)
        work = entry_work(state.runtime, principal, data, key)
        return await run_command_async(state.async_pool, request, principal, data, work)

    @command("/journal-entries/batch", "postJournalEntryBatch", Permission.POST_JOURNAL)
    def post_journal_entry_batch(
        self, data: JSONBody[JournalEntryBatchIn], run: Run
    ) -> Response[bytes]:
        if not 0 < len(data.entries) <= MAX_BATCH:
            raise InvalidEntry(f"a batch holds 1 to {MAX_BATCH} entries")

        def work(tx: Tx) -> dict[str, Any]:
            today = tx.today()
            entries = []
            for index, body in enumerate(data.entries):
                try:
                    entries.append(to_entry(body, today, None))
                except LedgerError as exc:  # say which entry of the batch is wrong
                    exc.fields["entry"] = index
                    raise
            check_manual_entries(tx.conn, tx.book_id, entries)
            posted = entry_store.post_entries(tx.conn, tx.book_id, entries)
            return {"data": [entry_json(e) for e in posted]}

        return run(data, work)

    @get("/journal-entries", operation_id="listJournalEntries", sync_to_thread=True)
    def list_journal_entries(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
        date_from: Annotated[date | None, QueryParameter(name="from")] = None,
        date_to: Annotated[date | None, QueryParameter(name="to")] = None,
        account: FromQuery[str | None] = None,
        customer: FromQuery[str | None] = None,
        document: FromQuery[str | None] = None,
    ) -> Response[bytes]:
        after = decode_keyset(cursor)
        with Reader(runtime, principal) as conn:
            account_id = (
                book_store.get_account(conn, principal.book_id, account).id if account else None
            )
            filters = entry_store.EntryFilter(date_from, date_to, account_id, customer, document)
            entries = entry_store.list_entries(
                conn, principal.book_id, filters, after=after, limit=limit
            )
        next_cursor = (
            encode_keyset(entries[-1].recorded_at, entries[-1].id)
            if len(entries) == limit
            else None
        )
        return json_response({"data": [entry_json(e) for e in entries], "next_cursor": next_cursor})

    @get("/journal-entries/{entry_id:str}", operation_id="getJournalEntry", sync_to_thread=True)
    def get_journal_entry(
        self,
        entry_id: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            entry = entry_store.get_entry(conn, principal.book_id, entry_id)
        return json_response(entry_json(entry))

    @command(
        "/journal-entries/{entry_id:str}/reverse", "reverseJournalEntry", Permission.POST_JOURNAL
    )
    def reverse_journal_entry(
        self, entry_id: FromPath[str], run: Run, data: JSONBody[ReverseIn | None] = None
    ) -> Response[bytes]:
        body = data or ReverseIn()

        def work(tx: Tx) -> dict[str, Any]:
            # The reversal's own key is `reversal:<id>`: a second reversal finds it taken.
            # A retry of the same request replays through its Idempotency-Key instead.
            try:
                posted = entry_store.reverse_entry(
                    tx.conn,
                    tx.book_id,
                    entry_id,
                    effective_date=body.effective_date,
                    memo=body.memo,
                )
            except IdempotencyConflict as exc:
                raise _already_reversed(entry_id, exc.fields.get("entry_id")) from exc
            if not posted.created:
                raise _already_reversed(entry_id, str(posted.id))
            return entry_json(posted)

        return run({"reverse": entry_id, "body": body}, work)

    @get("/balances", operation_id="getBalances", sync_to_thread=True)
    def balances(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        account: FromQuery[str],
        as_of: FromQuery[date | None] = None,
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            found = book_store.get_account(conn, principal.book_id, account)
            day = as_of or book_today(conn, runtime, principal)
            totals = queries.account_balance(conn, principal.book_id, found.id, day)
        return json_response(
            {
                "account": found.name,
                "account_id": str(found.id),
                "as_of": day.isoformat(),
                "balances": [
                    {"currency": c, "balance": str(Money(a, c).round_to_minor().amount)}
                    for c, a in totals.items()
                ],
            }
        )

    @get("/reports/trial-balance", operation_id="getTrialBalance", sync_to_thread=True)
    def trial_balance(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        as_of: FromQuery[date | None] = None,
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            day = as_of or book_today(conn, runtime, principal)
            lines = queries.trial_balance_as_of(conn, principal.book_id, day)
        return json_response(trial_balance_json(day, lines))

    @command("/periods/{period:str}/close", "closePeriod", Permission.CLOSE_PERIODS, status=200)
    def close_period(self, period: FromPath[str], run: Run) -> Response[bytes]:
        return _set_period(run, period, PeriodStatus.CLOSED)

    @command("/periods/{period:str}/reopen", "reopenPeriod", Permission.CLOSE_PERIODS, status=200)
    def reopen_period(self, period: FromPath[str], run: Run) -> Response[bytes]:
        return _set_period(run, period, PeriodStatus.OPEN)

    @get("/periods", operation_id="listPeriods", sync_to_thread=True)
    def list_periods(
        self, principal: NamedDependency[Principal], runtime: NamedDependency[Runtime]
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            statuses = book_store.period_statuses(conn, principal.book_id)
        return json_response(
            {"data": [{"period": p, "status": s.value} for p, s in statuses.items()]}
        )

    @get("/clock", operation_id="getClock", sync_to_thread=True)
    def get_clock(
        self, principal: NamedDependency[Principal], runtime: NamedDependency[Runtime]
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            book = book_store.get_book(conn, principal.book_id)
        return json_response(clock_json(book, runtime.today()))

    @command("/clock", "advanceClock", Permission.MOVE_CLOCK, status=200)
    def advance_clock(self, data: JSONBody[ClockIn], run: Run) -> Response[bytes]:
        return run(
            data,
            lambda tx: clock_json(moved_clock(tx.conn, tx.book_id, data.now), tx.runtime.today()),
        )


def _set_period(run: Command, period: str, status: PeriodStatus) -> Response[bytes]:
    parse_period(period)

    def work(tx: Tx) -> dict[str, Any]:
        book_store.set_period_status(tx.conn, tx.book_id, period, status)
        answer = {"period": period, "status": status.value}
        if status is PeriodStatus.CLOSED:
            record_event(tx.conn, tx.book_id, "period.closed", {"id": period, **answer})
        return answer

    return run({"period": period, "to": status}, work)


def moved_clock(conn: psycopg.Connection, book_id: uuid.UUID, now: date) -> book_store.Book:
    """Move the clock, then let what runs on it happen: the fake gateway's payouts and disputes."""
    book = book_store.set_clock(conn, book_id, now)
    on_clock_moved(conn, book_id, now)
    return book


def clock_json(book: book_store.Book, wall_today: date) -> dict[str, Any]:
    return {"mode": book.clock_mode, "now": book.today(wall_today).isoformat()}


def trial_balance_json(day: date, lines: list[Any]) -> dict[str, Any]:
    totals = totals_by_currency(lines)
    return {
        "as_of": day.isoformat(),
        "lines": [
            {
                "account": line.account,
                "currency": line.currency,
                "debit": str(line.debit),
                "credit": str(line.credit),
                "balance": str(line.balance),
            }
            for line in lines
        ],
        "totals": {
            currency: {"debit": str(debit), "credit": str(credit)}
            for currency, (debit, credit) in sorted(totals.items())
        },
    }


def _already_reversed(entry_id: str, reversal_id: str | None) -> AlreadyReversed:
    return AlreadyReversed(
        f"journal entry {entry_id} has already been reversed"
        + (f" by {reversal_id}" if reversal_id else ""),
        entry_id=entry_id,
        reversal_id=reversal_id,
    )


def _account_type(value: str | None) -> AccountType | None:
    if value is None:
        return None
    try:
        return AccountType(value)
    except ValueError:
        raise ApiError(
            422,
            "invalid_account_type",
            f"type must be one of {', '.join(t.value for t in AccountType)}",
        ) from None
