"""Value-added services and vouchers (issue 9, item 5).

**Add-ons** — a one-off price (no interval, no metric), e.g. a roaming pack:

- sold from a prepaid wallet (`POST /v1/wallets/{id}/add-ons`): the wallet is
  locked, and a shortfall of its available balance (balance less open holds)
  is refused with 402 and writes nothing; else Prepaid-Wallet:W<id> / the
  product's revenue account (`Income:Usage` or `Income:Subscriptions`), net,
  like any wallet consumption (tax was charged on the top-up: billing.wallets);
- or billed postpaid (`POST /v1/subscriptions/{id}/add-ons`): a line waiting in
  the subscription's pending draft, carried by its next invoice (AR / revenue,
  Tax-Payable), its service from today to the end of the current period.

**Vouchers** (`POST /v1/vouchers`): a batch of codes sold for cash (a
distributor pays their face value): cash / `Liabilities:Prepaid-Wallet:Vouchers:<CUR>`
(a liability with a minimum balance of 0: value owed to whoever redeems). The
codes are returned once and stored as SHA-256 hashes. Redeeming one
(`POST /v1/wallets/{id}/voucher-redemptions {"code"}`) moves its value to the
wallet: Vouchers / Prepaid-Wallet:W<id>. A code is redeemed once: the single
`UPDATE … WHERE redeemed_at IS NULL` that claims it lets one of any number of
concurrent redemptions win; the others see it redeemed (409).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import psycopg

from billing.errors import DocumentState, InsufficientFunds, InvalidBillingRequest
from billing.payments import cash_account_of
from billing.postgres.catalog import get_price
from billing.postgres.invoices import LineSpec, create_draft
from billing.postgres.posting import post_entry
from billing.postgres.wallets import Wallet, _after_change, get_wallet
from billing.rating import rate
from billing.wallets import WALLET, wallet_account, wallet_doc
from ledger.entries import Posting, build_entry
from ledger.errors import NotFound
from ledger.money import Money, check_currency
from ledger.postgres.books import AccountSpec, ensure_account

__all__ = [
    "AddOn",
    "VoucherBatch",
    "add_on_to_next_invoice",
    "issue_vouchers",
    "redeem_voucher",
    "sell_add_on",
]

MAX_VOUCHERS = 1000


@dataclass(frozen=True, slots=True)
class AddOn:
    id: uuid.UUID
    price_id: uuid.UUID
    quantity: Decimal
    amount: Money
    revenue_account: str
    wallet_id: uuid.UUID | None = None
    entry_id: uuid.UUID | None = None
    subscription_id: uuid.UUID | None = None
    invoice_id: uuid.UUID | None = None


def _one_off(
    conn: psycopg.Connection, book_id: uuid.UUID, ref: str, quantity: Decimal, currency: str
) -> tuple[uuid.UUID, Money, str, str]:
    """The price's id, amount for `quantity`, revenue account and product name."""
    if not quantity.is_finite() or quantity <= 0:
        raise InvalidBillingRequest(f"quantity must be greater than zero, got {quantity}")
    price = get_price(conn, book_id, ref)
    if price.recurring or price.metric is not None:
        raise InvalidBillingRequest(
            f"price {ref} is recurring or metered; an add-on is a one-off price", price=ref
        )
    if not price.active:
        raise InvalidBillingRequest(f"price {ref} is inactive", price=ref)
    if price.currency != currency:
        raise InvalidBillingRequest(
            f"price {ref} is in {price.currency}, not {currency}", price=ref
        )
    row = conn.execute(
        "select name, revenue_account from products where book_id = %s and id = %s",
        (book_id, price.product_id),
    ).fetchone()
    assert row is not None
    amount = rate(price.charge(), quantity).quantized()
    return price.id, amount, row[1], row[0]


def _record(conn: psycopg.Connection, book_id: uuid.UUID, sale: AddOn, customer: uuid.UUID) -> None:
    conn.execute(
        "insert into add_on_sales (book_id, id, customer_id, price_id, quantity, amount,"
        " currency, wallet_id, subscription_id, entry_id, invoice_id)"
        " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            book_id,
            sale.id,
            customer,
            sale.price_id,
            sale.quantity,
            sale.amount.amount,
            sale.amount.currency,
            sale.wallet_id,
            sale.subscription_id,
            sale.entry_id,
            sale.invoice_id,
        ),
    )


def sell_add_on(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    wallet_ref: str,
    price_ref: str,
    quantity: Decimal,
    on: date,
) -> tuple[AddOn, Wallet]:
    wallet = get_wallet(conn, book_id, wallet_ref, lock=True)
    price_id, amount, revenue, name = _one_off(conn, book_id, price_ref, quantity, wallet.currency)
    if amount.amount > wallet.available:
        raise InsufficientFunds(
            f"the wallet has {wallet.available} {wallet.currency} available, less than"
            f" the {amount.amount} the add-on costs",
            available=str(wallet.available),
            requested=str(amount.amount),
        )
    sale_id = uuid.uuid4()
    customer = str(wallet.customer_id)
    dims = {"via": f"add_on:{sale_id}"}
    doc = wallet_doc(wallet.id)
    entry_id = None
    if amount.amount > 0:
        entry = build_entry(
            on,
            f"Add-on {name} from wallet {wallet.id}",
            [
                Posting(wallet_account(wallet.id), amount, customer, doc, dims),
                Posting(revenue, -amount, customer, doc, dims),
            ],
            idempotency_key=f"add_on:{sale_id}",
        )
        entry_id = post_entry(conn, book_id, entry).id
    sale = AddOn(sale_id, price_id, quantity, amount, revenue, wallet.id, entry_id)
    _record(conn, book_id, sale, wallet.customer_id)
    return sale, _after_change(conn, book_id, get_wallet(conn, book_id, wallet_ref))


def add_on_to_next_invoice(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    subscription_ref: str,
    price_ref: str,
    quantity: Decimal,
    today: date,
) -> AddOn:
    # Imported here: subscriptions builds on the billing run, which builds on this package.
    from billing.postgres.billing_runs import PENDING
    from billing.postgres.subscriptions import _live, _row, current_period

    row = _row(conn, book_id, subscription_ref, lock=True)
    _live(row, today, "add to it")
    price_id, amount, revenue, name = _one_off(conn, book_id, price_ref, quantity, row["currency"])
    period = current_period(conn, book_id, row)
    end = period.end if period.end > today else row["next_period_start"]
    if end <= today:
        raise DocumentState("the subscription has no period in progress to add to")
    draft = create_draft(
        conn,
        book_id,
        str(row["customer_id"]),
        [
            LineSpec(
                f"{name} (add-on)",
                quantity,
                (amount.amount / quantity).quantize(Decimal("1e-12")).normalize(),
                today,
                end,
                revenue,
                "one_off",
                price_id,
            )
        ],
        memo=f"Add-on {name}, billed with the next period",
        metadata={PENDING: "add_on"},
        subscription_id=row["id"],
    )
    assert draft is not None
    sale = AddOn(uuid.uuid4(), price_id, quantity, amount, revenue, None, None, row["id"], draft.id)
    _record(conn, book_id, sale, row["customer_id"])
    return sale


# --- vouchers --------------------------------------------------------------------------


def _hash(code: str) -> str:
    return hashlib.sha256(code.strip().upper().encode()).hexdigest()


def voucher_account(currency: str) -> str:
    return f"{WALLET}:Vouchers:{currency}"


@dataclass(frozen=True, slots=True)
class VoucherBatch:
    id: uuid.UUID
    amount: Money  # each
    codes: tuple[str, ...]
    entry_id: uuid.UUID


def issue_vouchers(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    currency: str,
    amount: Decimal,
    count: int,
    on: date,
    payment_method: str = "bank_transfer",
) -> VoucherBatch:
    currency = check_currency(currency)
    cash = cash_account_of(payment_method)
    if not 1 <= count <= MAX_VOUCHERS:
        raise InvalidBillingRequest(f"count must be 1 to {MAX_VOUCHERS}, got {count}")
    each = Money.exact(amount, currency)
    if each.amount <= 0:
        raise InvalidBillingRequest("a voucher's amount must be greater than zero")
    account = voucher_account(currency)
    ensure_account(
        conn,
        book_id,
        AccountSpec(name=account, currencies=[currency], min_balance=Decimal(0)),
    )
    batch = uuid.uuid4()
    total = Money(each.amount * count, currency)
    dims = {"via": f"voucher_batch:{batch}"}
    entry = build_entry(
        on,
        f"{count} vouchers of {each.amount} {currency} sold",
        [Posting(cash, total, None, None, dims), Posting(account, -total, None, None, dims)],
        idempotency_key=f"voucher_batch:{batch}",
    )
    entry_id = post_entry(conn, book_id, entry).id
    codes = tuple("-".join(secrets.token_hex(2).upper() for _ in range(4)) for _ in range(count))
    with conn.cursor() as cur:
        cur.executemany(
            "insert into vouchers (book_id, id, batch_id, code_hash, currency, amount,"
            " issue_entry_id) values (%s, %s, %s, %s, %s, %s, %s)",
            [
                (book_id, uuid.uuid4(), batch, _hash(c), currency, each.amount, entry_id)
                for c in codes
            ],
        )
    return VoucherBatch(batch, each, codes, entry_id)


def redeem_voucher(
    conn: psycopg.Connection, book_id: uuid.UUID, wallet_ref: str, code: str, on: date
) -> tuple[Wallet, Money]:
    wallet = get_wallet(conn, book_id, wallet_ref)
    digest = _hash(code)
    claimed = conn.execute(
        "update vouchers set redeemed_wallet_id = %s, redeemed_at = now()"
        " where book_id = %s and code_hash = %s and redeemed_at is null and currency = %s"
        " returning id, amount",
        (wallet.id, book_id, digest, wallet.currency),
    ).fetchone()
    if claimed is None:
        row = conn.execute(
            "select currency, redeemed_at from vouchers where book_id = %s and code_hash = %s",
            (book_id, digest),
        ).fetchone()
        if row is None:
            raise NotFound("no voucher has this code in this book")
        if row[1] is not None:
            raise DocumentState("this voucher has already been redeemed")
        raise InvalidBillingRequest(
            f"the voucher is in {row[0]}; the wallet holds {wallet.currency}"
        )
    voucher_id, value = claimed
    money = Money(value, wallet.currency)
    dims = {"via": f"voucher:{voucher_id}"}
    customer = str(wallet.customer_id)
    doc = wallet_doc(wallet.id)
    entry = build_entry(
        on,
        f"Voucher redeemed into wallet {wallet.id}",
        [
            Posting(voucher_account(wallet.currency), money, customer, doc, dims),
            Posting(wallet_account(wallet.id), -money, customer, doc, dims),
        ],
        idempotency_key=f"voucher:{voucher_id}",
    )
    entry_id = post_entry(conn, book_id, entry).id
    conn.execute(
        "update vouchers set redemption_entry_id = %s where book_id = %s and id = %s",
        (entry_id, book_id, voucher_id),
    )
    locked = get_wallet(conn, book_id, wallet_ref, lock=True)
    return _after_change(conn, book_id, locked), money
