"""The Beancount export: the book as a file that beancount 3.x loads with zero errors.

Order. Transactions are written in effective-date order (then seal sequence,
then recorded time), not in sealed order. Beancount sorts by date anyway, but
writing in date order lets one pass over a server-side cursor keep running
balances per account and currency and emit the month-end `balance` assertions
in place: memory stays constant (the balances dict is bounded by the chart),
and every assertion is the exact sum of the transactions written before it.
The whole export reads one REPEATABLE READ snapshot, so entries committed
meanwhile can neither appear half-way nor unbalance an assertion.

Conventions:
- Dates are the book's: `open` is dated at the account's opening or its first
  posting, whichever is earlier (accounts are created in real time, entries
  may be back-dated); on a simulated clock, where the machine's date says
  nothing about the book, an account never posted to opens on the book's
  first entry date (its today when it has none). Its currency constraint is
  the account's own list, else the currencies it holds.
- `close` is dated at the account's closing or its last posting, whichever is
  later (on a simulated clock the book's today stands for the closing); no
  assertion is written for a closed account after that date.
- The payee is the customer's name (the first posting's that carries a
  customer); each posting keeps the customer id as `customer` metadata.
- Every amount is written as stored; nothing is left to Beancount to infer.
- A `balance` directive is checked at the *beginning* of its date, so the
  assertion for month end M is dated the first day of M+1. Each assertion
  states an explicit zero tolerance (`~ 0`): Beancount would otherwise allow
  twice half the last digit (0.01 on a USD amount), so a one-cent difference
  would pass. As in Beancount, an assertion covers the account and its
  sub-accounts.
- A range export (`date_from`) opens with one transaction dated the day
  before, bringing forward every non-zero balance exactly (no `pad`): the
  ledger balances per currency, so those legs balance by themselves.
"""

from __future__ import annotations

import calendar
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import psycopg

from adapters.exports.feed import CUSTOMER_JOIN
from ledger.currencies import MINOR_UNITS

CHUNK = 1 << 16  # bytes of text handed out at a time
ITERSIZE = 20000  # rows fetched per round trip of the server-side cursor

_COMPONENT_BAD = re.compile(r"[^A-Za-z0-9-]")
_LINK_BAD = re.compile(r"[^A-Za-z0-9\-_/.]")
_ROOTS = ("Assets", "Liabilities", "Equity", "Income", "Expenses")


def beancount_account(name: str) -> str:
    """Our account name as a valid Beancount account name (stable, idempotent).

    Each component must start with an upper-case letter or digit and hold only
    letters, digits and dashes; ours already do (a database check), so valid
    names map to themselves.
    """
    parts = name.split(":")
    root = parts[0] if parts[0] in _ROOTS else "Equity"
    out = [root]
    for part in parts[1:] if parts[0] in _ROOTS else parts:
        cleaned = _COMPONENT_BAD.sub("-", part) or "X"
        if not (cleaned[0].isupper() or cleaned[0].isdigit()):
            cleaned = (
                "X" + cleaned if not cleaned[0].isalpha() else cleaned[0].upper() + cleaned[1:]
            )
        out.append(cleaned)
    if len(out) == 1:
        out.append("X")
    return ":".join(out)


def safe_link(value: str) -> str:
    """A document id as a Beancount link or tag body ([A-Za-z0-9-_/.] only)."""
    return _LINK_BAD.sub("-", value).strip("-") or "x"


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def amount_text(amount: Decimal) -> str:
    return format(amount, "f")


def assertion_text(amount: Decimal, currency: str) -> str:
    """The amount with at least the currency's minor-unit places (as a reader expects)."""
    places = MINOR_UNITS.get(currency, 2)
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and -exponent < places:
        amount = amount.quantize(Decimal(1).scaleb(-places))
    return format(amount, "f")


def month_end(day: date) -> date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


@dataclass
class _Account:
    id: uuid.UUID
    name: str  # Beancount name
    currencies: list[str]  # own constraint, or those it held
    open_date: date
    close_date: date | None
    covered: list[uuid.UUID] = field(default_factory=list)  # itself and its sub-accounts
    first_use: dict[str, date] = field(default_factory=dict)


@dataclass(frozen=True)
class ExportRange:
    date_from: date | None = None
    date_to: date | None = None


def begin_snapshot(conn: psycopg.Connection) -> None:
    """Start the export's read-only snapshot (must be the transaction's first statement)."""
    conn.rollback()
    conn.execute("set transaction isolation level repeatable read, read only")


def export_beancount(
    conn: psycopg.Connection, book_id: uuid.UUID, export: ExportRange = ExportRange()
) -> Iterator[str]:
    """Yield the file in chunks. Call inside `begin_snapshot`'s transaction."""
    writer = _Writer()
    book = conn.execute(
        "select name, base_currency, clock_date from books where id = %s", (book_id,)
    ).fetchone()
    if book is None:
        return
    name, base_currency, clock_date = book
    date_to = export.date_to or date.max
    usage = conn.execute(
        "select account_id, currency, min(balance_date), max(balance_date)"
        " from account_balances where book_id = %s and balance_date <= %s"
        " group by account_id, currency",
        (book_id, date_to),
    ).fetchall()
    span = conn.execute(
        "select min(effective_date), max(effective_date) from journal_entries"
        " where book_id = %s and effective_date <= %s",
        (book_id, date_to),
    ).fetchone()
    first_day, last_day = (span[0], span[1]) if span else (None, None)
    # A simulated book's time is its clock: its entries, else its today.
    book_time = None if clock_date is None else (first_day or clock_date, clock_date)
    accounts = _load_accounts(conn, book_id, usage, export.date_to, book_time)
    by_id = {a.id: a for a in accounts}

    yield from writer.add(
        f"; Active Billing export of book {quote(name)} ({book_id})\n"
        f"; range: {export.date_from or 'start'} .. {export.date_to or 'end'}\n"
        f'option "title" {quote(name)}\n'
        f'option "operating_currency" {quote(base_currency)}\n\n'
    )
    # The book's exchange rates as Beancount prices (units of quote per one base), so
    # its reports can convert; postings stay in their own currencies, balanced in each.
    prices = conn.execute(
        "select date, base, quote, rate from fx_rates where book_id = %s and date <= %s"
        " order by date, base, quote",
        (book_id, date_to),
    ).fetchall()
    currencies = sorted(
        {c for _, c, _, _ in usage}
        | {base_currency}
        | {r[1] for r in prices}
        | {r[2] for r in prices}
    )
    earliest = min(
        [a.open_date for a in accounts]
        + [first_day or date(1970, 1, 1)]
        + [r[0] for r in prices[:1]]
    )
    for currency in currencies:
        yield from writer.add(f"{earliest.isoformat()} commodity {currency}\n")
    yield from writer.add("\n")
    for account in accounts:
        constraint = (" " + ",".join(account.currencies)) if account.currencies else ""
        yield from writer.add(f"{account.open_date.isoformat()} open {account.name}{constraint}\n")
    yield from writer.add("\n")
    for on, base, quote_currency, rate in prices:
        yield from writer.add(f"{on.isoformat()} price {base} {rate} {quote_currency}\n")
    if prices:
        yield from writer.add("\n")

    balances: dict[tuple[uuid.UUID, str], Decimal] = {}
    start = export.date_from
    if start is not None:
        yield from _brought_forward(conn, book_id, start, by_id, balances, writer)
    # The month ends to assert: from the first month in range to the last one.
    begin = start or first_day
    end_limit = export.date_to or (month_end(last_day) if last_day else None)
    pending = month_end(begin) if begin else None

    # What the month's postings add to each balance, summed by PostgreSQL in
    # the export's snapshot: the same postings the transactions below write.
    deltas: dict[date, list[tuple[uuid.UUID, str, Decimal]]] = {}
    for account_id, currency, month, total in conn.execute(
        "select account_id, currency, date_trunc('month', effective_date)::date, sum(amount)"
        "  from postings where book_id = %s and effective_date >= %s and effective_date <= %s"
        " group by 1, 2, 3",
        (book_id, start or date.min, date_to),
    ):
        deltas.setdefault(month, []).append((account_id, currency, total))

    def add_month(month: date) -> None:
        for account_id, currency, total in deltas.pop(month, ()):
            key = (account_id, currency)
            balances[key] = balances.get(key, Decimal(0)) + total

    def assertions(upto: date) -> Iterator[str]:
        nonlocal pending
        while pending is not None and end_limit is not None and pending < upto:
            if pending > end_limit:
                pending = None
                return
            add_month(pending.replace(day=1))
            yield from writer.add(_assertions(pending + timedelta(days=1), accounts, balances))
            pending = month_end(pending + timedelta(days=1))

    # The query joins and sorts every posting in range: in memory, not in
    # batches on disk (local to the export's own read-only transaction).
    conn.execute("select set_config('work_mem', '64MB', true)")
    cursor = conn.cursor(name=f"ab_beancount_{uuid.uuid4().hex[:8]}")
    cursor.itersize = ITERSIZE
    cursor.execute(
        POSTINGS_IN_ORDER,
        (list(by_id), [a.name for a in by_id.values()], book_id, start or date.min, date_to),
    )
    head: tuple[Any, ...] = ()
    lines: list[str] = []
    payees: list[str] = []
    documents: list[str] = []
    for row in cursor:
        if row[0] is not None:  # the first posting of the next entry
            if head:
                yield from assertions(head[1])
                yield from writer.add(_transaction(head, payees, documents, lines))
            head, lines, payees, documents = row[:8], [], [], []
        if row[10] is None:
            raise ValueError(f"entry {head[0]} posts to an account the export does not open")
        lines.append(row[10])
        if row[8] is not None:
            payees.append(row[8])
        if row[9] is not None:
            documents.append(row[9])
    if head:
        yield from assertions(head[1])
        yield from writer.add(_transaction(head, payees, documents, lines))
    cursor.close()
    if end_limit is not None:
        yield from assertions(date.max)
        if export.date_to is not None and export.date_to != month_end(export.date_to):
            # The closing balances of a range that ends mid-month: its last
            # month's postings, up to date_to, are not in an assertion yet.
            for month in list(deltas):
                add_month(month)
            yield from writer.add(
                _assertions(export.date_to + timedelta(days=1), accounts, balances)
            )
    closes = [a for a in accounts if a.close_date is not None]
    if closes:
        yield from writer.add("\n")
    for account in closes:
        assert account.close_date is not None
        yield from writer.add(f"{account.close_date.isoformat()} close {account.name}\n")
    yield from writer.flush()


def _quoted(column: str) -> str:
    """SQL for `quote(column)`."""
    return f"""'"' || replace(replace({column}, '\\', '\\\\'), '"', '\\"') || '"'"""


# The book's postings in export order, each with its line(s) of the file
# written by PostgreSQL (the accounts' Beancount names come in as an array
# pair). The entry's own fields come on its first posting only (NULL on the
# others, nothing to decode): one sort serves the order and that lag.
# recorded-at is `datetime.isoformat()` in UTC (microseconds only when not 0).
POSTINGS_IN_ORDER = f"""
select case when x.first then x.id::text end, case when x.first then x.effective_date end,
       case when x.first
            then to_char(x.recorded_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
                 || case when date_trunc('second', x.recorded_at) = x.recorded_at then ''
                         else to_char(x.recorded_at at time zone 'UTC', '.US') end
                 || '+00:00' end,
       case when x.first then x.memo end, case when x.first then x.metadata::text end,
       case when x.first then x.reverses_entry_id::text end,
       case when x.first then x.seq end, case when x.first then x.hash end,
       x.payee, x.document, x.line
  from (select e.id, e.effective_date, e.recorded_at, e.memo, e.metadata, e.reverses_entry_id,
               s.seq, s.hash, p.line_no, coalesce(c.name, p.customer_id) as payee, p.document,
               '  ' || m.name || '  ' || p.amount::text || ' ' || p.currency || E'\\n'
               || coalesce('    customer: ' || {_quoted("p.customer_id")} || E'\\n', '')
               || coalesce('    document: ' || {_quoted("p.document")} || E'\\n', '') as line,
               e.id is distinct from lag(e.id) over w as first
          from journal_entries e
          join postings p on p.book_id = e.book_id and p.entry_id = e.id
          left join seals s on s.book_id = e.book_id and s.entry_id = e.id
          {CUSTOMER_JOIN}
          left join unnest(%s::uuid[], %s::text[]) as m(id, name) on m.id = p.account_id
         where e.book_id = %s and e.effective_date >= %s and e.effective_date <= %s
        window w as (order by e.effective_date, s.seq nulls last, e.recorded_at, e.id, p.line_no)
       ) x
 order by x.effective_date, x.seq nulls last, x.recorded_at, x.id, x.line_no
"""


class _Writer:
    def __init__(self) -> None:
        self._parts: list[str] = []
        self._size = 0

    def add(self, text: str) -> Iterator[str]:
        self._parts.append(text)
        self._size += len(text)
        if self._size >= CHUNK:
            yield from self.flush()

    def flush(self) -> Iterator[str]:
        if self._parts:
            out = "".join(self._parts)
            self._parts = []
            self._size = 0
            yield out


def _load_accounts(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    usage: list[tuple[Any, ...]],
    date_to: date | None,
    book_time: tuple[date, date] | None = None,
) -> list[_Account]:
    """The accounts to open; `book_time` (first day, today) for a simulated book."""
    first: dict[uuid.UUID, date] = {}
    last: dict[uuid.UUID, date] = {}
    used: dict[uuid.UUID, dict[str, date]] = {}
    for account_id, currency, lo, hi in usage:
        first[account_id] = min(lo, first.get(account_id, lo))
        last[account_id] = max(hi, last.get(account_id, hi))
        used.setdefault(account_id, {})[currency] = lo
    rows = conn.execute(
        "select id, name, currencies, (opened_at at time zone 'UTC')::date,"
        " (closed_at at time zone 'UTC')::date from accounts where book_id = %s order by name",
        (book_id,),
    ).fetchall()
    accounts: list[_Account] = []
    for account_id, name, own, opened, closed in rows:
        if book_time is not None:
            opened = first.get(account_id, book_time[0])
            closed = None if closed is None else book_time[1]
        open_date = min(opened, first.get(account_id, opened))
        if date_to is not None and open_date > date_to:
            continue
        close_date = None
        if closed is not None:
            close_date = max(closed, last.get(account_id, closed))
            if date_to is not None and close_date > date_to:
                close_date = None
        held = used.get(account_id, {})
        accounts.append(
            _Account(
                id=account_id,
                name=beancount_account(name),
                currencies=sorted(own) if own else sorted(held),
                open_date=open_date,
                close_date=close_date,
                first_use=held,
            )
        )
    for account in accounts:
        prefix = account.name + ":"
        account.covered = [
            other.id for other in accounts if other is account or other.name.startswith(prefix)
        ]
    return accounts


def _assertions(
    on: date,
    accounts: list[_Account],
    balances: dict[tuple[uuid.UUID, str], Decimal],
) -> str:
    lines: list[str] = []
    stamp = on.isoformat()
    last_day = on - timedelta(days=1)
    for account in accounts:
        if account.close_date is not None and account.close_date < on:
            continue
        for currency, first in sorted(account.first_use.items()):
            if first > last_day:
                continue
            total = sum(
                (balances.get((covered, currency), Decimal(0)) for covered in account.covered),
                Decimal(0),
            )
            lines.append(
                f"{stamp} balance {account.name}  {assertion_text(total, currency)} ~ 0"
                f" {currency}\n"
            )
    return "".join(lines) + "\n" if lines else ""


def _brought_forward(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    start: date,
    by_id: dict[uuid.UUID, _Account],
    balances: dict[tuple[uuid.UUID, str], Decimal],
    writer: _Writer,
) -> Iterator[str]:
    day = start - timedelta(days=1)
    rows = conn.execute(
        "select account_id, currency, sum(amount) from account_balances"
        " where book_id = %s and balance_date <= %s group by account_id, currency",
        (book_id, day),
    ).fetchall()
    legs = sorted(
        ((by_id[a].name, c, total, a) for a, c, total in rows if total != 0 and a in by_id),
        key=lambda leg: (leg[0], leg[1]),
    )
    for _, currency, total, account_id in legs:
        balances[(account_id, currency)] = total
        account = by_id[account_id]
        if account.close_date is not None and account.close_date < day:
            account.close_date = day  # closed with a balance: keep it open for the opening
    if not legs:
        return
    out = [f'{day.isoformat()} * "Balances brought forward" #opening-balances\n']
    out.append(f"  as-of: {day.isoformat()}\n")
    for name, currency, total, _ in legs:
        out.append(f"  {name}  {amount_text(total)} {currency}\n")
    out.append("\n")
    yield from writer.add("".join(out))


def _transaction(
    head: tuple[Any, ...], payees: list[str], documents: list[str], lines: list[str]
) -> str:
    """One transaction: its header from the entry's fields, then its posting lines."""
    entry_id, effective, recorded, memo, metadata, reverses, seq, seal_hash = head
    metadata = {} if metadata in (None, "{}") else json.loads(metadata)
    tags: list[str] = []
    kind = metadata.get("kind")
    if isinstance(kind, str) and kind:
        tags.append(safe_link(kind))
    if reverses is not None:
        tags.append("reversal")
    links = [safe_link(d) for d in documents]
    for key in ("number", "invoice", "payment", "credit_note"):
        value = metadata.get(key)
        if isinstance(value, str) and value:
            links.append(safe_link(value))
    day = effective.isoformat()
    head_line = f"{day} *"
    if payees:
        head_line += " " + quote(payees[0])
    head_line += " " + quote(memo or "")
    for tag in dict.fromkeys(tags):
        head_line += " #" + tag
    for link in dict.fromkeys(links):
        head_line += " ^" + link
    out = [head_line, "\n", f'  entry-id: "{entry_id}"\n']
    if seq is not None:
        out.append(f'  seq: {seq}\n  seal-hash: "{seal_hash}"\n')
    out.append(f"  effective-date: {day}\n")
    out.append(f'  recorded-at: "{recorded}"\n')
    if reverses is not None:
        out.append(f'  reverses: "{reverses}"\n')
    extra = {k: v for k, v in metadata.items() if k not in ("kind", "reverses")}
    if extra:
        out.append(f"  entry-metadata: {quote(json.dumps(extra, sort_keys=True))}\n")
    out += lines
    out.append("\n")
    return "".join(out)
