"""Prepaid wallets in PostgreSQL: accounts, top-ups, reservations, breakage
(rules in billing.wallets).

Concurrency: every write to a wallet locks its `wallets` row first (`for
update`), then reads the balance and the open holds, so concurrent holds on
one wallet are decided one after another and never over- or under-grant;
other wallets' rows are not touched, so they proceed in parallel. A hold and a
capture (the real-time path) do all of it in one round trip each: the
functions `ab_wallet_hold` and `ab_wallet_capture` (revision 0045); on an
autocommit connection that statement is the whole transaction, with no BEGIN
or COMMIT (revision 0049). Behind that, the wallet's own ledger account has a
minimum balance of 0, which the database enforces on every posting whatever
the caller.

Reservations expire on real time (`expires_at` against the database clock),
never on the book's simulated date. Expiry is lazy — a hold past its time no
longer counts and reads as `expired` — and written down by the next write to
the wallet or by `sweep_expired`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeVar

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

from billing.errors import DocumentState, InsufficientFunds, InvalidBillingRequest
from billing.invoicing import tax_rate_of
from billing.payments import cash_account_of
from billing.postgres.customers import get_customer
from billing.postgres.events import record_event
from billing.postgres.ids import parse_id
from billing.postgres.posting import post_entry
from billing.wallets import (
    USAGE,
    WALLET,
    breakage_entry,
    check_capture,
    check_ttl,
    consumption_entry,
    extended_validity,
    falls_low,
    grant,
    lapses_on,
    top_up_entry,
    wallet_account,
)
from ledger.errors import CurrencyMismatch, LedgerError, NotFound
from ledger.money import Money, check_currency
from ledger.money import minor_unit_text as money_text
from ledger.periods import first_open_day
from ledger.postgres.books import AccountSpec, closed_periods, create_account
from ledger.postgres.posting import DIRECTORY, PreparedEntries


@dataclass(frozen=True, slots=True)
class Wallet:
    id: uuid.UUID
    customer_id: uuid.UUID
    currency: str
    account_id: uuid.UUID
    low_balance_threshold: Decimal | None
    low_balance: bool
    created_at: datetime
    valid_until: date | None
    balance: Decimal
    held: Decimal

    @property
    def available(self) -> Decimal:
        return self.balance - self.held

    @property
    def account(self) -> str:
        return wallet_account(self.id)

    def as_json(self) -> dict[str, Any]:
        """The wallet as the API shows it and its events carry it."""
        c = self.currency
        threshold = self.low_balance_threshold
        return {
            "id": str(self.id),
            "object": "wallet",
            "customer": str(self.customer_id),
            "currency": c,
            "account": self.account,
            "balance": money_text(self.balance, c),
            "held": money_text(self.held, c),
            "available": money_text(self.available, c),
            "low_balance_threshold": None if threshold is None else money_text(threshold, c),
            "low_balance": self.low_balance,
            "valid_until": None if self.valid_until is None else self.valid_until.isoformat(),
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class Reservation:
    id: uuid.UUID
    wallet_id: uuid.UUID
    requested: Decimal
    amount: Decimal
    captured: Decimal | None
    status: str
    expires_at: datetime
    closed_at: datetime | None
    entry_id: uuid.UUID | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class WalletTransaction:
    entry_id: uuid.UUID
    effective_date: date
    recorded_at: datetime
    kind: str
    amount: Decimal  # positive adds to the wallet, negative takes from it
    memo: str


@dataclass(frozen=True, slots=True)
class WalletEvent:
    id: uuid.UUID
    kind: str
    available: Decimal
    threshold: Decimal
    created_at: datetime


_WALLET = (
    "w.id, w.customer_id, w.currency, w.account_id, w.low_balance_threshold, w.low_balance,"
    " w.created_at, w.valid_until,"
    " coalesce((select -g.balance from guarded_balances g where g.book_id = w.book_id"
    "   and g.account_id = w.account_id and g.currency = w.currency), 0) as balance,"
    " coalesce((select sum(r.amount) from wallet_reservations r where r.book_id = w.book_id"
    "   and r.wallet_id = w.id and r.status = 'held' and r.expires_at > now()), 0) as held"
)
# A hold past its time reads as expired before any write has said so.
_RESERVATION = (
    "id, wallet_id, requested, amount, captured,"
    " case when status = 'held' and expires_at <= now() then 'expired' else status end as status,"
    " expires_at, closed_at, entry_id, created_at"
)


def _threshold(value: Decimal | None, currency: str) -> Decimal | None:
    if value is None:
        return None
    money = Money.exact(value, currency)
    if money.amount < 0:
        raise InvalidBillingRequest("low_balance_threshold cannot be negative")
    return money.amount


def create_wallet(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    customer_ref: str,
    currency: str,
    low_balance_threshold: Decimal | None = None,
) -> Wallet:
    currency = check_currency(currency)
    threshold = _threshold(low_balance_threshold, currency)
    customer = get_customer(conn, book_id, customer_ref)
    if customer.currency != currency:
        raise CurrencyMismatch(
            f"customer {customer.name} bills in {customer.currency}, not {currency}",
            currency=currency,
            customer_currency=customer.currency,
        )
    wallet_id = uuid.uuid4()
    account = create_account(
        conn,
        book_id,
        AccountSpec(
            name=wallet_account(wallet_id),
            currencies=[currency],
            min_balance=Decimal(0),
            metadata={"wallet": str(wallet_id), "parent": WALLET},
        ),
    )
    conn.execute(
        "insert into wallets (book_id, id, customer_id, currency, account_id,"
        " low_balance_threshold) values (%s, %s, %s, %s, %s, %s)",
        (book_id, wallet_id, customer.id, currency, account.id, threshold),
    )
    return get_wallet(conn, book_id, str(wallet_id))


def get_wallet(
    conn: psycopg.Connection, book_id: uuid.UUID, ref: str, *, lock: bool = False
) -> Wallet:
    wallet_id = parse_id(ref, "wallet")
    if lock:
        # The row lock first; the balance and holds are read after it is held.
        found = conn.execute(
            "select 1 from wallets where book_id = %s and id = %s for update", (book_id, wallet_id)
        ).fetchone()
        if found is None:
            raise NotFound(f"wallet {ref!r} does not exist in this book", wallet=ref)
        _expire_holds(conn, book_id, wallet_id)
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"select {_WALLET} from wallets w where w.book_id = %s and w.id = %s",
            (book_id, wallet_id),
        ).fetchone()
    if row is None:
        raise NotFound(f"wallet {ref!r} does not exist in this book", wallet=ref)
    return Wallet(**row)


def list_wallets(
    conn: psycopg.Connection, book_id: uuid.UUID, *, customer_id: uuid.UUID | None = None
) -> list[Wallet]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"select {_WALLET} from wallets w where w.book_id = %s"
            " and (%s::uuid is null or w.customer_id = %s) order by w.created_at, w.id",
            (book_id, customer_id, customer_id),
        ).fetchall()
    return [Wallet(**r) for r in rows]


def _expire_holds(conn: psycopg.Connection, book_id: uuid.UUID, wallet_id: uuid.UUID) -> None:
    conn.execute(
        "update wallet_reservations set status = 'expired', closed_at = now()"
        " where book_id = %s and wallet_id = %s and status = 'held' and expires_at <= now()",
        (book_id, wallet_id),
    )


def sweep_expired(conn: psycopg.Connection, book_id: uuid.UUID) -> int:
    """Mark every hold past its time as expired (their value is available again)."""
    cur = conn.execute(
        "update wallet_reservations set status = 'expired', closed_at = now()"
        " where book_id = %s and status = 'held' and expires_at <= now()",
        (book_id,),
    )
    return cur.rowcount


def _after_change(conn: psycopg.Connection, book_id: uuid.UUID, wallet: Wallet) -> Wallet:
    """Record a low-balance event when this change crossed the threshold; re-arm above it."""
    threshold = wallet.low_balance_threshold
    if falls_low(wallet.available, threshold, wallet.low_balance):
        assert threshold is not None
        conn.execute(
            "insert into wallet_events (book_id, id, wallet_id, kind, available, threshold)"
            " values (%s, %s, %s, 'low_balance', %s, %s)",
            (book_id, uuid.uuid4(), wallet.id, wallet.available, threshold),
        )
        conn.execute(
            "update wallets set low_balance = true where book_id = %s and id = %s",
            (book_id, wallet.id),
        )
        # Announced in the same transaction, as every outbox event is: the alert a
        # Lago or Stripe user wires to a webhook (top-up reminder, session cut-off).
        now_low = get_wallet(conn, book_id, str(wallet.id))
        record_event(conn, book_id, "wallet.low_balance", now_low.as_json())
        return now_low
    if wallet.low_balance and threshold is not None and wallet.available >= threshold:
        conn.execute(
            "update wallets set low_balance = false where book_id = %s and id = %s",
            (book_id, wallet.id),
        )
        return replace(wallet, low_balance=False)
    return wallet


def top_up(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    ref: str,
    amount: Decimal,
    on: date,
    payment_method: str = "bank_transfer",
    valid_days: int | None = None,
) -> tuple[Wallet, uuid.UUID]:
    """Add value to the wallet; with `valid_days`, its validity extends to the top-up's
    own last day when that is later. Value that lapsed before `on` lapses first."""
    cash_account = cash_account_of(payment_method)
    wallet = _lapse(conn, book_id, get_wallet(conn, book_id, ref, lock=True), on)
    money = Money.exact(amount, wallet.currency)
    valid_until = extended_validity(wallet.valid_until, on, valid_days)
    customer = get_customer(conn, book_id, str(wallet.customer_id))
    rate = tax_rate_of(customer.tax_rate, customer.tax_treatment)
    entry = top_up_entry(on, wallet.id, str(wallet.customer_id), money, cash_account, rate)
    posted = post_entry(conn, book_id, entry)
    if valid_until != wallet.valid_until:
        conn.execute(
            "update wallets set valid_until = %s where book_id = %s and id = %s",
            (valid_until, book_id, wallet.id),
        )
    return _after_change(conn, book_id, get_wallet(conn, book_id, ref)), posted.id


def _lapse(conn: psycopg.Connection, book_id: uuid.UUID, wallet: Wallet, today: date) -> Wallet:
    """The locked wallet after its lapsed value went to Breakage (nothing when it is
    still valid). Held value stays until its session lets it go; the validity is
    cleared once nothing is left under it."""
    lapsed_on = lapses_on(wallet.valid_until, today)
    if lapsed_on is None:
        return wallet
    if wallet.held == 0:
        conn.execute(
            "update wallets set valid_until = null where book_id = %s and id = %s",
            (book_id, wallet.id),
        )
    if wallet.available > 0:
        on = first_open_day(lapsed_on, closed_periods(conn, book_id))
        return _break(conn, book_id, wallet, on, Money.exact(wallet.available, wallet.currency))[0]
    return _after_change(conn, book_id, get_wallet(conn, book_id, str(wallet.id)))


def _break(
    conn: psycopg.Connection, book_id: uuid.UUID, wallet: Wallet, on: date, money: Money
) -> tuple[Wallet, uuid.UUID]:
    """Post `money` of the locked wallet's value to Breakage on `on`; the wallet after it."""
    entry = breakage_entry(on, wallet.id, str(wallet.customer_id), money)
    posted = post_entry(conn, book_id, entry)
    return _after_change(conn, book_id, get_wallet(conn, book_id, str(wallet.id))), posted.id


def lapse_expired_value(conn: psycopg.Connection, book_id: uuid.UUID, today: date) -> int:
    """Every wallet whose validity ended before `today` loses its available value to
    Breakage (`activebilling wallets sweep`); how many wallets lapsed."""
    lapsed = conn.execute(
        "select id from wallets where book_id = %s and valid_until < %s order by id",
        (book_id, today),
    ).fetchall()
    for (wallet_id,) in lapsed:
        _lapse(conn, book_id, get_wallet(conn, book_id, str(wallet_id), lock=True), today)
    return len(lapsed)


def expire_value(
    conn: psycopg.Connection, book_id: uuid.UUID, ref: str, on: date, amount: Decimal | None
) -> tuple[Wallet, uuid.UUID]:
    """Prepaid value expired to Income:Breakage: `amount`, or all that is available
    (value held for sessions in progress is not expired under them)."""
    wallet = get_wallet(conn, book_id, ref, lock=True)
    money = Money.exact(wallet.available if amount is None else amount, wallet.currency)
    if money.amount > wallet.available:
        raise InvalidBillingRequest(
            f"cannot expire {money.amount}: the wallet has {wallet.available} available"
        )
    return _break(conn, book_id, wallet, on, money)


@dataclass(frozen=True, slots=True)
class _Fixed:
    """What a wallet never changes after it is created: its currency, customer and
    ledger account (the capture function checks them under the lock)."""

    currency: str
    customer_id: uuid.UUID
    account_id: uuid.UUID


# Per process, like the ledger's account directory: a hold or a capture on a wallet
# seen before validates its amount and builds its entry with no read.
_FIXED: dict[tuple[uuid.UUID, uuid.UUID], _Fixed] = {}
_FIXED_MAX = 100_000


def _fixed(conn: psycopg.Connection, book_id: uuid.UUID, ref: str) -> tuple[uuid.UUID, _Fixed]:
    wallet_id = parse_id(ref, "wallet")
    found = _FIXED.get((book_id, wallet_id))
    if found is None:
        row = conn.execute(
            "select currency, customer_id, account_id from wallets where book_id = %s and id = %s",
            (book_id, wallet_id),
        ).fetchone()
        if row is None:
            raise NotFound(f"wallet {ref!r} does not exist in this book", wallet=ref)
        if len(_FIXED) >= _FIXED_MAX:
            _FIXED.clear()
        found = _FIXED[(book_id, wallet_id)] = _Fixed(*row)
    return wallet_id, found


def wallet_currency(conn: psycopg.Connection, book_id: uuid.UUID, ref: str) -> str:
    return _fixed(conn, book_id, ref)[1].currency


_HOLD = "select * from ab_wallet_hold(%s, %s, %s, %s, %s, %s, %s, %s)"
# On an autocommit connection the function is the whole unit of work; a low-balance
# crossing raises instead (revision 0049), as its outbox event must commit with it.
_CROSSING = "ABW01"
_T = TypeVar("_T")


def _one_statement(conn: psycopg.Connection, run: Callable[[bool], _T]) -> _T:
    """`run(alone)` as its own transaction on an autocommit connection — one round trip,
    no BEGIN or COMMIT — run again in a transaction when it crossed the low-balance
    threshold; in the caller's transaction otherwise (one it opened on an autocommit
    connection too)."""
    if not conn.autocommit or conn.info.transaction_status != TransactionStatus.IDLE:
        return run(False)
    try:
        return run(True)
    except psycopg.Error as exc:
        if exc.sqlstate != _CROSSING:
            raise
    with conn.transaction():
        return run(False)


# The capture's journal entry travels as the ledger's insert takes it (PreparedEntries).
_ENTRY_ARRAYS = (
    *("ids", "dates", "memos", "metadata", "keys", "hashes", "reverses"),
    *("entry_ids", "line_nos", "accounts", "amounts", "currencies", "customers"),
    *("documents", "dimensions"),
)
_CAPTURE_ARGS = ("book", "wallet", "reservation", "amount", "account", "currency", "customer")
_CAPTURE = (
    "select * from ab_wallet_capture("
    + ", ".join(f"%({name})s" for name in (*_CAPTURE_ARGS, *_ENTRY_ARRAYS))
    + ")"
)
_HOLD_ALONE, _CAPTURE_ALONE = (
    q.replace("select *", "select *, ab_wallet_alone(fell_low)", 1) for q in (_HOLD, _CAPTURE)
)


def _reservation(wallet_id: uuid.UUID, row: dict[str, Any]) -> Reservation:
    return Reservation(
        id=row["r_id"],
        wallet_id=wallet_id,
        requested=row["r_requested"],
        amount=row["r_amount"],
        captured=row["r_captured"],
        status=row["r_status"],
        expires_at=row["r_expires_at"],
        closed_at=row["r_closed_at"],
        entry_id=row["r_entry_id"],
        created_at=row["r_created_at"],
    )


def _announce_low(conn: psycopg.Connection, book_id: uuid.UUID, wallet_id: uuid.UUID) -> None:
    """The outbox event of a low-balance crossing the function recorded (as _after_change)."""
    record_event(
        conn, book_id, "wallet.low_balance", get_wallet(conn, book_id, str(wallet_id)).as_json()
    )


def reserve(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    ref: str,
    amount: Decimal,
    ttl_seconds: int,
    *,
    partial: bool = False,
    today: date | None = None,
    wall_clock_today: date | None = None,
) -> Reservation:
    """Hold value for a session, in one round trip (`ab_wallet_hold`). With `today`,
    or with `wall_clock_today` (the book's simulated date is read instead when it has
    one, and only for a wallet with a validity), value whose validity ended is not
    available: the hold is refused (402) and the sweep or the next top-up posts the
    lapse (a refused request writes nothing, so it cannot post it itself)."""
    check_ttl(ttl_seconds)
    wallet_id, fixed = _fixed(conn, book_id, ref)
    requested = Money.exact(amount, fixed.currency)
    params = (
        book_id,
        wallet_id,
        uuid.uuid4(),
        requested.amount,
        ttl_seconds,
        partial,
        today,
        wall_clock_today,
    )

    def hold(alone: bool) -> Reservation:
        with conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(_HOLD_ALONE if alone else _HOLD, params).fetchone()
        assert row is not None
        outcome = row["outcome"]
        if outcome == "not_found":
            raise NotFound(f"wallet {ref!r} does not exist in this book", wallet=ref)
        if outcome == "lapsed":
            valid_until = row["w_valid_until"]
            raise InsufficientFunds(
                f"the wallet's value lapsed on {lapses_on(valid_until, row['w_today'])}"
                f" (valid until {valid_until}): nothing is available until it is topped up",
                available="0",
                requested=str(requested.amount),
                valid_until=str(valid_until),
            )
        if outcome != "held":  # invalid or short: the rule says which problem
            grant(requested, row["w_available"] or Decimal(0), partial)
            raise AssertionError(f"ab_wallet_hold refused a grantable hold ({outcome})")
        if row["fell_low"]:
            _announce_low(conn, book_id, wallet_id)
        return _reservation(wallet_id, row)

    return _one_statement(conn, hold)


def get_reservation(
    conn: psycopg.Connection, book_id: uuid.UUID, wallet_ref: str, ref: str
) -> Reservation:
    wallet_id = parse_id(wallet_ref, "wallet")
    reservation_id = parse_id(ref, "reservation")
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"select {_RESERVATION} from wallet_reservations"
            " where book_id = %s and id = %s and wallet_id = %s",
            (book_id, reservation_id, wallet_id),
        ).fetchone()
    if row is None:
        raise NotFound(f"reservation {ref!r} does not exist on wallet {wallet_ref!r}")
    return Reservation(**row)


def _open_reservation(
    conn: psycopg.Connection, book_id: uuid.UUID, wallet_ref: str, ref: str
) -> tuple[Wallet, Reservation]:
    wallet = get_wallet(conn, book_id, wallet_ref, lock=True)
    reservation = get_reservation(conn, book_id, wallet_ref, ref)
    if reservation.status != "held":
        raise DocumentState(
            f"reservation {ref} is {reservation.status}; only a held reservation"
            " can be captured or released",
            status=reservation.status,
        )
    return wallet, reservation


def capture(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    wallet_ref: str,
    ref: str,
    amount: Decimal,
    on: date,
) -> Reservation:
    """Debit the rated amount (at most what is held) and release the rest, in one
    round trip (`ab_wallet_capture`, which posts the entry built here)."""
    wallet_id, fixed = _fixed(conn, book_id, wallet_ref)
    reservation_id = parse_id(ref, "reservation")
    params: dict[str, Any] = dict.fromkeys(_ENTRY_ARRAYS)
    # A bad amount is reported after the reservation's own problems, as before.
    bad: LedgerError | None = None
    try:
        money = Money.exact(amount, fixed.currency)
    except LedgerError as exc:
        bad, money = exc, Money(Decimal(0), fixed.currency)
    if bad is None and money.amount > 0:
        entry = consumption_entry(
            on, wallet_id, str(fixed.customer_id), money, f"reservation:{reservation_id}"
        )
        accounts = {wallet_account(wallet_id): fixed.account_id}
        accounts.update(DIRECTORY.resolve(conn, book_id, [USAGE]))
        params.update(PreparedEntries(book_id, [entry], accounts).params)
    params.update(
        book=book_id,
        wallet=wallet_id,
        reservation=reservation_id,
        amount=None if bad is not None else money.amount,
        account=fixed.account_id,
        currency=fixed.currency,
        customer=fixed.customer_id,
    )

    def take(alone: bool) -> Reservation:
        with conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(_CAPTURE_ALONE if alone else _CAPTURE, params).fetchone()
        assert row is not None
        outcome = row["outcome"]
        if outcome == "not_found":
            raise NotFound(f"wallet {wallet_ref!r} does not exist in this book", wallet=wallet_ref)
        if outcome == "no_reservation":
            raise NotFound(f"reservation {ref!r} does not exist on wallet {wallet_ref!r}")
        if outcome == "not_held":
            status = row["r_status"]
            raise DocumentState(
                f"reservation {ref} is {status};"
                " only a held reservation can be captured or released",
                status=status,
            )
        if bad is not None:
            raise bad
        if outcome != "captured":  # invalid or over: the rule says which problem
            check_capture(money, row["r_amount"])
            raise AssertionError(f"ab_wallet_capture refused a valid capture ({outcome})")
        if row["fell_low"]:
            _announce_low(conn, book_id, wallet_id)
        return _reservation(wallet_id, row)

    return _one_statement(conn, take)


def release(conn: psycopg.Connection, book_id: uuid.UUID, wallet_ref: str, ref: str) -> Reservation:
    _, reservation = _open_reservation(conn, book_id, wallet_ref, ref)
    conn.execute(
        "update wallet_reservations set status = 'released', closed_at = now()"
        " where book_id = %s and id = %s",
        (book_id, reservation.id),
    )
    return get_reservation(conn, book_id, wallet_ref, ref)


def list_reservations(
    conn: psycopg.Connection, book_id: uuid.UUID, wallet_ref: str
) -> list[Reservation]:
    wallet = get_wallet(conn, book_id, wallet_ref)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"select {_RESERVATION} from wallet_reservations where book_id = %s"
            " and wallet_id = %s order by created_at, id",
            (book_id, wallet.id),
        ).fetchall()
    return [Reservation(**r) for r in rows]


def _kind(via: str | None) -> str:
    if via is None:
        return "other"
    return "usage" if via.startswith(("reservation:", "cdr_rating:")) else via


def transactions(
    conn: psycopg.Connection, book_id: uuid.UUID, wallet_ref: str
) -> list[WalletTransaction]:
    """The wallet's movements, from its ledger account (credits add to it)."""
    wallet = get_wallet(conn, book_id, wallet_ref)
    rows: list[Any] = conn.execute(
        "select e.id, e.effective_date, e.recorded_at, p.dimensions->>'via', -p.amount, e.memo"
        " from postings p join journal_entries e on e.book_id = p.book_id and e.id = p.entry_id"
        " where p.account_id = %s and p.book_id = %s order by e.recorded_at, e.id",
        (wallet.account_id, book_id),
    ).fetchall()
    return [WalletTransaction(r[0], r[1], r[2], _kind(r[3]), Decimal(r[4]), r[5]) for r in rows]


def events(conn: psycopg.Connection, book_id: uuid.UUID, wallet_ref: str) -> list[WalletEvent]:
    wallet = get_wallet(conn, book_id, wallet_ref)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "select id, kind, available, threshold, created_at from wallet_events"
            " where wallet_id = %s and book_id = %s order by created_at, id",
            (wallet.id, book_id),
        ).fetchall()
    return [WalletEvent(**r) for r in rows]
