"""Re-checking a book against its ledger: errors as values, all reported at once.

`verify` recomputes what the database already enforced, so it also catches
what a superuser did behind the triggers' backs: unbalanced entries, a broken
or altered seal chain, entries neither sealed nor queued, and projections
(daily and guarded balances) that differ from the postings.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import psycopg

from ledger.postgres.planner import SET_BASED_READ, planner_settings
from ledger.postgres.sealer import load_canonical_entries, seal_head
from ledger.sealing import FORMATS, GENESIS_HASH, link_hash


@dataclass(frozen=True, slots=True)
class Discrepancy:
    check: str
    subject: str  # the entry, seal or account concerned
    detail: str


def verify_book(conn: psycopg.Connection, book_id: uuid.UUID) -> list[Discrepancy]:
    rows = _checks(conn, book_id)
    entries = [r for r in rows if r[0] == "entry"]
    unbalanced = _unbalanced(conn, book_id, [r[1] for r in entries if r[6]])
    python_side = load_canonical_entries(
        conn, book_id, [r[1] for r in entries if r[2] is not None and r[5] and not r[7]]
    )
    chain: list[tuple[int, int, Discrepancy]] = []
    links: list[tuple[Any, ...]] = []
    if any(r[0] == "link" for r in rows):  # the exact links, to name what is wrong
        links = conn.execute(_SEAL_LINKS, {"b": book_id, "genesis": GENESIS_HASH}).fetchall()
    for seq, entry_id, expected, broken in links:
        if seq != expected:
            gap = Discrepancy("seal_chain", f"seq {expected}", f"gap: next is {seq}")
            chain.append((seq, 0, gap))
        if broken:
            detail = f"seq {seq} does not name its predecessor"
            chain.append((seq, 1, Discrepancy("seal_chain", entry_id, detail)))
    unsealed: list[Discrepancy] = []
    daily: list[tuple[str, str, Any, Discrepancy]] = []
    for row in rows:
        kind, raw_id, seq, prev_hash, stored, present, _, hash_ok, unqueued, *daily_row = row[:-1]
        seal_format = row[-1]
        subject = str(raw_id)
        if kind == "link":
            continue
        if kind == "daily":
            currency, day, ours, theirs = daily_row
            detail = f"{currency} on {day}: postings sum to {ours}, projection says {theirs}"
            daily.append((subject, currency, day, Discrepancy("daily_balances", subject, detail)))
        elif seq is None:
            if unqueued:
                detail = "neither sealed nor queued for sealing"
                unsealed.append(Discrepancy("sealed", subject, detail))
        elif not present:
            chain.append((seq, 2, Discrepancy("seal_chain", subject, "sealed entry missing")))
        elif not hash_ok and seal_format not in FORMATS:
            detail = f"seq {seq} has seal format {seal_format}, which verify does not know"
            chain.append((seq, 2, Discrepancy("seal_chain", subject, detail)))
        elif not hash_ok and link_hash(prev_hash, python_side[raw_id], seal_format) != stored:
            detail = f"entry {subject} (seq {seq}) differs from what was sealed"
            chain.append((seq, 2, Discrepancy("seal_chain", subject, detail)))
    chain.sort(key=lambda c: (c[0], c[1]))
    daily.sort(key=lambda d: (d[0], d[1], d[2]))
    found = unbalanced + [c[2] for c in chain]
    found += sorted(unsealed, key=lambda d: d.subject)
    found += [d[3] for d in daily]
    found += _guarded_balances(conn, book_id)
    return found


# Every check that reads the whole book, as the branches of one UNION ALL
# whose rows all have this shape (NULL where a column means nothing to the
# branch): kind, subject, seq, prev_hash, hash, present, suspect, hash_ok,
# unqueued, currency, day, postings' sum, projection, seal format. PostgreSQL may run the
# branches at once (a Parallel Append gives each to one process): the
# entries in two halves of the book's id range, the daily balances and the
# seal links. Only rows that need a look come back.
#
# An entry branch reads each posting once, grouped by entry, and answers
# three checks:
# - balance: an entry in one currency whose sum is zero and that has two
#   postings is balanced; the few others are re-checked per currency after;
# - seal: each seal's hash is recomputed from its entry's canonical JSON and
#   the seal's own prev_hash, by the seal's own format (ledger.sealing: format
#   2 hashes prev_hash and the document in one digest, format 1 hashes the
#   document first; an unknown format vouches for nothing); that prev_hash is
#   the hash of the seal before is `_LINKS`' check (gapless seq, each seal
#   against seq - 1). The two together are the chain, and no entry waits for
#   its predecessor. A seal whose entry is gone shows up on the seal side of
#   the full join;
# - sealing: an entry with no seal must be queued for the sealer.
# The canonical JSON is byte for byte what ledger.sealing writes
# (ab_canonical_json, migration 0026). Python re-hashes every entry SQL did
# not vouch for before calling it changed, so SQL only has to be right when it
# agrees -- and agreeing must prove the content the same: every text column
# goes through to_json (a text quoted by hand could carry quotes and brackets
# that forge the rest of the document), but for the currency, which is quoted
# by hand (to_json per posting was ~8 % of the statement's CPU) and checked
# once per entry instead: SQL vouches for an entry's lines only when all its
# postings name one currency that to_json writes as that same quoted text; an
# entry in several currencies is left to Python. UUIDs, dates (ISO DateStyle,
# set in _PLAN) and amounts (digits, '-', '.') need no escaping and are
# written by hand. An amount is written exactly: past 28 significant digits the sealer
# rounds it (`canonical_amount`), so SQL disagrees and Python decides. The
# common case (no customer, document, dimensions, memo or metadata) is one
# constant instead of a chain of concatenations, the costly part per posting.
# The lines come from a sorted subquery into string_agg (a per-group ORDER BY
# sorts each entry apart, several times slower).
_ENTRY_HALF = """
select 'entry'::text, coalesce(e.id, s.entry_id), s.seq, s.prev_hash, s.hash,
       e.id is not null,
       e.id is not null
         and (l.n is null or l.n < 2 or l.named < l.n or l.lo <> l.hi or l.total <> 0),
       hash_ok, s.seq is null and e.id is not null and u.entry_id is null,
       null::text, null::date, null::numeric, null::numeric, s.format
  from (select * from journal_entries where book_id = %(b)s and id {range}) e
  full join (select * from seals where book_id = %(b)s and entry_id {range}) s
    on s.entry_id = e.id
  left join (
    select entry_id, count(*) as n, count(currency) as named, min(currency) as lo,
           max(currency) as hi, sum(amount) as total,
           case when count(*) = count(piece) and min(currency) = max(currency)
                     and to_json(min(currency))::text = '"' || min(currency) || '"'
                then '[[' || string_agg(piece, '],[') || ']]' end as lines
      from (select entry_id, currency, amount,
                   line_no || ',"' || account_id::text || '","' || trim_scale(amount)::text
                   || '","' || currency
                   || case when customer_id is null and document is null and dimensions = '{{}}'
                           then '",null,null,{{}}'
                           else '",' || coalesce(to_json(customer_id)::text, 'null')
                                || ',' || coalesce(to_json(document)::text, 'null')
                                || ',' || case when dimensions = '{{}}' then '{{}}'
                                               else ab_canonical_json(dimensions) end
                      end as piece
              from postings where book_id = %(b)s and entry_id {range}
             order by entry_id, line_no) p
     group by entry_id) l on l.entry_id = e.id
  left join (select entry_id from unsealed_entries where book_id = %(b)s and entry_id {range}) u
    on u.entry_id = e.id
  cross join lateral (select
             '{{"date":"' || e.effective_date::text
             || '","id":"' || e.id::text
             || '","key":' || to_json(e.idempotency_key)::text
             || case when e.memo = '' and e.metadata = '{{}}'
                     then ',"memo":"","metadata":{{}},"postings":'
                     else ',"memo":' || to_json(e.memo)::text
                          || ',"metadata":' || case when e.metadata = '{{}}' then '{{}}'
                                                    else ab_canonical_json(e.metadata) end
                          || ',"postings":'
                end
             || case when l.entry_id is null then '[]' else l.lines end
             || case when e.reverses_entry_id is null then ',"reverses":null}}'
                     else ',"reverses":"' || e.reverses_entry_id::text || '"}}' end as doc) d
  cross join lateral (select case when e.id is not null and s.seq is not null then coalesce(
           s.hash = case s.format
             when 2 then encode(sha256(convert_to(s.prev_hash || d.doc, 'UTF8')), 'hex')
             when 1 then encode(sha256(convert_to(
               s.prev_hash || encode(sha256(convert_to(d.doc, 'UTF8')), 'hex'), 'UTF8')), 'hex')
           end, false) end as hash_ok) h
 where e.id is null
    or (s.seq is null and u.entry_id is null)
    or l.n is null or l.n < 2 or l.named < l.n or l.lo <> l.hi or l.total <> 0
    or not hash_ok
"""

# The chain's links, over the seals alone in key order: gapless sequence
# numbers, each prev_hash the hash of the seal before. A window function keeps
# a statement out of a parallel plan, so this runs only to name the faults
# that `_LINKS` found.
_SEAL_LINKS = """
select seq, entry_id::text, expected_seq, prev_hash <> previous
  from (select seq, entry_id, prev_hash,
               coalesce(lag(seq) over w, 0) + 1 as expected_seq,
               coalesce(lag(hash) over w, %(genesis)s) as previous
          from seals where book_id = %(b)s
        window w as (order by seq)) linked
 where seq <> expected_seq or prev_hash <> previous
"""

# The links found wrong without a window function, so that they are a branch
# of the parallel statement: a seal other than seq 1 whose seq - 1 is missing,
# a prev_hash that is not the hash of seq - 1 (the genesis hash for seq 1),
# and a count of seals that is not the last seq. Nothing comes back exactly
# when `_SEAL_LINKS` finds nothing: every seq but 1 has its predecessor, so
# the seqs run from 1 without a gap, and as many seals as the last seq leave
# no room for a duplicate (or a NULL) seq.
_LINKS = """
select 'link'::text, s.entry_id, s.seq, null::text, null::text, null::boolean, null::boolean,
       null::boolean, null::boolean, null::text, null::date, null::numeric, null::numeric,
       null::smallint
  from (select seq, entry_id, prev_hash from seals where book_id = %(b)s) s
  left join (select seq + 1 as next, hash from seals where book_id = %(b)s) p on p.next = s.seq
 where (p.next is null and s.seq is distinct from 1)
    or s.prev_hash <> coalesce(p.hash, %(genesis)s)
union all
select 'link'::text, null::uuid, null::bigint, null::text, null::text, null::boolean,
       null::boolean, null::boolean, null::boolean, null::text, null::date, count(*), max(seq),
       null::smallint
  from seals where book_id = %(b)s
having count(*) <> coalesce(max(seq), 0)
"""

# The daily balances projection against the postings, day by day.
_DAILY = """
select 'daily'::text, coalesce(p.account_id, m.account_id), null::bigint, null::text,
       null::text, null::boolean, null::boolean, null::boolean, null::boolean,
       coalesce(p.currency, m.currency), coalesce(p.day, m.day), p.total, m.total,
       null::smallint
  from (select account_id, currency, effective_date as day, sum(amount) as total, count(*) as n
          from postings where book_id = %(b)s group by 1, 2, 3) p
  full join (select account_id, currency, balance_date as day, sum(amount) as total,
                    sum(postings_count) as n
               from account_balances where book_id = %(b)s group by 1, 2, 3) m
    on m.account_id = p.account_id and m.currency = p.currency and m.day = p.day
 where p.total is distinct from m.total or p.n is distinct from m.n
"""

_CHECKS = " union all ".join(
    f"select * from ({q}) as {name}"
    for name, q in (
        ("first_half", _ENTRY_HALF.format(range="< %(mid)s")),
        ("second_half", _ENTRY_HALF.format(range=">= %(mid)s")),
        ("daily", _DAILY),
        ("links", _LINKS),
    )
)

_NIL = uuid.UUID(int=0)


def _checks(conn: psycopg.Connection, book_id: uuid.UUID) -> list[tuple[Any, ...]]:
    # The entry id halving the book's entries (by its sealed count: no need to
    # count), so the halves are even whatever the ids look like (UUID v7 ids
    # grow with time, others are random).
    head = seal_head(conn, book_id)
    middle = None
    if head is not None:
        row = conn.execute(
            "select id from journal_entries where book_id = %s order by id offset %s limit 1",
            (book_id, head[0] // 2),
        ).fetchone()
        middle = row[0] if row else None
    with planner_settings(conn, _PLAN):
        return conn.execute(
            _CHECKS, {"b": book_id, "mid": middle or _NIL, "genesis": GENESIS_HASH}
        ).fetchall()


# Every branch reads all of its tables: hash joins, not a nested loop over
# grouped postings (seals' statistics lag the sealer). No partial (parallel)
# scans, so that the planner's parallel plan is the Parallel Append of whole
# branches rather than a Gather under each branch, which leaves the grouping
# and hashing to one process.
_PLAN = {
    **SET_BASED_READ,
    "min_parallel_table_scan_size": "1TB",
    "min_parallel_index_scan_size": "1TB",
    # `date::text` is the ISO date the sealer writes only in this style.
    "DateStyle": "ISO",
}


def _unbalanced(
    conn: psycopg.Connection, book_id: uuid.UUID, suspects: list[uuid.UUID]
) -> list[Discrepancy]:
    """The suspects of the entry pass, re-checked per currency."""
    if not suspects:
        return []
    rows = conn.execute(
        "select e.id, coalesce(string_agg(s.currency || ' ' || s.total::text, ', '), ''),"
        "       coalesce(sum(s.n), 0)"
        "  from journal_entries e"
        "  left join (select entry_id, currency, sum(amount) as total, count(*) as n"
        "               from postings where book_id = %(b)s and entry_id = any(%(ids)s)"
        "              group by entry_id, currency) s"
        "    on s.entry_id = e.id"
        " where e.book_id = %(b)s and e.id = any(%(ids)s)"
        " group by e.id"
        " having coalesce(sum(s.n), 0) < 2 or bool_or(s.total <> 0)",
        {"b": book_id, "ids": suspects},
    ).fetchall()
    return [
        Discrepancy("balanced", str(entry_id), f"postings: {int(n)}; sums per currency: {sums}")
        for entry_id, sums, n in rows
    ]


def _guarded_balances(conn: psycopg.Connection, book_id: uuid.UUID) -> list[Discrepancy]:
    rows = conn.execute(
        "select g.account_id, g.currency, g.balance, coalesce(("
        "  select sum(p.amount) from postings p where p.book_id = g.book_id"
        "   and p.account_id = g.account_id and p.currency = g.currency), 0)"
        "  from guarded_balances g where g.book_id = %s",
        (book_id,),
    ).fetchall()
    return [
        Discrepancy(
            "guarded_balances",
            str(account),
            f"{currency}: postings sum to {posted}, running balance says {running}",
        )
        for account, currency, running, posted in rows
        if posted != running
    ]
