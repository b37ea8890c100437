"""A journal feed page written by PostgreSQL: one query reads the page and writes its lines.

The layouts of erp_formats (jsonl, netsuite, quickbooks, xero, sap) as SQL text
expressions, with the helpers of revision 0041 (`ab_fold`, `ab_csv`, `ab_pyjson`,
`ab_pyfloat`) standing in for `_text`, csv.writer, json.dumps and str(float). For the CSV
layouts the client receives the page's body as one bytea value (binary, so no per-line
work in Python) with its counts, totals and what erp_formats checks of a batch; JSON Lines
come as a binary COPY of a few rows (_JSONL). One case stays in Python: a
Xero tracking option that is a JSON object or array (Python's repr of it; Page.composite).
tests/integration/test_feed_sql.py ties every layout here to erp_formats byte for byte.

The page is the seal range (since, since + limit] (gapless, so bounded on both sides
and read from the seals' primary key). Its entries and postings are read as ranges of
their (book_id, id) and (book_id, entry_id, line_no) keys between the page's lowest and
highest entry id, then hash-joined to the page: entry ids are UUIDv7, so a page's
entries lie close together in those keys, and one range scan replaces a probe per entry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.abc import Buffer

from adapters.exports.feed import CUSTOMER_UUID
from ledger.postgres.planner import set_based_read

_INT16 = struct.Struct("!h")
_INT32 = struct.Struct("!i")

SQL_FORMATS = ("jsonl", "netsuite", "quickbooks", "xero", "sap")

# The page's lowest and highest entry id: the key range both page statements read.
_SPAN = """span as materialized (
  -- no min(uuid) before PostgreSQL 16
  select (select entry_id from page order by entry_id limit 1) lo,
         (select entry_id from page order by entry_id desc limit 1) hi
)"""

# The page, its entries and their postings, with the cells the layout uses. Each table
# is read once as a range of its key (the ids between the page's lowest and highest
# entry id), customers by key once each, and the rest are hash joins (set_based_read).
# Cells shared by an entry's lines (date, memo, the line text of lines without a
# document), an account's or a customer's lines are written once (erp_formats._Pieces):
# `heads`, `accts` and `labels` hold them, each layout's own (_Layout).
# `e` computes what several cells use once (`offset 0`: not pulled up, which would
# repeat the expressions in every cell that uses them).
_TABLES = f"""
with page as materialized (
  select seq, hash, entry_id from seals
   where book_id = %(book)s and seq > %(since)s and seq <= %(since)s::bigint + %(limit)s
), {_SPAN}, heads as materialized (
  select e.seq, e.id, {{head_cells}}
    from (select g.seq, g.hash, e.id, e.effective_date, e.recorded_at, e.memo, e.metadata,
                 e.reverses_entry_id as reverses{{entry_cells}}
            from journal_entries e join page g on g.entry_id = e.id
           where e.book_id = %(book)s
             and e.id >= (select lo from span) and e.id <= (select hi from span)
          offset 0) e
), accts as materialized (
  select a.id, a.name, m.erp_code, {{acct_cells}}
    from accounts a
    left join erp_account_mappings m
      on m.book_id = %(book)s and m.erp_format = %(fmt)s and m.account_id = a.id
   where a.book_id = %(book)s
), posts as materialized (
  -- the page's postings: the range of the key, less the interleaved entries of other
  -- pages (the window numbers an entry's lines over the range, in the key's order),
  -- with their account's cell (joined here, where the planner hashes the accounts: in
  -- the page's join it hashed the postings, the CTEs' row estimates being guesses)
  select p.*, a.acct_cell from (
    select p.entry_id, p.line_no, p.account_id, p.amount, p.currency, p.customer_id,
           p.document, p.dimensions, p.amount::text as amount_text{{post_cells}}
      from postings p
     where p.book_id = %(book)s
       and p.entry_id >= (select lo from span) and p.entry_id <= (select hi from span)
    window w as (partition by p.entry_id order by p.line_no)
  ) p join accts a on a.id = p.account_id
   where p.entry_id in (select entry_id from page)
), labels as materialized (
  -- each customer id of the page once: its customer's name (a primary-key lookup in a
  -- subplan: no join to plan) and what the name columns show, as a map looked up per
  -- line (_LABEL): a join of the lines to these few rows hashed the lines' side (the
  -- CTEs' row estimates are guesses), ~10 %% of the page's instructions
  select jsonb_object_agg(customer_id, label) as map
    from (select customer_id, {{label_cells}}
            from (select u.customer_id,
                         (select c.name from customers c
                           where c.book_id = %(book)s and c.id = u.id) name
                    from (select p.customer_id, {CUSTOMER_UUID} as id
                            from (select distinct customer_id from posts
                                   where customer_id is not null) p) u
                  offset 0) n) n
)"""

# The page's lines: each posting of the page (with its account's cell) and its entry.
_JOIN = """
  from posts p
  join heads h on h.id = p.entry_id"""


def _unless_empty(function: str, text: str) -> str:
    """function(text), or '' for an empty text without the call: an entry's memo is often
    empty (the column's default), and ab_fold and ab_csv run a regular expression (~7 %
    of a CSV page's instructions when they did for every entry)."""
    return f"case when {text} = '' then '' else {function}({text}) end"


# What the CSV layouts compute once per entry: the folded memo and the date cell.
_CSV_ENTRY = (
    f", {_unless_empty('ab_fold', 'e.memo')} as memo_f,"
    " to_char(e.effective_date::timestamp, %(date_format)s) as day"
)
# erp_formats._line for a line without a document: the reversal note, else the memo.
_PLAIN = "coalesce('reversal of ' || e.reverses, e.memo_f)"
_SUFFIX = "coalesce(' reversal of ' || e.reverses, '') as suffix"
# A line's text with a document (erp_formats._line): the folded document and the
# entry's reversal note, else the entry's folded memo.
_DOCUMENT_TEXT = "coalesce(nullif(ab_fold(p.document) || h.suffix, ''), h.memo_f)"
_NO_DOCUMENT = "coalesce(p.document, '') = ''"
# A posting's currency is a code of `currencies` (^[A-Z]{3}$, ck_currencies_code_format;
# the posting triggers refuse others): a CSV cell and a JSON string as it is.

# The debit and credit cells with the commas around them, from the amount's text.
_DEBIT_CREDIT = (
    "case when p.amount > 0 then ',' || p.amount_text || ',,'"
    " when p.amount < 0 then ',,' || substr(p.amount_text, 2) || ','"
    " else ',,' || p.amount_text || ',' end"
)
_CSV_LABEL = "ab_csv(ab_fold(coalesce(nullif(name, ''), customer_id))) as label"
# A line's customer label (null without a customer): a label is never null.
_LABEL_OF = "((select map from labels) ->> p.customer_id)"
_LABEL = f"coalesce({_LABEL_OF}, '')"


@dataclass(frozen=True, slots=True)
class _Layout:
    entry_cells: str  # what heads' cells use more than once, computed once an entry
    head_cells: str  # an entry's cells
    acct_cells: str  # an account's
    label_cells: str  # a customer id's
    post_cells: str  # a posting's (window w: its entry's lines in line order)
    render: str  # the rows (seq, item, line) of the page's text


_LAYOUTS: dict[str, _Layout] = {}

# Each `||` is a function call that copies its text, per line or entry: the layouts put
# constants next to each other in parentheses (folded into one by the planner, with the
# parameters' values) and the commas around an entry's or an account's cell into it.

_LAYOUTS["netsuite"] = _Layout(
    entry_cells=_CSV_ENTRY,
    head_cells="('AB-' || %(tag)s || '-') || e.seq || ',' || e.day"
    " || (',' || ab_csv(%(subsidiary)s) || ',') as pre,"
    f" {_unless_empty('ab_csv', 'e.memo_f')} || ',' as memo_cell,"
    f" {_unless_empty('ab_csv', _PLAIN)} || E'\\r\\n' as plain_line, e.memo_f, {_SUFFIX}",
    acct_cells="ab_csv(coalesce(m.erp_code, nullif(a.code, ''), a.name)) as acct_cell",
    label_cells=_CSV_LABEL,
    post_cells="",
    render=f"""
select h.seq, p.line_no as item,
       h.pre || case when p.currency = %(base)s then %(base)s::text || ',1,'
                     else p.currency || ',,' end
       || p.acct_cell || {_DEBIT_CREDIT} || h.memo_cell || coalesce({_LABEL_OF} || ',', ',')
       || case when {_NO_DOCUMENT} then h.plain_line
               else ab_csv({_DOCUMENT_TEXT}) || E'\\r\\n' end as line{_JOIN}
""",
)

_LAYOUTS["quickbooks"] = _Layout(
    entry_cells=_CSV_ENTRY,
    head_cells="('AB-' || %(tag)s || '-') || e.seq || ',' || e.day || ',' as pre, e.memo,"
    f" e.memo_f, {_SUFFIX},"
    f" ab_csv(ab_fold(concat_ws(' ', nullif(e.memo, ''), {_PLAIN}))) as plain_cell",
    acct_cells="ab_csv(coalesce(m.erp_code, a.name)) as acct_cell",
    label_cells=_CSV_LABEL,
    post_cells="",
    render=f"""
select h.seq, p.line_no as item,
       h.pre || p.acct_cell || {_DEBIT_CREDIT}
       || case when {_NO_DOCUMENT} then h.plain_cell
               else ab_csv(ab_fold(concat_ws(' ', nullif(h.memo, ''), {_DOCUMENT_TEXT}))) end
       || ',' || {_LABEL} || ',' || p.currency || E'\\r\\n' as line{_JOIN}
""",
)

_LAYOUTS["sap"] = _Layout(
    entry_cells=_CSV_ENTRY,
    head_cells="('H,' || ab_csv(%(company)s) || ',') || e.day || ',' || e.day"
    " || (',' || ab_csv(%(doc_type)s) || ',') || left('AB-' || e.seq, 16) || ','"
    " || left(('AB-' || %(tag)s || '-') || e.seq, 25) || E',,,,,\\r\\n' as head,"
    f" e.memo_f, {_SUFFIX}, {_unless_empty('ab_csv', f'left({_PLAIN}, 50)')} || E'\\r\\n'"
    " as plain_line",
    acct_cells="',' || ab_csv(coalesce(m.erp_code, nullif(a.code, ''), a.name)) || ','"
    " as acct_cell",
    label_cells="null as label",
    post_cells=", row_number() over w as item_no",
    render=f"""
select h.seq, -1 as item, h.head as line from heads h
union all
select h.seq, p.line_no as item,
       'L,,,,,,,' || lpad(p.item_no::text, 10, '0') || p.acct_cell
       || p.currency || ',' || p.amount_text || ','
       || case when {_NO_DOCUMENT} then h.plain_line
               else ab_csv(left({_DOCUMENT_TEXT}, 50)) || E'\\r\\n' end as line{_JOIN}
""",
)

# Python's str() of a dimension's JSON value (json.loads of its jsonb text), for the
# scalars: objects and arrays (Python's repr) are left to Python (Page.composite).
_PY_STR = """case jsonb_typeof(v)
         when 'string' then v #>> '{}'
         when 'number' then case when position('.' in v::text) = 0 then v::text
                                 else ab_pyfloat(v::text) end
         when 'boolean' then case when v = 'true' then 'True' else 'False' end end"""
# Xero's tracking option: the customer's label or the dimension's value, folded.
_XERO_OPTION = f"""case when %(tracking)s = '' then ''
       when %(dimension)s = 'customer' then {_LABEL}
       else ab_csv(ab_fold((select {_PY_STR} from (select p.dimensions -> %(dimension)s) d(v))))
       end"""

_LAYOUTS["xero"] = _Layout(
    entry_cells=_CSV_ENTRY,
    head_cells="ab_csv(('AB-' || %(tag)s || '-') || e.seq"
    " || case when e.memo_f = '' then '' else ' ' || e.memo_f end) || ',' || e.day || ','"
    f" as pre, e.memo_f, {_SUFFIX}, ab_csv({_PLAIN}) as plain_cell",
    acct_cells="ab_csv(coalesce(m.erp_code, nullif(a.code, ''), a.name)) || ','"
    " || case when a.name like 'Liabilities:Tax%%' then ab_csv(%(tax_line_rate)s)"
    " else ab_csv(%(tax_rate)s) end as acct_cell",
    label_cells=_CSV_LABEL,
    post_cells="",
    render=f"""
select h.seq, p.line_no as item,
       h.pre || case when {_NO_DOCUMENT} then h.plain_cell else ab_csv({_DOCUMENT_TEXT}) end
       || ',' || p.acct_cell || ',' || p.amount_text || ','
       || case when o.option = '' then ',' else ab_csv(%(tracking)s) || ',' || o.option end
       || E'\\r\\n' as line{_JOIN}
 cross join lateral (select {_XERO_OPTION} as option offset 0) o
""",
)

# datetime.isoformat(): microseconds only when there are some; the offset of the
# session's time zone, as psycopg gives the datetime.
_ISO = """replace(to_char(e.recorded_at, 'YYYY-MM-DD"T"HH24:MI:SS.USTZH:TZM'), '.000000', '')"""

# JSON Lines: the page is COPY'd out in binary, a row per CHUNK entries in seq order (plus
# a first row of its counts and totals), each row the entries' lines as UTF-8 bytes: no
# page-wide sort of line pieces, no page-sized text converted and sent as one value, and
# few rows for the client to read. An entry's object has its keys sorted, as msgspec's
# encoder writes them; its lines are aggregated per entry over the range of the postings'
# key, in line order. The accounts' cells and the page's customers' cells (each customer
# looked up once) are two maps built once a page and looked up per line, as initplans (a
# map cross-joined to the rows was copied with each of them: a third of the page's CPU).
_JSONL = (
    r"""copy (
with page as materialized (
  select seq, hash, entry_id, (seq - %(since)s - 1) / %(chunk)s as chunk from seals
   where book_id = %(book)s and seq > %(since)s and seq <= %(since)s::bigint + %(limit)s
), """
    + _SPAN
    + r""", scan as materialized (
  -- the range of the postings' key: its customers and the page's totals (less the
  -- interleaved entries of other pages)
  select p.entry_id, p.customer_id, p.amount, p.currency
    from postings p
   where p.book_id = %(book)s
     and p.entry_id >= (select lo from span) and p.entry_id <= (select hi from span)
), maps as materialized (
  select (select jsonb_object_agg(a.id, '{"account":' || to_json(a.name)::text
                 || ',"account_code":' || coalesce(to_json(a.code)::text, 'null')
                 || ',"amount":"')
            from accounts a where a.book_id = %(book)s) as accts,
         (select jsonb_object_agg(u.customer_id, ',"customer":' || to_json(u.customer_id)::text
                 || ',"customer_name":' || coalesce(to_json(
                      (select c.name from customers c where c.book_id = %(book)s and c.id = u.id)
                    )::text, 'null'))
            from (select p.customer_id, """
    + CUSTOMER_UUID
    + r""" as id
                    from (select distinct customer_id from scan where customer_id is not null) p
                 ) u) as labels
), lines as (
  -- an entry's lines in line order: fed from a subquery sorted by the key it reads (so no
  -- sort), not by an ordered aggregate (PostgreSQL 15 sorts each entry's lines for one:
  -- 10%% of the page's CPU)
  -- (each `||` is a function call that copies its text: a line without a customer,
  -- dimensions or a document, the common one, has what follows its currency up to its
  -- line number as one constant, bar the debit)
  select p.entry_id, string_agg(((select accts from maps) ->> p.account_id::text)
       || p.amount_text
       || case when p.amount > 0 then '","credit":null,"currency":"'
               when p.amount < 0 then '","credit":"' || substr(p.amount_text, 2)
                                      || '","currency":"'
               else '","credit":"' || p.amount_text || '","currency":"' end
       || p.currency
       || case when p.customer_id is null and p.dimensions = '{}' and p.document is null
               then case when p.amount > 0
                         then '","customer":null,"customer_name":null,"debit":"' || p.amount_text
                              || '","dimensions":{},"document":null,"line_no":'
                         else '","customer":null,"customer_name":null,"debit":null,'
                              '"dimensions":{},"document":null,"line_no":' end
               else '"' || coalesce((select labels from maps) ->> p.customer_id,
                                    ',"customer":null,"customer_name":null')
                    || case when p.amount > 0
                            then ',"debit":"' || p.amount_text || '","dimensions":'
                            else ',"debit":null,"dimensions":' end
                    || case when p.dimensions = '{}' then '{}' else ab_pyjson(p.dimensions) end
                    || ',"document":' || coalesce(to_json(p.document)::text, 'null')
                    || ',"line_no":' end
       || p.line_no || '}', ',') as lines
    from (select p.entry_id, p.line_no, p.account_id, p.amount, p.amount::text as amount_text,
                 p.currency, p.customer_id, p.document, p.dimensions
            from postings p
           where p.book_id = %(book)s
             and p.entry_id >= (select lo from span) and p.entry_id <= (select hi from span)
           order by p.entry_id, p.line_no) p
   group by p.entry_id
), totals as (
  select currency, count(*) as lines,
         coalesce(sum(amount) filter (where amount > 0), 0) as debit,
         coalesce(sum(-amount) filter (where amount <= 0), 0) as credit
    from scan
   -- the range less the interleaved entries of other pages, if it has any (a hashed
   -- subplan, not evaluated when it has none: no join of each posting to the page)
   where (select count(*) from journal_entries e
           where e.book_id = %(book)s
             and e.id >= (select lo from span) and e.id <= (select hi from span))
         = (select count(*) from page)
      or entry_id in (select entry_id from page)
   group by currency
)
select convert_to(string_agg(text, ''), 'UTF8') from (
  -- [[entries, first seq, last seq, lines], [[currency, debit, credit], ...]]
  select -1::bigint as seq, -1::bigint as chunk, '[' || to_json(array[
           s.entries::text, s.first::text, s.last::text,
           (select coalesce(sum(lines), 0) from totals)::text])::text
         || ',[' || coalesce((select string_agg(to_json(array[currency, debit::text,
                                                    credit::text])::text, ',' order by currency)
                                from totals), '') || ']]' as text
    from (select count(*) as entries, min(seq) as first, max(seq) as last from page) s
  union all
  -- the parentheses: the entry's lines (most of its bytes) are copied once into its text,
  -- not once per `||` after them
  -- (the external id's constant parts in parentheses, folded into one constant by the
  -- planner; an entry without a memo or metadata, the columns' defaults, has one constant
  -- for them; the seal's hash is hex (ck_seals_hash_hex, 0055): quoted as it is)
  select g.seq, g.chunk, ('{"effective_date":' || to_json(e.effective_date)::text
         || ',"entry_id":"' || e.id || ('","external_id":"AB-' || %(tag)s || '-') || g.seq
         || '","lines":[') || coalesce(l.lines, '')
         || (case when e.memo = '' and e.metadata = '{}'
                  then '],"memo":"","metadata":{},"recorded_at":"'
                  else '],"memo":' || to_json(e.memo)::text || ',"metadata":'
                       || case when e.metadata = '{}' then '{}' else ab_pyjson(e.metadata) end
                       || ',"recorded_at":"' end
         || """
    + _ISO
    + r"""
         || '","reverses":' || coalesce('"' || e.reverses_entry_id || '"', 'null')
         || ',"seal_hash":"' || g.hash || '","seq":' || g.seq || E'}\n')
    from page g
    join journal_entries e
      on e.book_id = %(book)s and e.id = g.entry_id
     and e.id >= (select lo from span) and e.id <= (select hi from span)
    left join lines l on l.entry_id = e.id
  -- a chunk's entries in seq order: the aggregate is fed from the sorted subquery (one
  -- sort of the page's rows, not another of each chunk's for an ordered aggregate)
  order by chunk, seq
) x group by chunk order by chunk
) to stdout (format binary)"""
)
CHUNK = 128  # entries a row of the JSON Lines COPY (~1 MB of a 10,000-entry page's ~8 MB)
_BINARY_COPY = b"PGCOPY\n\xff\r\n\x00"  # the signature that starts COPY's binary form


_PAGE = """, totals as (
  select currency, count(*) as lines,
         coalesce(sum(amount) filter (where amount > 0), 0) as debit,
         coalesce(sum(-amount) filter (where amount <= 0), 0) as credit
    from posts group by currency
), stats as (
  select count(*) as entries, min(seq) as first, max(seq) as last from heads
)
select convert_to(coalesce((select string_agg(line, '' order by (seq - %(since)s) * 65537 + item)
                                   from rendered), ''), 'UTF8'),
       s.entries, s.first, s.last, (select coalesce(sum(lines), 0)::bigint from totals),
       (select coalesce(array_agg(currency order by currency), '{}') from totals),
       (select coalesce(array_agg(debit order by currency), '{}') from totals),
       (select coalesce(array_agg(credit order by currency), '{}') from totals),
       {unmapped}, {xero}
"""


@dataclass(frozen=True, slots=True)
class Page:
    body: bytes  # the lines, without the CSV header row
    count: int
    first_seq: int | None
    last_seq: int | None
    lines: int
    totals: dict[str, tuple[Decimal, Decimal]]  # currency → (debits, credits)
    unmapped: list[str]  # the names of the page's accounts with no code for the format
    # Xero's: the names of the accounts of tax lines, the first entry in another currency
    # than the base one and those currencies, whether a tracking option is an object or
    # an array (Python writes those pages: Python's repr of them has no SQL twin)
    taxed: list[str] = dataclasses.field(default_factory=list)
    foreign: tuple[int, list[str]] | None = None
    composite: bool = False
    sha256: str | None = None  # the body's, when read as it came (JSON Lines)


def page_query(fmt: str) -> str:
    layout = _LAYOUTS[fmt]
    # only QuickBooks warns of unmapped accounts (erp_formats.mapping_warnings)
    unmapped = "'{}'::text[]"
    if fmt == "quickbooks":
        unmapped = "(select coalesce(array_agg(distinct a.name), '{}') from accts a"
        unmapped += " where a.erp_code is null and a.id in (select account_id from posts))"
    xero = "'{}'::text[], null::bigint, '{}'::text[], false\n  from stats s"
    if fmt == "xero":
        xero = _XERO_CHECKS
    tables = _TABLES
    for name in ("entry_cells", "head_cells", "acct_cells", "label_cells", "post_cells"):
        tables = tables.replace("{" + name + "}", getattr(layout, name))
    rendered = ", rendered as (" + layout.render + ")"
    return tables + rendered + _PAGE.replace("{unmapped}", unmapped).replace("{xero}", xero)


# What erp_formats checks of a Xero batch: the accounts of its tax lines, its first entry
# in another currency than the base one (with those currencies), and whether a tracking
# option is an object or an array (written by Python: see _PY_STR).
_XERO_CHECKS = """(select coalesce(array_agg(distinct a.name), '{}') from accts a
        where a.name like 'Liabilities:Tax%%' and a.id in (select account_id from posts)),
       f.seq, coalesce(f.currencies, '{}'),
       %(tracking)s <> '' and %(dimension)s <> 'customer'
         and exists (select from posts p
                      where jsonb_typeof(p.dimensions -> %(dimension)s) in ('object', 'array'))
  from stats s
  left join (select h.seq, array_agg(distinct p.currency order by p.currency) as currencies
               from posts p join heads h on h.id = p.entry_id
              where p.currency <> %(base)s
              group by h.seq order by h.seq limit 1) f on true"""


def read_page(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    fmt: str,
    since: int,
    limit: int,
    *,
    base_currency: str,
    settings: dict[str, str],
    date_format: str,
) -> Page:
    params: dict[str, Any] = {
        "book": book_id,
        "since": since,
        "limit": limit,
        "tag": book_id.hex[:8].upper(),
        "fmt": fmt,
        "base": base_currency,
        "date_format": date_format,
        "subsidiary": settings.get("subsidiary", ""),
        "company": settings.get("company_code", ""),
        "doc_type": settings.get("doc_type", ""),
        "tax_rate": settings.get("tax_rate", ""),
        "tax_line_rate": settings.get("tax_line_rate", ""),
        "tracking": settings.get("tracking_name", ""),
        "dimension": settings.get("tracking_dimension", ""),
    }
    # Without statistics (a fresh book; seals analyzed behind the sealer) the planner
    # takes the page for one row and probes entries and postings per entry, or nests
    # loops over the CTEs (quadratic). Hash joins of the key ranges cost about a page
    # whatever the estimates; no JIT, which compiling this per page would cost more.
    if fmt == "jsonl":
        return _read_jsonl(conn, params)
    with set_based_read(conn), conn.cursor(binary=True) as cur:
        row = cur.execute(page_query(fmt), params).fetchone()
    assert row is not None
    body, count, first, last, lines, currencies, debits, credits, unmapped, *xero = row
    taxed, foreign_seq, foreign, composite = xero
    return Page(
        body=bytes(body),
        count=count,
        first_seq=first,
        last_seq=last,
        lines=lines,
        totals={c: (d, k) for c, d, k in zip(currencies, debits, credits, strict=True)},
        unmapped=list(unmapped),
        taxed=list(taxed),
        foreign=(foreign_seq, list(foreign)) if foreign_seq is not None else None,
        composite=composite,
    )


def _read_jsonl(conn: psycopg.Connection, params: dict[str, Any]) -> Page:
    """The JSON Lines page from _JSONL: its first row's counts and totals, its other rows'
    bytes in order."""
    # no parallel plan: a partial aggregate (string_agg has one from PostgreSQL 16) would
    # join an entry's lines in the workers' order, not the sorted subquery's
    with (
        set_based_read(conn, max_parallel_workers_per_gather="0"),
        conn.cursor() as cur,
        cur.copy(_JSONL, {**params, "chunk": CHUNK}) as copy,
    ):
        values, digest = _copy_values(copy)
    (count, first, last, lines), totals = json.loads(bytes(values[0]))
    return Page(
        body=b"".join(values[1:]),
        count=int(count),
        first_seq=None if first is None else int(first),
        last_seq=None if last is None else int(last),
        lines=int(lines),
        totals={c: (Decimal(d), Decimal(k)) for c, d, k in totals},
        unmapped=[],
        sha256=digest,
    )


def _copy_values(blocks: Iterable[Buffer]) -> tuple[list[memoryview], str]:
    """The values of a binary COPY of one column, as views of the blocks read, and the
    sha256 of all but the first: each row is unframed and hashed as it arrives (PostgreSQL
    sends a row a message, and the rows come as it aggregates them), not after the whole
    stream is read and copied once more. COPY's binary form: a 19-byte header (signature,
    flags, extension length 0), then each row as its number of fields (1), the value's
    length and bytes, then -1."""
    values: list[memoryview] = []
    digest = hashlib.sha256()
    rest = b""  # a frame that a block left unfinished (not how PostgreSQL sends them)
    header = True
    ended = False
    for block in blocks:
        data = memoryview(rest + bytes(block)) if rest else memoryview(block)
        pos = 0
        if header:
            if len(data) < 19:
                rest = bytes(data)
                continue
            if data[:11] != _BINARY_COPY or data[11:19] != bytes(8):
                raise RuntimeError("the JSON Lines page is not in COPY's binary form")
            header = False
            pos = 19
        end = len(data)
        while pos + 2 <= end:
            fields = _INT16.unpack_from(data, pos)[0]
            if fields == -1:
                ended = True
                pos += 2
                break
            if pos + 6 > end:
                break
            (size,) = _INT32.unpack_from(data, pos + 2)
            if fields != 1 or size < 0:
                raise RuntimeError("the JSON Lines page is not in COPY's binary form")
            if pos + 6 + size > end:
                break
            value = data[pos + 6 : pos + 6 + size]
            if values:
                digest.update(value)
            values.append(value)
            pos += 6 + size
        rest = bytes(data[pos:]) if pos < end else b""
    if header or not ended or rest or not values:
        raise RuntimeError("the JSON Lines page is not in COPY's binary form")
    return values, digest.hexdigest()
