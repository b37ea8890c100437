"""Prepaid wallets in PostgreSQL: accounts, top-ups, reservations, breakage
(rules in billing.wallets).

Concurrency: every write to a wallet locks its `wallets` row first (`for
update`), then reads the balance and the open holds, so concurrent holds on
one wallet are decided one after another and never over- or under-grant;
other wallets' rows are not touched, so they proceed in parallel. Behind that,
the wallet's own ledger account has a minimum balance of 0, which the
database enforces on every posting whatever the caller.

Reservations expire on real time (`expires_at` against the database clock),
never on the book's simulated date. Expiry is lazy — a hold past its time no
longer counts and reads as `expired` — and written down by the next write to
the wallet or by `sweep_expired`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row

from billing.errors import DocumentState, InsufficientFunds, InvalidBillingRequest
from billing.invoicing import tax_rate_of
from billing.payments import cash_account_of
from billing.postgres.customers import get_customer
from billing.postgres.events import record_event
from billing.postgres.ids import parse_id
from billing.postgres.posting import post_entry
from billing.wallets import (
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
from ledger.errors import CurrencyMismatch, NotFound
from ledger.money import Money, check_currency
from ledger.money import minor_unit_text as money_text
from ledger.periods import first_open_day
from ledger.postgres.books import AccountSpec, closed_periods, create_account


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
    if wallet.available > 0:
        closed = closed_periods(conn, book_id)
        entry = breakage_entry(
            first_open_day(lapsed_on, closed),
            wallet.id,
            str(wallet.customer_id),
            Money.exact(wallet.available, wallet.currency),
        )
        post_entry(conn, book_id, entry)
    if wallet.held == 0:
        conn.execute(
            "update wallets set valid_until = null where book_id = %s and id = %s",
            (book_id, wallet.id),
        )
    return _after_change(conn, book_id, get_wallet(conn, book_id, str(wallet.id)))


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
    entry = breakage_entry(on, wallet.id, str(wallet.customer_id), money)
    posted = post_entry(conn, book_id, entry)
    return _after_change(conn, book_id, get_wallet(conn, book_id, ref)), posted.id


def reserve(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    ref: str,
    amount: Decimal,
    ttl_seconds: int,
    *,
    partial: bool = False,
    today: date | None = None,
) -> Reservation:
    """Hold value for a session. With `today`, value whose validity ended is not
    available: the hold is refused (402) and the sweep or the next top-up posts the
    lapse (a refused request writes nothing, so it cannot post it itself)."""
    check_ttl(ttl_seconds)
    wallet = get_wallet(conn, book_id, ref, lock=True)
    requested = Money.exact(amount, wallet.currency)
    lapsed_on = None if today is None else lapses_on(wallet.valid_until, today)
    if lapsed_on is not None:
        raise InsufficientFunds(
            f"the wallet's value lapsed on {lapsed_on} (valid until {wallet.valid_until}):"
            " nothing is available until it is topped up",
            available="0",
            requested=str(requested.amount),
            valid_until=str(wallet.valid_until),
        )
    granted = grant(requested, wallet.available, partial)
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "insert into wallet_reservations (book_id, id, wallet_id, requested, amount,"
            " expires_at) values (%s, %s, %s, %s, %s, now() + make_interval(secs => %s))"
            f" returning {_RESERVATION}",
            (book_id, uuid.uuid4(), wallet.id, requested.amount, granted.amount, ttl_seconds),
        ).fetchone()
    assert row is not None
    # The wallet is locked: its new state follows from the hold (no second read).
    _after_change(conn, book_id, replace(wallet, held=wallet.held + granted.amount))
    return Reservation(**row)


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
    """Debit the rated amount (at most what is held) and release the rest."""
    wallet, reservation = _open_reservation(conn, book_id, wallet_ref, ref)
    money = check_capture(Money.exact(amount, wallet.currency), reservation.amount)
    entry_id = None
    if money.amount > 0:
        entry = consumption_entry(
            on, wallet.id, str(wallet.customer_id), money, f"reservation:{reservation.id}"
        )
        entry_id = post_entry(conn, book_id, entry).id
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "update wallet_reservations set status = 'captured', captured = %s, entry_id = %s,"
            f" closed_at = now() where book_id = %s and id = %s returning {_RESERVATION}",
            (money.amount, entry_id, book_id, reservation.id),
        ).fetchone()
    assert row is not None
    # The wallet is locked: the hold closes and the capture leaves the balance.
    after = replace(
        wallet, balance=wallet.balance - money.amount, held=wallet.held - reservation.amount
    )
    _after_change(conn, book_id, after)
    return Reservation(**row)


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
