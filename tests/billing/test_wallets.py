"""Prepaid wallets on real PostgreSQL: exact postings of top-ups, captures and
breakage; holds under concurrency; expiry on real time; low-balance events;
the database's own refusal to take one wallet below zero."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from adapters.runtime import Runtime
from billing.errors import DocumentState, InsufficientFunds, InvalidBillingRequest
from billing.postgres import wallets as store
from billing.postgres.posting import post_entry
from billing.wallets import BREAKAGE, USAGE, consumption_entry, grant, wallet_account
from ledger.entries import Posting, build_entry
from ledger.errors import BalanceLimitExceeded, CurrencyMismatch, NotFound
from ledger.money import Money
from ledger.postgres.posting import get_entry, request_hash
from ledger.postgres.unit_of_work import unit_of_work
from tests.billing.test_payments import new_customer
from tests.conftest import BookFixture

D = Decimal
DAY = date(2026, 3, 1)


def new_wallet(
    runtime: Runtime, book: BookFixture, top_up: str | None = None, threshold: str | None = None
) -> store.Wallet:
    with unit_of_work(runtime.connection) as uow:
        customer = new_customer(uow.conn, book.id, tax_rate="0")
        wallet = store.create_wallet(
            uow.conn, book.id, str(customer.id), "USD", None if threshold is None else D(threshold)
        )
        if top_up is not None:
            wallet, _ = store.top_up(uow.conn, book.id, str(wallet.id), D(top_up), DAY)
        uow.commit()
    return wallet


def lines(conn: psycopg.Connection, book_id: uuid.UUID, entry_id: uuid.UUID) -> set[tuple[str, D]]:
    return {(p.account, p.amount) for p in get_entry(conn, book_id, str(entry_id)).postings}


def in_tx(runtime: Runtime, work: Callable[[psycopg.Connection], object]) -> object:
    with unit_of_work(runtime.connection) as uow:
        answer = work(uow.conn)
        uow.commit()
    return answer


def test_grant_rule() -> None:
    usd = Money(D("5.00"), "USD")
    assert grant(usd, D("10.00"), partial=False) == usd
    assert grant(usd, D("3.20"), partial=True) == Money(D("3.20"), "USD")
    with pytest.raises(InsufficientFunds):
        grant(usd, D("3.20"), partial=False)
    with pytest.raises(InsufficientFunds):
        grant(usd, D("0"), partial=True)
    with pytest.raises(InvalidBillingRequest):
        grant(Money(D("0"), "USD"), D("10"), partial=False)


def test_top_up_capture_and_breakage_post_exactly(runtime: Runtime, book: BookFixture) -> None:
    wallet = new_wallet(runtime, book)
    account = wallet_account(wallet.id)
    with unit_of_work(runtime.connection) as uow:
        conn = uow.conn
        topped, entry_id = store.top_up(conn, book.id, str(wallet.id), D("20.00"), DAY, "card")
        assert lines(conn, book.id, entry_id) == {
            ("Assets:Clearing:Manual", D("20.00")),
            (account, D("-20.00")),
        }
        assert (topped.balance, topped.available) == (D("20.00"), D("20.00"))
        hold = store.reserve(conn, book.id, str(wallet.id), D("5.00"), 60)
        assert (hold.status, hold.amount) == ("held", D("5.00"))
        held = store.get_wallet(conn, book.id, str(wallet.id))
        assert (held.balance, held.available) == (D("20.00"), D("15.00"))
        captured = store.capture(conn, book.id, str(wallet.id), str(hold.id), D("3.40"), DAY)
        assert (captured.status, captured.captured) == ("captured", D("3.40"))
        assert captured.entry_id is not None
        assert lines(conn, book.id, captured.entry_id) == {
            (account, D("3.40")),
            (USAGE, D("-3.40")),
        }
        after = store.get_wallet(conn, book.id, str(wallet.id))
        assert (after.balance, after.available) == (D("16.60"), D("16.60"))
        _, expired = store.expire_value(conn, book.id, str(wallet.id), DAY, None)
        assert lines(conn, book.id, expired) == {(account, D("16.60")), (BREAKAGE, D("-16.60"))}
        assert store.get_wallet(conn, book.id, str(wallet.id)).balance == D("0.00")
        kinds = [(t.kind, t.amount) for t in store.transactions(conn, book.id, str(wallet.id))]
        assert kinds == [("top_up", D("20.00")), ("usage", D("-3.40")), ("breakage", D("-16.60"))]
        uow.commit()


def test_release_and_closed_reservations(runtime: Runtime, book: BookFixture) -> None:
    wallet = new_wallet(runtime, book, top_up="10.00")
    w = str(wallet.id)
    with unit_of_work(runtime.connection) as uow:
        hold = store.reserve(uow.conn, book.id, w, D("4.00"), 60)
        released = store.release(uow.conn, book.id, w, str(hold.id))
        assert released.status == "released"
        assert store.get_wallet(uow.conn, book.id, w).available == D("10.00")
        with pytest.raises(DocumentState):
            store.capture(uow.conn, book.id, w, str(hold.id), D("1.00"), DAY)
        hold2 = store.reserve(uow.conn, book.id, w, D("4.00"), 60)
        with pytest.raises(InvalidBillingRequest):
            store.capture(uow.conn, book.id, w, str(hold2.id), D("4.01"), DAY)
        with pytest.raises(InsufficientFunds):
            store.reserve(uow.conn, book.id, w, D("6.01"), 60)
        partial = store.reserve(uow.conn, book.id, w, D("9.00"), 60, partial=True)
        assert (partial.requested, partial.amount) == (D("9.00"), D("6.00"))
        zero = store.capture(uow.conn, book.id, w, str(hold2.id), D("0"), DAY)
        assert (zero.status, zero.captured, zero.entry_id) == ("captured", D("0"), None)
        uow.commit()


def test_expired_reservations_release(runtime: Runtime, book: BookFixture) -> None:
    wallet = new_wallet(runtime, book, top_up="10.00")
    w = str(wallet.id)
    hold = in_tx(runtime, lambda c: store.reserve(c, book.id, w, D("7.00"), 60))
    assert isinstance(hold, store.Reservation)
    # Real time runs out: move the hold's expiry into the past (no sleeping in tests).
    in_tx(
        runtime,
        lambda c: c.execute(
            "update wallet_reservations set expires_at = now() - interval '1 second'"
            " where book_id = %s and id = %s",
            (book.id, hold.id),
        ),
    )
    with pytest.raises(DocumentState):
        in_tx(runtime, lambda c: store.capture(c, book.id, w, str(hold.id), D("1.00"), DAY))
    with unit_of_work(runtime.connection) as uow:
        read = store.get_reservation(uow.conn, book.id, w, str(hold.id))
        assert read.status == "expired"  # lazily, before anything wrote it down
        assert store.get_wallet(uow.conn, book.id, w).available == D("10.00")
        assert store.sweep_expired(uow.conn, book.id) == 1
        uow.commit()
    row = in_tx(
        runtime,
        lambda c: c.execute(
            "select status, closed_at is not null from wallet_reservations where id = %s",
            (hold.id,),
        ).fetchone(),
    )
    assert row == ("expired", True)


def test_low_balance_event_once_per_crossing(runtime: Runtime, book: BookFixture) -> None:
    wallet = new_wallet(runtime, book, top_up="10.00", threshold="3.00")
    w = str(wallet.id)
    with unit_of_work(runtime.connection) as uow:
        c = uow.conn
        store.reserve(c, book.id, w, D("6.00"), 60)
        assert store.events(c, book.id, w) == []
        store.reserve(c, book.id, w, D("2.00"), 60)  # available 2.00 < 3.00
        store.reserve(c, book.id, w, D("1.00"), 60)  # still low: no second event
        found = store.events(c, book.id, w)
        assert [(e.kind, e.available, e.threshold) for e in found] == [
            ("low_balance", D("2.00"), D("3.00"))
        ]
        assert store.get_wallet(c, book.id, w).low_balance
        store.top_up(c, book.id, w, D("5.00"), DAY)  # available 6.00: re-armed
        assert not store.get_wallet(c, book.id, w).low_balance
        store.reserve(c, book.id, w, D("4.00"), 60)
        assert len(store.events(c, book.id, w)) == 2
        uow.commit()
    # Each crossing is also an outbox event (webhooks, GET /v1/events), once each.
    with runtime.connection() as c:
        announced = c.execute(
            "select object_id, data -> 'object' ->> 'available',"
            " data -> 'object' ->> 'low_balance_threshold', data -> 'object' ->> 'object'"
            " from events where book_id = %s and type = 'wallet.low_balance' order by sequence",
            (book.id,),
        ).fetchall()
    assert announced == [(w, "2.00", "3.00", "wallet"), (w, "2.00", "3.00", "wallet")]


def test_the_database_refuses_overdrawing_one_wallet(runtime: Runtime, book: BookFixture) -> None:
    wallet = new_wallet(runtime, book, top_up="5.00")
    other = new_wallet(runtime, book, top_up="100.00")
    assert other.balance == D("100.00")
    entry = build_entry(
        DAY,
        "overdraw",
        [
            Posting(wallet_account(wallet.id), Money(D("5.01"), "USD")),
            Posting(USAGE, Money(D("-5.01"), "USD")),
        ],
    )
    with pytest.raises(BalanceLimitExceeded):
        in_tx(runtime, lambda c: post_entry(c, book.id, entry))


def test_bad_input_writes_nothing(runtime: Runtime, book: BookFixture) -> None:
    wallet = new_wallet(runtime, book, top_up="5.00")
    w = str(wallet.id)

    def count(c: psycopg.Connection) -> object:
        return c.execute(
            "select (select count(*) from wallet_reservations where book_id = %(b)s),"
            " (select count(*) from journal_entries where book_id = %(b)s),"
            " (select count(*) from wallets where book_id = %(b)s)",
            {"b": book.id},
        ).fetchone()

    before = in_tx(runtime, count)
    attempts: list[tuple[type[Exception], Callable[[psycopg.Connection], object]]] = [
        (InvalidBillingRequest, lambda c: store.reserve(c, book.id, w, D("-1"), 60)),
        (InvalidBillingRequest, lambda c: store.reserve(c, book.id, w, D("1"), 0)),
        (InsufficientFunds, lambda c: store.reserve(c, book.id, w, D("5.01"), 60)),
        (InvalidBillingRequest, lambda c: store.top_up(c, book.id, w, D("0"), DAY)),
        (InvalidBillingRequest, lambda c: store.top_up(c, book.id, w, D("1"), DAY, "barter")),
        (InvalidBillingRequest, lambda c: store.expire_value(c, book.id, w, DAY, D("5.01"))),
        (NotFound, lambda c: store.get_wallet(c, book.id, str(uuid.uuid4()))),
        (NotFound, lambda c: store.create_wallet(c, book.id, "nobody", "USD")),
        (
            CurrencyMismatch,
            lambda c: store.create_wallet(c, book.id, str(wallet.customer_id), "EUR"),
        ),
    ]
    for error, attempt in attempts:
        with pytest.raises(error):
            in_tx(runtime, attempt)
    assert in_tx(runtime, count) == before


def _threads(n: int, work: Callable[[], None]) -> list[BaseException]:
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            work()
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_64_concurrent_holds_of_050_on_10_grant_exactly_20(
    runtime: Runtime, book: BookFixture
) -> None:
    wallet = new_wallet(runtime, book, top_up="10.00")
    w = str(wallet.id)
    errors = _threads(
        64, lambda: in_tx(runtime, lambda c: store.reserve(c, book.id, w, D("0.50"), 600))
    )
    assert len(errors) == 44 and all(isinstance(e, InsufficientFunds) for e in errors)
    held = in_tx(runtime, lambda c: store.list_reservations(c, book.id, w))
    assert isinstance(held, list) and len(held) == 20
    final = in_tx(runtime, lambda c: store.get_wallet(c, book.id, w))
    assert isinstance(final, store.Wallet) and (final.balance, final.available) == (
        D("10.00"),
        D("0.00"),
    )


def test_64_concurrent_reserve_and_capture_never_go_below_zero(
    runtime: Runtime, book: BookFixture
) -> None:
    wallet = new_wallet(runtime, book, top_up="10.00")
    w = str(wallet.id)

    def session() -> None:
        def hold(c: psycopg.Connection) -> store.Reservation:
            return store.reserve(c, book.id, w, D("0.70"), 600, partial=True)

        r = in_tx(runtime, hold)
        assert isinstance(r, store.Reservation)
        # Capture a little less than held (the rated amount), releasing the rest.
        in_tx(runtime, lambda c: store.capture(c, book.id, w, str(r.id), r.amount - D("0.05"), DAY))

    errors = _threads(64, session)
    assert errors and all(isinstance(e, InsufficientFunds) for e in errors)

    def totals(c: psycopg.Connection) -> object:
        return c.execute(
            "select coalesce(sum(captured), 0), count(*) from wallet_reservations"
            " where book_id = %s and wallet_id = %s and status = 'captured'",
            (book.id, wallet.id),
        ).fetchone()

    captured = in_tx(runtime, totals)
    assert isinstance(captured, tuple)
    final = in_tx(runtime, lambda c: store.get_wallet(c, book.id, w))
    assert isinstance(final, store.Wallet)
    assert final.balance >= 0
    assert final.balance == D("10.00") - captured[0]
    assert captured[1] == 64 - len(errors)
    # The ledger agrees: the wallet account's postings sum to the same balance.
    ledger = in_tx(
        runtime,
        lambda c: c.execute(
            "select -sum(amount) from postings where book_id = %s and account_id = %s",
            (book.id, wallet.account_id),
        ).fetchone(),
    )
    assert ledger == (final.balance,)


def test_a_recharge_extends_validity_and_lapsed_value_goes_to_breakage(
    runtime: Runtime, book: BookFixture
) -> None:
    """Mar 1: 10.00 valid 30 days (through Mar 30). Mar 20: 5.00 valid 7 days does not
    shorten it. A hold of 3.00 open across the end: the sweep on Apr 2 lapses only what
    is available (12.00, dated Mar 31); the held 3.00 lapses once the hold is released."""
    wallet = new_wallet(runtime, book)
    w = str(wallet.id)
    account = wallet_account(wallet.id)
    with unit_of_work(runtime.connection) as uow:
        c = uow.conn
        first, _ = store.top_up(c, book.id, w, D("10.00"), date(2026, 3, 1), valid_days=30)
        assert first.valid_until == date(2026, 3, 30)
        second, _ = store.top_up(c, book.id, w, D("5.00"), date(2026, 3, 20), valid_days=7)
        assert second.valid_until == date(2026, 3, 30)
        hold = store.reserve(c, book.id, w, D("3.00"), 600, today=date(2026, 3, 30))
        assert store.lapse_expired_value(c, book.id, date(2026, 3, 30)) == 0  # its last day
        assert store.lapse_expired_value(c, book.id, date(2026, 4, 2)) == 1
        after = store.get_wallet(c, book.id, w)
        assert (after.balance, after.held, after.available) == (D("3.00"), D("3.00"), D("0.00"))
        assert after.valid_until == date(2026, 3, 30)  # value is still under it
        store.release(c, book.id, w, str(hold.id))
        assert store.lapse_expired_value(c, book.id, date(2026, 4, 2)) == 1
        done = store.get_wallet(c, book.id, w)
        assert (done.balance, done.valid_until) == (D("0.00"), None)
        breakage = c.execute(
            "select e.effective_date, p.amount from journal_entries e join postings p"
            " on p.book_id = e.book_id and p.entry_id = e.id join accounts a"
            " on a.book_id = p.book_id and a.id = p.account_id"
            " where e.book_id = %s and a.name = %s and p.amount > 0 order by p.amount desc",
            (book.id, account),
        ).fetchall()
        assert breakage == [(date(2026, 3, 31), D("12.00")), (date(2026, 3, 31), D("3.00"))]
        # A later recharge with no validity never lapses; one after a lapse starts afresh.
        renewed, _ = store.top_up(c, book.id, w, D("4.00"), date(2026, 4, 5))
        assert renewed.valid_until is None
        assert store.lapse_expired_value(c, book.id, date(2027, 1, 1)) == 0
        assert store.get_wallet(c, book.id, w).balance == D("4.00")
        uow.commit()


def test_a_top_up_after_validity_ended_lapses_the_old_value_first(
    runtime: Runtime, book: BookFixture
) -> None:
    wallet = new_wallet(runtime, book)
    w = str(wallet.id)
    with unit_of_work(runtime.connection) as uow:
        c = uow.conn
        store.top_up(c, book.id, w, D("10.00"), date(2026, 3, 1), valid_days=10)
        again, _ = store.top_up(c, book.id, w, D("6.00"), date(2026, 3, 15), valid_days=10)
        assert (again.balance, again.valid_until) == (D("6.00"), date(2026, 3, 24))
        lapsed = c.execute(
            "select e.effective_date, p.amount from journal_entries e join postings p"
            " on p.book_id = e.book_id and p.entry_id = e.id join accounts a"
            " on a.book_id = p.book_id and a.id = p.account_id"
            " where e.book_id = %s and a.name = %s",
            (book.id, BREAKAGE),
        ).fetchall()
        assert lapsed == [(date(2026, 3, 11), D("-10.00"))]
        with pytest.raises(InvalidBillingRequest, match="valid_days"):
            store.top_up(c, book.id, w, D("1.00"), date(2026, 3, 15), valid_days=0)


def test_a_top_up_charges_the_customers_tax_on_top_and_usage_posts_net(
    runtime: Runtime, book: BookFixture
) -> None:
    """20 % VAT: 10.00 of value costs 12.00 (Tax-Payable 2.00); a capture of 3.33 then
    posts 3.33 net to Income:Usage and breakage the 6.67 left, with no tax again."""
    with unit_of_work(runtime.connection) as uow:
        c = uow.conn
        customer = new_customer(c, book.id, tax_rate="0.20")
        wallet = store.create_wallet(c, book.id, str(customer.id), "USD")
        w = str(wallet.id)
        account = wallet_account(wallet.id)
        topped, entry_id = store.top_up(c, book.id, w, D("10.00"), DAY, "card")
        assert lines(c, book.id, entry_id) == {
            ("Assets:Clearing:Manual", D("12.00")),
            (account, D("-10.00")),
            ("Liabilities:Tax-Payable", D("-2.00")),
        }
        assert topped.balance == D("10.00")
        hold = store.reserve(c, book.id, w, D("5.00"), 60)
        used = store.capture(c, book.id, w, str(hold.id), D("3.33"), DAY)
        assert used.entry_id is not None
        assert lines(c, book.id, used.entry_id) == {(account, D("3.33")), (USAGE, D("-3.33"))}
        _, expired = store.expire_value(c, book.id, w, DAY, None)
        assert lines(c, book.id, expired) == {(account, D("6.67")), (BREAKAGE, D("-6.67"))}
        uow.commit()


class _Counting(psycopg.Cursor[Any]):
    """Every statement a connection sends, in order (round trips of one execute each)."""

    sent: list[str] = []

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        _Counting.sent.append(str(query))
        return super().execute(query, params, **kwargs)


def test_a_hold_and_a_capture_are_one_round_trip_each(runtime: Runtime, book: BookFixture) -> None:
    """The real-time path (a switch's authorization): one statement to hold, one to
    capture, once the process has seen the wallet and the book's Usage account; the
    book's date is not read for a wallet without a validity."""
    wallet = new_wallet(runtime, book, top_up="10.00", threshold="1.00")
    w = str(wallet.id)
    with unit_of_work(runtime.connection) as uow:
        c = uow.conn
        first = store.reserve(c, book.id, w, D("2.00"), 60)  # the process learns the wallet
        store.capture(c, book.id, w, str(first.id), D("1.00"), DAY)  # and Income:Usage
        c.cursor_factory = _Counting
        _Counting.sent = []
        hold = store.reserve(c, book.id, w, D("0.50"), 60, wall_clock_today=DAY)
        assert len(_Counting.sent) == 1 and "ab_wallet_hold" in _Counting.sent[0]
        _Counting.sent = []
        store.capture(c, book.id, w, str(hold.id), D("0.37"), DAY)
        assert len(_Counting.sent) == 1 and "ab_wallet_capture" in _Counting.sent[0]
        c.cursor_factory = psycopg.Cursor
        after = store.get_wallet(c, book.id, w)
        assert (after.balance, after.held, after.available) == (D("8.63"), D("0"), D("8.63"))
        uow.commit()


def test_a_capture_posts_the_entry_post_entry_would(runtime: Runtime, book: BookFixture) -> None:
    """The function inserts the entry the ledger's path builds: same postings, customer,
    document and dimensions, same request hash; billing's writer mark stays set for the
    rest of the transaction, and the entry waits to be sealed like any other."""
    wallet = new_wallet(runtime, book, top_up="10.00")
    w = str(wallet.id)
    with unit_of_work(runtime.connection) as uow:
        c = uow.conn
        hold = store.reserve(c, book.id, w, D("5.00"), 60)
        captured = store.capture(c, book.id, w, str(hold.id), D("3.40"), DAY)
        assert captured.entry_id is not None
        assert c.execute("select current_setting('activebilling.writer', true)").fetchone() == (
            "billing",
        )
        entry = consumption_entry(
            DAY,
            wallet.id,
            str(wallet.customer_id),
            Money(D("3.40"), "USD"),
            f"reservation:{hold.id}",
        )
        posted = get_entry(c, book.id, str(captured.entry_id))
        assert (posted.effective_date, posted.memo, posted.postings) == (
            entry.effective_date,
            entry.memo,
            entry.postings,
        )
        assert posted.idempotency_key == f"auto:{captured.entry_id}"
        stored = c.execute(
            "select request_hash, (select count(*) from unsealed_entries u"
            " where u.book_id = e.book_id and u.entry_id = e.id)"
            " from journal_entries e where book_id = %s and id = %s",
            (book.id, captured.entry_id),
        ).fetchone()
        assert stored == (request_hash(entry), 1)
        uow.commit()


def test_a_wallet_rolled_back_after_the_process_saw_it_is_not_found(
    runtime: Runtime, book: BookFixture
) -> None:
    wallet = new_wallet(runtime, book, top_up="10.00")
    with unit_of_work(runtime.connection) as uow:
        customer = new_customer(uow.conn, book.id, tax_rate="0")
        gone = store.create_wallet(uow.conn, book.id, str(customer.id), "USD")
        assert store.wallet_currency(uow.conn, book.id, str(gone.id)) == "USD"  # now known
    hold = in_tx(runtime, lambda c: store.reserve(c, book.id, str(wallet.id), D("1.00"), 60))
    assert isinstance(hold, store.Reservation)
    with pytest.raises(NotFound):
        in_tx(runtime, lambda c: store.reserve(c, book.id, str(gone.id), D("1.00"), 60))
    with pytest.raises(NotFound):
        in_tx(runtime, lambda c: store.capture(c, book.id, str(gone.id), str(hold.id), D("1"), DAY))
    with pytest.raises(NotFound):
        in_tx(
            runtime,
            lambda c: store.capture(c, book.id, str(wallet.id), str(uuid.uuid4()), D("1"), DAY),
        )


def test_a_hold_reads_the_books_simulated_date_before_the_wall_clock(
    runtime: Runtime, book: BookFixture, database_url: str
) -> None:
    """Valid through Mar 30: on a book whose clock says Mar 30 a hold is granted though
    the wall clock says Apr 2; once the book's clock says Mar 31 it is refused."""
    wallet = new_wallet(runtime, book)
    w = str(wallet.id)
    in_tx(runtime, lambda c: store.top_up(c, book.id, w, D("10.00"), DAY, valid_days=30))

    def set_clock(day: str) -> None:
        with psycopg.connect(database_url) as owner:
            owner.execute(
                "update books set clock_mode = 'simulated', clock_date = %s where id = %s",
                (day, book.id),
            )

    def hold(c: psycopg.Connection) -> store.Reservation:
        return store.reserve(c, book.id, w, D("1.00"), 60, wall_clock_today=date(2026, 4, 2))

    set_clock("2026-03-30")
    assert isinstance(in_tx(runtime, hold), store.Reservation)
    set_clock("2026-03-31")
    with pytest.raises(InsufficientFunds, match="lapsed on 2026-03-31"):
        in_tx(runtime, hold)


def test_the_capture_function_refuses_an_entry_that_does_not_take_the_capture(
    runtime: Runtime, book: BookFixture
) -> None:
    """A raw call that captures 1.00 with no entry (or one for another amount) is
    refused: the reservation's `captured` always equals what the ledger took."""
    wallet = new_wallet(runtime, book, top_up="10.00")
    hold = in_tx(runtime, lambda c: store.reserve(c, book.id, str(wallet.id), D("5.00"), 60))
    assert isinstance(hold, store.Reservation)
    call = (
        "select outcome from ab_wallet_capture(%s, %s, %s, 1.00, %s, 'USD', %s"
        + ", null" * 15
        + ")"
    )
    args = (book.id, wallet.id, hold.id, wallet.account_id, wallet.customer_id)
    with pytest.raises(psycopg.errors.CheckViolation, match=r"does not take 1\.00"):
        in_tx(runtime, lambda c: c.execute(call, args))


@contextmanager
def autocommitted(runtime: Runtime) -> Iterator[psycopg.Connection]:
    """A pool connection in autocommit mode (as a real-time client keeps one)."""
    with runtime.connection() as c:
        c.autocommit = True
        try:
            yield c
        finally:
            c.autocommit = False


def test_on_an_autocommit_connection_a_hold_and_a_capture_are_one_statement_each(
    runtime: Runtime, book: BookFixture
) -> None:
    """No BEGIN or COMMIT around the call: the function is the unit of work, and
    what it did is committed when it answers."""
    wallet = new_wallet(runtime, book, top_up="10.00", threshold="1.00")
    w = str(wallet.id)
    with autocommitted(runtime) as c:
        first = store.reserve(c, book.id, w, D("2.00"), 60)
        store.capture(c, book.id, w, str(first.id), D("1.00"), DAY)
        c.cursor_factory = _Counting
        _Counting.sent = []
        hold = store.reserve(c, book.id, w, D("0.50"), 60)
        captured = store.capture(c, book.id, w, str(hold.id), D("0.37"), DAY)
        c.cursor_factory = psycopg.Cursor
        assert len(_Counting.sent) == 2
        assert all("ab_wallet_alone(fell_low)" in q for q in _Counting.sent)
        assert "ab_wallet_hold" in _Counting.sent[0] and "ab_wallet_capture" in _Counting.sent[1]
        with pytest.raises(InsufficientFunds):
            store.reserve(c, book.id, w, D("8.64"), 60)
    assert captured.entry_id is not None
    # Seen from another connection: committed, exact to the cent.
    after = in_tx(runtime, lambda c: store.get_wallet(c, book.id, w))
    assert isinstance(after, store.Wallet)
    assert (after.balance, after.held) == (D("8.63"), D("0"))
    assert in_tx(runtime, lambda c: lines(c, book.id, captured.entry_id)) == {
        (wallet_account(wallet.id), D("0.37")),
        (USAGE, D("-0.37")),
    }


def test_on_an_autocommit_connection_a_low_balance_crossing_commits_with_its_event(
    runtime: Runtime, book: BookFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The crossing's outbox event is Python's: the one statement refuses it and the
    hold runs again in a transaction with the event — or not at all when the event
    cannot be written."""
    wallet = new_wallet(runtime, book, top_up="10.00", threshold="3.00")
    w = str(wallet.id)

    def fails(*_: object) -> None:
        raise RuntimeError("outbox down")

    with autocommitted(runtime) as c:
        monkeypatch.setattr(store, "record_event", fails)
        with pytest.raises(RuntimeError, match="outbox down"):
            store.reserve(c, book.id, w, D("8.00"), 60)
        assert store.list_reservations(c, book.id, w) == []
        assert store.events(c, book.id, w) == []
        monkeypatch.undo()
        hold = store.reserve(c, book.id, w, D("8.00"), 60)
        assert not c.info.transaction_status  # idle: committed
        store.capture(c, book.id, w, str(hold.id), D("8.00"), DAY)  # still low: one statement
        with c.transaction():  # the caller's own transaction: the event goes in it
            store.top_up(c, book.id, w, D("5.00"), DAY)  # available 7.00: re-armed
            store.reserve(c, book.id, w, D("5.00"), 60)
    with runtime.connection() as c:
        assert [e.available for e in store.events(c, book.id, w)] == [D("2.00"), D("2.00")]
        announced = c.execute(
            "select data -> 'object' ->> 'available' from events"
            " where book_id = %s and type = 'wallet.low_balance'",
            (book.id,),
        ).fetchall()
        assert announced == [("2.00",), ("2.00",)]
        final = store.get_wallet(c, book.id, w)
        assert (final.balance, final.held, final.low_balance) == (D("7.00"), D("5.00"), True)
