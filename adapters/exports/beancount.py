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
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import psycopg

from ledger.currencies import MINOR_UNITS
from ledger.postgres.planner import set_based_read

CHUNK = 1 << 16  # bytes of text handed out at a time
ITERSIZE = 8000  # entries (~20,000 postings) fetched per round trip of the cursor

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

    # PostgreSQL writes every transaction; Python only puts the month-end
    # assertions between them (a batch without a month end is joined as it is).
    with export_settings(conn):
        cursor = conn.cursor(name=f"ab_beancount_{uuid.uuid4().hex[:8]}")
        cursor.itersize = ITERSIZE
        cursor.execute(ENTRIES_IN_ORDER, entry_params(book_id, by_id, start, date_to))
        while rows := cursor.fetchmany(ITERSIZE):
            if pending is None or rows[-1][0] <= pending:  # no month ends inside: text only
                yield from writer.add("".join(map(_entry_text, rows)))
                continue
            for row in rows:
                if pending is not None and row[0] > pending:
                    yield from assertions(row[0])
                yield from writer.add(_entry_text(row))
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
    """SQL for `quote(column)` (tied to it by tests/integration/test_exports_beancount_sql.py)."""
    return f"""('"' || replace(replace({column}, '\\', '\\\\'), '"', '\\"') || '"')"""


def _safe_link(column: str) -> str:
    """SQL for `safe_link(column)` (tied to it by the same test)."""
    cleaned = f"btrim(regexp_replace({column}, '[^A-Za-z0-9_/.-]', '-', 'g'), '-')"
    return f"coalesce(nullif({cleaned}, ''), 'x')"


_LINK_KEYS = ("number", "invoice", "payment", "credit_note")

# An entry's metadata that SQL renders as `json.dumps(extra, sort_keys=True)` would:
# an object whose text is printable ASCII (PostgreSQL and Python then escape strings
# alike, and "C" order is code-point order) holding no objects, arrays or
# non-integer numbers besides kind and reverses (Python would reformat those).
# Any other entry gets its header from `_transaction`, in Python.
_SIMPLE_METADATA = """(jsonb_typeof(e.metadata) = 'object'
   and e.metadata::text ~ '^[ -~]*$'
   and not exists (select from jsonb_each(e.metadata - 'kind' - 'reverses') j
                    where jsonb_typeof(j.value) in ('object', 'array')
                       or (jsonb_typeof(j.value) = 'number' and j.value::text !~ '^-?[0-9]+$')))"""

# The name of the customer a posting `p` names (CUSTOMER_JOIN's rule), looked up by
# primary key only for the postings that name one.
_CUSTOMER_NAME = """(select c.name from customers c
          where c.book_id = p.book_id and c.id = case when p.customer_id
                ~ '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'
                then p.customer_id::uuid end)"""

_KIND = (
    "case when jsonb_typeof(e.metadata -> 'kind') = 'string'"
    " then nullif(e.metadata ->> 'kind', '') end"
)
_META_LINKS = " || ".join(
    f"case when jsonb_typeof(e.metadata -> '{key}') = 'string'"
    f" then array[nullif(e.metadata ->> '{key}', '')] end"
    for key in _LINK_KEYS
)

# `json.dumps(extra, sort_keys=True)` of a simple metadata's other keys.
_EXTRA_JSON = """(select '{' || string_agg(to_json(j.key)::text || ': ' || j.value::text, ', '
                                order by j.key collate "C") || '}'
                  from jsonb_each(x.extra) j)"""

_LINKS = f"""(select coalesce(string_agg(' ^' || u.link, '' order by u.first), '')
                from (select {_safe_link("a.value")} as link, min(a.n) as first
                        from unnest(x.documents || x.links) with ordinality a(value, n)
                       where a.value is not null group by 1) u)"""

# The book's entries in export order, each one's whole transaction written by
# PostgreSQL: the entries alone are sorted (date, seal sequence, recorded time,
# id), and each one's postings come through the primary key in line order (a
# subquery's ORDER BY is kept: it is never flattened), so no posting is sorted
# and the entry's header is made once from its own row. Columns: the date (for
# the month-end assertions), the text; when the text is NULL (metadata SQL does
# not render like Python, an unknown account, or `%(raw)s`) the fields
# `python_entry_text` takes.
# recorded-at is `datetime.isoformat()` in UTC (microseconds only when not 0), from
# the ISO text of the UTC timestamp (fraction without trailing zeros, or none).
_RECORDED = """(overlay(rpad(x.recorded_text, case when length(x.recorded_text) > 19 then 26
                                                else 19 end, '0') placing 'T' from 11)
             || '+00:00')"""

ENTRIES_IN_ORDER = f"""
select x.effective_date,
       case when not x.python then concat(
         x.day, ' *', ' ' || {_quoted("x.payee")}, ' ', {_quoted("x.memo")}, ' #' || x.tag,
         case when x.reverses_entry_id is not null and x.tag is distinct from 'reversal'
              then ' #reversal' end,
         case when x.documents is not null or x.links is not null then {_LINKS} end,
         E'\\n  entry-id: "', x.id::text, E'"\\n',
         '  seq: ' || x.seq::text || E'\\n  seal-hash: "' || x.hash || E'"\\n',
         '  effective-date: ', x.day, E'\\n  recorded-at: "', {_RECORDED}, E'"\\n',
         '  reverses: "' || x.reverses_entry_id::text || E'"\\n',
         case when x.extra <> '{{}}'::jsonb
              then concat('  entry-metadata: ', {_quoted(_EXTRA_JSON)}, E'\\n') end,
         x.lines, E'\\n')
       end,
       case when x.python then x.id::text end, case when x.python then {_RECORDED} end,
       case when x.python then x.memo end, case when x.python then x.metadata::text end,
       case when x.python then x.reverses_entry_id::text end, case when x.python then x.seq end,
       case when x.python then x.hash end, case when x.python then x.payee end,
       case when x.python then x.documents end, case when x.python then x.lines end, x.missing
  from (select o.id, o.effective_date, o.recorded_at, o.memo, o.reverses_entry_id, o.seq, o.hash,
               o.extra, o.tag, o.links, l.lines, l.documents, l.payee, l.missing,
               not o.simple or %(raw)s or l.missing as python,
               case when not o.simple or %(raw)s or l.missing then o.metadata end as metadata,
               o.effective_date::text as day,
               (o.recorded_at at time zone 'UTC')::text as recorded_text
          from (select e.id, e.effective_date, e.recorded_at, e.memo, e.metadata,
                       e.reverses_entry_id, s.seq, s.hash,
                       e.metadata = '{{}}'::jsonb or {_SIMPLE_METADATA} as simple,
                       case when e.metadata <> '{{}}'::jsonb and jsonb_typeof(e.metadata) = 'object'
                            then e.metadata - 'kind' - 'reverses' end as extra,
                       case when e.metadata <> '{{}}'::jsonb and {_KIND} is not null
                            then {_safe_link(_KIND)} end as tag,
                       case when e.metadata <> '{{}}'::jsonb and e.metadata ?| %(link_keys)s
                            then {_META_LINKS} end as links
                  from journal_entries e
                  left join seals s on s.book_id = e.book_id and s.entry_id = e.id
                 where e.book_id = %(book)s
                   and e.effective_date >= %(first)s and e.effective_date <= %(last)s
                offset 0) o
          join (select q.entry_id, string_agg(q.line, '') as lines,
                       array_agg(q.document) filter (where q.document is not null) as documents,
                       (array_agg(q.payee) filter (where q.payee is not null))[1] as payee,
                       coalesce(bool_or(q.line is null), false) as missing
                  from (select p.entry_id,
                               '  ' || (%(names)s::jsonb ->> p.account_id::text) || concat(
                                 '  ', p.amount::text, ' ', p.currency, E'\\n',
                                 '    customer: ' || {_quoted("p.customer_id")} || E'\\n',
                                 '    document: ' || {_quoted("p.document")} || E'\\n') as line,
                               p.document,
                               case when p.customer_id is not null
                                    then coalesce({_CUSTOMER_NAME}, p.customer_id) end as payee
                          from postings p
                         where p.book_id = %(book)s  -- a posting has its entry's date
                           and p.effective_date >= %(first)s and p.effective_date <= %(last)s
                         order by p.entry_id, p.line_no) q
                 group by q.entry_id) l on l.entry_id = o.id
         order by o.effective_date, o.seq nulls last, o.recorded_at, o.id) x
 order by x.effective_date, x.seq nulls last, x.recorded_at, x.id
"""


def export_settings(conn: psycopg.Connection) -> AbstractContextManager[None]:
    """ENTRIES_IN_ORDER's settings while its cursor is read: set_based_read's (on a
    growing book not yet analyzed the planner took the entries for a few rows and joined
    them to the grouped postings by a nested loop, rescanning them per entry: 5,000
    entries took 7.5 s, a soak's whole-book export grew to 26 s in three minutes; JIT
    compiled the overestimated customer lookups, ~1 s of CPU for nothing; the entries
    with their text are sorted in memory), and ISO dates (to_char costs ~1 µs a call)."""
    return set_based_read(conn, DateStyle="ISO, YMD")


def entry_params(
    book_id: uuid.UUID,
    by_id: dict[uuid.UUID, _Account],
    first: date | None,
    last: date,
    raw: bool = False,
) -> dict[str, Any]:
    """ENTRIES_IN_ORDER's parameters; `raw` makes every row carry `_transaction`'s fields."""
    return {
        "book": book_id,
        "first": first or date.min,
        "last": last,
        "names": json.dumps({str(k): a.name for k, a in by_id.items()}),
        "raw": raw,
        "link_keys": list(_LINK_KEYS),
    }


def _entry_text(row: tuple[Any, ...]) -> str:
    """One ENTRIES_IN_ORDER row's transaction: PostgreSQL's text, else `_transaction`'s."""
    text: str | None = row[1]
    if text is not None:
        return text
    return python_entry_text(row)


def python_entry_text(row: tuple[Any, ...]) -> str:
    """The transaction of an ENTRIES_IN_ORDER row, its header made in Python."""
    (day, _, entry_id, recorded, memo, metadata, reverses, seq, seal_hash) = row[:9]
    payee, documents, lines, missing = row[9:]
    if missing:
        raise ValueError(f"entry {entry_id} posts to an account the export does not open")
    head = (entry_id, day, recorded, memo, metadata, reverses, seq, seal_hash)
    return _transaction(head, [payee] if payee is not None else [], documents or [], [lines])


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
