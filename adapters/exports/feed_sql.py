"""A journal feed page written by PostgreSQL: one query reads the page and writes its lines.

The layouts of erp_formats (jsonl, netsuite, quickbooks, sap) as SQL text expressions, with
the helpers of revision 0041 (`ab_fold`, `ab_csv`, `ab_pyjson`) standing in for
`_text`, csv.writer and json.dumps. The client receives the page's body as one bytea
value (binary, so no per-line work in Python) with its counts and totals.
Xero keeps the Python layout (its tracking option is Python's str() of any JSON value).
tests/integration/test_feed_sql.py ties every layout here to erp_formats byte for byte.

The page is the seal range (since, since + limit] (gapless, so bounded on both sides
and read from the seals' primary key). Its entries and postings are read as ranges of
their (book_id, id) and (book_id, entry_id, line_no) keys between the page's lowest and
highest entry id, then hash-joined to the page: entry ids are UUIDv7, so a page's
entries lie close together in those keys, and one range scan replaces a probe per entry.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg

from adapters.exports.feed import CUSTOMER_UUID
from ledger.postgres.verify import planner_settings

SQL_FORMATS = ("jsonl", "netsuite", "quickbooks", "sap")

# The page and its posting lines, with every column the layouts use. Each table is
# read once as a range of its key (the ids between the page's lowest and highest
# entry id), customers by key once each, and the rest are hash joins: _PLAN below.
# Cells shared by an entry's lines (date, memo, the line text of lines without a
# document), an account's or a customer's lines are written once (erp_formats._Pieces).
_LINES = f"""
with page as materialized (
  select seq, hash, entry_id from seals
   where book_id = %(book)s and seq > %(since)s and seq <= %(since)s::bigint + %(limit)s
), span as materialized (
  -- no min(uuid) before PostgreSQL 16
  select (select entry_id from page order by entry_id limit 1) lo,
         (select entry_id from page order by entry_id desc limit 1) hi
), heads as materialized (
  select g.seq, g.hash, e.id, e.effective_date, e.recorded_at, e.memo, e.metadata,
         e.reverses_entry_id as reverses, f.memo_f, f.plain,
         coalesce(' reversal of ' || e.reverses_entry_id, '') as suffix,
         'AB-' || %(tag)s || '-' || g.seq as ext,
         to_char(e.effective_date, %(date_format)s) as day,
         {{head_cells}}
    from journal_entries e join page g on g.entry_id = e.id
   cross join lateral (
     -- erp_formats._line for a line without a document: the reversal note, else the memo
     select m.memo_f, coalesce('reversal of ' || e.reverses_entry_id, m.memo_f) as plain
       from (select ab_fold(e.memo) as memo_f) m
   ) f
   where e.book_id = %(book)s
     and e.id >= (select lo from span) and e.id <= (select hi from span)
), posts as materialized (
  select p.entry_id, p.line_no, p.account_id, p.amount, p.currency, p.customer_id,
         p.document, p.dimensions
    from postings p
   where p.book_id = %(book)s
     and p.entry_id >= (select lo from span) and p.entry_id <= (select hi from span)
), labels as materialized (
  -- each customer id of the page once: its customer's name (a primary-key lookup in a
  -- subplan: no join to plan) and what the name columns show
  select customer_id, name, ab_csv(ab_fold(coalesce(nullif(name, ''), customer_id))) as label,
         to_json(customer_id)::text as customer_json, to_json(name)::text as name_json
    from (select u.customer_id,
                 (select c.name from customers c where c.book_id = %(book)s and c.id = u.id) name
            from (select p.customer_id, {CUSTOMER_UUID} as id
                    from (select distinct customer_id from posts
                           where customer_id is not null and entry_id in (select id from heads)
                         ) p) u
          offset 0) n
), accts as materialized (
  select a.id, a.name, a.code, m.erp_code,
         ab_csv(coalesce(m.erp_code, nullif(a.code, ''), a.name)) as code_cell,
         ab_csv(coalesce(m.erp_code, a.name)) as name_cell,
         to_json(a.name)::text as account_json, coalesce(to_json(a.code)::text, 'null') code_json
    from accounts a
    left join erp_account_mappings m
      on m.book_id = %(book)s and m.erp_format = %(fmt)s and m.account_id = a.id
   where a.book_id = %(book)s
), lines as materialized (
  select {{line_heads}}, p.line_no, p.amount, p.currency, p.customer_id, p.document, p.dimensions,
         a.name as account, a.code, a.erp_code, a.code_cell, a.name_cell, a.account_json,
         a.code_json, c.name as customer_name, coalesce(c.label, '') as label, c.customer_json,
         c.name_json
    from posts p
    join heads h on h.id = p.entry_id
    join accts a on a.id = p.account_id
    left join labels c on c.customer_id = p.customer_id
)"""

# Per entry, by layout: the cells of lines without a document.
# What lines take of their entry: JSON Lines only the key (its entry's object is
# written around the aggregated lines), the CSV layouts the cells they repeat.
_LINE_HEADS = {
    "jsonl": "h.seq",
    "netsuite": "h.seq, h.ext, h.day, h.memo_f, h.suffix, h.memo_cell, h.plain_cell",
    "quickbooks": "h.seq, h.ext, h.day, h.memo, h.memo_f, h.suffix, h.plain_cell",
    "sap": "h.seq, h.memo_f, h.suffix, h.plain_cell",
}

_HEAD_CELLS = {
    "netsuite": "ab_csv(f.memo_f) as memo_cell, ab_csv(f.plain) as plain_cell",
    "quickbooks": "null as memo_cell,"
    " ab_csv(ab_fold(concat_ws(' ', nullif(e.memo, ''), f.plain))) as plain_cell",
    "sap": "null as memo_cell, ab_csv(left(f.plain, 50)) as plain_cell",
}

_PLAN = {"enable_nestloop": "off", "jit": "off"}  # see read_page

# A line's text with a document (erp_formats._line): the folded document and the
# entry's reversal note, else the entry's folded memo.
_DOCUMENT_TEXT = "coalesce(nullif(ab_fold(l.document) || l.suffix, ''), l.memo_f)"
_NO_DOCUMENT = "coalesce(l.document, '') = ''"
_DEBIT = "case when l.amount > 0 then l.amount::text else '' end"
_CREDIT = "case when l.amount > 0 then '' else (-l.amount)::text end"


def _nullable(expr: str) -> str:
    return f"coalesce(to_json({expr})::text, 'null')"


_JSON_LINE = f"""'{{"account":' || l.account_json || ',"account_code":' || l.code_json
  || ',"amount":"' || l.amount::text
  || '","credit":' || case when l.amount > 0 then 'null' else '"' || (-l.amount)::text || '"' end
  || ',"currency":' || to_json(l.currency)::text
  || ',"customer":' || coalesce(l.customer_json, 'null')
  || ',"customer_name":' || coalesce(l.name_json, 'null')
  || ',"debit":' || case when l.amount > 0 then '"' || l.amount::text || '"' else 'null' end
  || ',"dimensions":'
  || case when l.dimensions = '{{}}' then '{{}}' else ab_pyjson(l.dimensions) end
  || ',"document":' || {_nullable("l.document")}
  || ',"line_no":' || l.line_no || '}}'"""

# datetime.isoformat(): microseconds only when there are some; the offset of the
# session's time zone, as psycopg gives the datetime.
_ISO = """to_char(e.recorded_at, 'YYYY-MM-DD"T"HH24:MI:SS')
  || case when date_trunc('second', e.recorded_at) = e.recorded_at then ''
          else to_char(e.recorded_at, '.US') end
  || to_char(e.recorded_at, 'TZH:TZM')"""

# An entry's JSON Lines object around its lines (keys sorted, as msgspec's encoder writes).
_HEAD_CELLS["jsonl"] = f"""'{{"effective_date":"' || to_char(e.effective_date, 'YYYY-MM-DD')
         || '","entry_id":"' || e.id || '","external_id":"AB-' || %(tag)s || '-' || g.seq
         || '","lines":[' as json_head,
         '],"memo":' || to_json(e.memo)::text
         || ',"metadata":'
         || case when e.metadata = '{{}}' then '{{}}' else ab_pyjson(e.metadata) end
         || ',"recorded_at":"' || {_ISO}
         || '","reverses":' || coalesce('"' || e.reverses_entry_id || '"', 'null')
         || ',"seal_hash":' || to_json(g.hash)::text || ',"seq":' || g.seq || '}}' || E'\\n'
         as json_tail"""

_RENDER = {
    "jsonl": f"""
select h.seq, 0 as item, h.json_head || j.lines || h.json_tail as line
  from heads h
  join (select l.seq, string_agg({_JSON_LINE}, ',' order by l.line_no) as lines
          from lines l group by l.seq) j on j.seq = h.seq
""",
    "netsuite": f"""
select l.seq, l.line_no as item,
       l.ext || ',' || l.day || ',' || ab_csv(%(subsidiary)s)
       || ',' || ab_csv(l.currency) || ',' || case when l.currency = %(base)s then '1' else '' end
       || ',' || l.code_cell || ',' || {_DEBIT} || ',' || {_CREDIT}
       || ',' || l.memo_cell || ',' || l.label || ','
       || case when {_NO_DOCUMENT} then l.plain_cell else ab_csv({_DOCUMENT_TEXT}) end
       || E'\\r\\n' as line
  from lines l
""",
    "quickbooks": f"""
select l.seq, l.line_no as item,
       l.ext || ',' || l.day || ',' || l.name_cell || ',' || {_DEBIT} || ',' || {_CREDIT} || ','
       || case when {_NO_DOCUMENT} then l.plain_cell
               else ab_csv(ab_fold(concat_ws(' ', nullif(l.memo, ''), {_DOCUMENT_TEXT}))) end
       || ',' || l.label || ',' || ab_csv(l.currency) || E'\\r\\n' as line
  from lines l
""",
    "sap": f"""
select l.seq, -1 as item,
       'H,' || ab_csv(%(company)s) || ',' || l.day || ',' || l.day || ',' || ab_csv(%(doc_type)s)
       || ',' || left('AB-' || l.seq, 16) || ',' || left(l.ext, 25) || E',,,,,\\r\\n' as line
  from heads l
union all
select l.seq, l.line_no as item,
       'L,,,,,,,' || lpad((row_number() over (partition by l.seq order by l.line_no))::text,
                          10, '0')
       || ',' || l.code_cell || ',' || ab_csv(l.currency) || ',' || l.amount::text || ','
       || case when {_NO_DOCUMENT} then l.plain_cell else ab_csv(left({_DOCUMENT_TEXT}, 50)) end
       || E'\\r\\n' as line
  from lines l
""",
}

_PAGE = """
select convert_to(coalesce((select string_agg(line, '' order by seq, item) from rendered), ''),
                  'UTF8'),
       (select count(*) from heads), (select min(seq) from heads), (select max(seq) from heads),
       (select count(*) from lines),
       (select coalesce(array_agg(currency order by currency), '{}') from totals),
       (select coalesce(array_agg(debit order by currency), '{}') from totals),
       (select coalesce(array_agg(credit order by currency), '{}') from totals),
       {unmapped}
"""

_TOTALS = """, totals as (
  select currency,
         coalesce(sum(amount) filter (where amount > 0), 0) as debit,
         coalesce(sum(-amount) filter (where amount <= 0), 0) as credit
    from lines group by currency
)"""


@dataclass(frozen=True, slots=True)
class Page:
    body: bytes  # the lines, without the CSV header row
    count: int
    first_seq: int | None
    last_seq: int | None
    lines: int
    totals: dict[str, tuple[Decimal, Decimal]]  # currency → (debits, credits)
    unmapped: list[str]  # the names of the page's accounts with no code for the format


def page_query(fmt: str) -> str:
    # only QuickBooks warns of unmapped accounts (erp_formats.mapping_warnings)
    unmapped = "'{}'::text[]"
    if fmt == "quickbooks":
        unmapped = "(select coalesce(array_agg(distinct account), '{}') from lines"
        unmapped += " where erp_code is null)"
    lines = _LINES.replace("{head_cells}", _HEAD_CELLS[fmt])
    lines = lines.replace("{line_heads}", _LINE_HEADS[fmt])
    rendered = ", rendered as (" + _RENDER[fmt] + ")"
    return lines + _TOTALS + rendered + _PAGE.replace("{unmapped}", unmapped)


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
    }
    # Without statistics (a fresh book; seals analyzed behind the sealer) the planner
    # takes the page for one row and probes entries and postings per entry, or nests
    # loops over the CTEs (quadratic). Hash joins of the key ranges cost about a page
    # whatever the estimates; no JIT, which compiling this per page would cost more.
    with planner_settings(conn, _PLAN), conn.cursor(binary=True) as cur:
        row = cur.execute(page_query(fmt), params).fetchone()
    assert row is not None
    body, count, first, last, lines, currencies, debits, credits, unmapped = row
    return Page(
        body=bytes(body),
        count=count,
        first_seq=first,
        last_seq=last,
        lines=lines,
        totals={c: (d, k) for c, d, k in zip(currencies, debits, credits, strict=True)},
        unmapped=list(unmapped),
    )
