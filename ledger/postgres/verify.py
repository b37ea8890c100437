"""Re-checking a book against its ledger: errors as values, all reported at once.

`verify` recomputes what the database already enforced, so it also catches
what a superuser did behind the triggers' backs: unbalanced entries, a broken
or altered seal chain, entries neither sealed nor queued, and projections
(daily and guarded balances) that differ from the postings.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import psycopg

from ledger.postgres.sealer import load_canonical_entries
from ledger.sealing import GENESIS_HASH, link_hash


@dataclass(frozen=True, slots=True)
class Discrepancy:
    check: str
    subject: str  # the entry, seal or account concerned
    detail: str


def verify_book(conn: psycopg.Connection, book_id: uuid.UUID) -> list[Discrepancy]:
    found: list[Discrepancy] = []
    found += _unbalanced(conn, book_id)
    found += _seal_chain(conn, book_id)
    found += _unsealed(conn, book_id)
    found += _daily_balances(conn, book_id)
    found += _guarded_balances(conn, book_id)
    return found


def _unbalanced(conn: psycopg.Connection, book_id: uuid.UUID) -> list[Discrepancy]:
    # One pass groups the postings per entry only: an entry in one currency
    # whose sum is zero and that has two postings is balanced. Entries failing
    # that (and those in several currencies, or with no postings) are the
    # few candidates re-checked per currency below, so the book is not joined
    # to its entries and grouped twice.
    suspects = [
        r[0]
        for r in conn.execute(
            "select e.id from journal_entries e"
            "  left join (select entry_id, count(*) as n, count(currency) as named,"
            "                    min(currency) as lo, max(currency) as hi, sum(amount) as total"
            "               from postings where book_id = %s group by entry_id) s"
            "    on s.entry_id = e.id"
            " where e.book_id = %s"
            "   and (s.n is null or s.n < 2 or s.named < s.n or s.lo <> s.hi or s.total <> 0)",
            (book_id, book_id),
        )
    ]
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


# The whole chain re-checked in one statement: each seal's hash recomputed
# from its entry's canonical JSON (ab_canonical_json, migration
# 0030_perfread, byte for byte what ledger.sealing writes), its predecessor
# and sequence by window functions. Only seals that need a look come back:
# discrepancies, and entries whose canonical text SQL cannot write (a float
# in their JSON, a 29-digit amount, a NULL). Python re-hashes every entry SQL
# did not vouch for before calling it changed, so SQL only has to be right
# when it agrees -- and agreeing must prove the content the same: every text
# column goes through to_json (a text quoted by hand could carry quotes and
# brackets that forge the rest of the document); UUIDs and amounts (digits,
# '-', '.') need no escaping and are quoted by hand. The lines come from a
# sorted subquery into string_agg (a per-group ORDER BY sorts each entry
# apart, several times slower).
_SEAL_CHECK = """
with lines as (
  select entry_id,
         case when count(*) = count(piece)
              then '[' || string_agg(piece, ',') || ']' end as lines
    from (select entry_id, line_no,
                 '[' || line_no || ',"' || account_id::text || '",'
                 || case when length(trim_scale(amount)::text) <= 28
                         then '"' || trim_scale(amount)::text || '"' end
                 || ',' || to_json(currency)::text
                 || ',' || coalesce(to_json(customer_id)::text, 'null')
                 || ',' || coalesce(to_json(document)::text, 'null')
                 || ',' || case when dimensions = '{}' then '{}'
                                else ab_canonical_json(dimensions) end
                 || ']' as piece
            from postings where book_id = %(b)s order by entry_id, line_no) p
   group by entry_id
), walk as (
  select s.seq, s.entry_id, s.prev_hash, s.hash,
         coalesce(lag(s.seq) over w, 0) + 1 as expected_seq,
         coalesce(lag(s.hash) over w, %(genesis)s) as previous,
         e.id is not null as present,
         '{"date":"' || to_char(e.effective_date, 'YYYY-MM-DD') || '"'
         || ',"id":"' || e.id::text || '"'
         || ',"key":' || to_json(e.idempotency_key)::text
         || ',"memo":' || to_json(e.memo)::text
         || ',"metadata":' || case when e.metadata = '{}' then '{}'
                                   else ab_canonical_json(e.metadata) end
         || ',"postings":' || case when l.entry_id is null then '[]' else l.lines end
         || ',"reverses":' || coalesce(to_json(e.reverses_entry_id::text)::text, 'null')
         || '}' as doc
    from seals s
    left join journal_entries e on e.book_id = s.book_id and e.id = s.entry_id
    left join lines l on l.entry_id = s.entry_id
   where s.book_id = %(b)s
  window w as (order by s.seq)
)
select seq, entry_id, entry_id::text, prev_hash, hash, expected_seq, prev_hash <> previous,
       present, hash_ok
  from (select *, coalesce(hash = encode(sha256(convert_to(
                    prev_hash || encode(sha256(convert_to(doc, 'UTF8')), 'hex'), 'UTF8')), 'hex'),
                  false) as hash_ok
          from walk) checked
 where seq <> expected_seq or prev_hash <> previous or not present or not hash_ok
 order by seq
"""


def _seal_chain(conn: psycopg.Connection, book_id: uuid.UUID) -> list[Discrepancy]:
    # The check reads every seal, entry and posting of the book: hash joins, not
    # a nested loop over the grouped postings (seals' statistics lag the sealer).
    before = conn.execute(
        "select current_setting('enable_nestloop'), current_setting('work_mem'),"
        "       set_config('enable_nestloop', 'off', true), set_config('work_mem', '64MB', true)"
    ).fetchone()
    rows = conn.execute(_SEAL_CHECK, {"b": book_id, "genesis": GENESIS_HASH}).fetchall()
    conn.execute(
        "select set_config('enable_nestloop', %s, true), set_config('work_mem', %s, true)",
        (before[0], before[1]) if before else ("on", "4MB"),
    )
    python_side = load_canonical_entries(conn, book_id, [r[1] for r in rows if r[7] and not r[8]])
    found: list[Discrepancy] = []
    for seq, raw_id, entry_id, prev_hash, stored, expected_seq, broken, present, hash_ok in rows:
        if seq != expected_seq:
            found.append(Discrepancy("seal_chain", f"seq {expected_seq}", f"gap: next is {seq}"))
        if broken:
            found.append(
                Discrepancy("seal_chain", entry_id, f"seq {seq} does not name its predecessor")
            )
        if not present:
            found.append(Discrepancy("seal_chain", entry_id, "sealed entry missing"))
        elif not hash_ok and link_hash(prev_hash, python_side[raw_id]) != stored:
            found.append(
                Discrepancy(
                    "seal_chain",
                    entry_id,
                    f"entry {entry_id} (seq {seq}) differs from what was sealed",
                )
            )
    return found


def _unsealed(conn: psycopg.Connection, book_id: uuid.UUID) -> list[Discrepancy]:
    rows = conn.execute(
        "select e.id from journal_entries e where e.book_id = %s"
        " and not exists (select 1 from seals s where s.book_id = e.book_id and s.entry_id = e.id)"
        " and not exists (select 1 from unsealed_entries u"
        "                  where u.book_id = e.book_id and u.entry_id = e.id)",
        (book_id,),
    ).fetchall()
    return [Discrepancy("sealed", str(r[0]), "neither sealed nor queued for sealing") for r in rows]


def _daily_balances(conn: psycopg.Connection, book_id: uuid.UUID) -> list[Discrepancy]:
    rows = conn.execute(
        "with posted as ("
        "  select account_id, currency, effective_date as day, sum(amount) as total, count(*) as n"
        "    from postings where book_id = %(b)s group by 1, 2, 3"
        "), projected as ("
        "  select account_id, currency, balance_date as day, sum(amount) as total,"
        "         sum(postings_count) as n"
        "    from account_balances where book_id = %(b)s group by 1, 2, 3"
        ")"
        " select coalesce(p.account_id, m.account_id), coalesce(p.currency, m.currency),"
        "        coalesce(p.day, m.day), p.total, m.total"
        "   from posted p full join projected m"
        "     on m.account_id = p.account_id and m.currency = p.currency and m.day = p.day"
        "  where p.total is distinct from m.total or p.n is distinct from m.n",
        {"b": book_id},
    ).fetchall()
    return [
        Discrepancy(
            "daily_balances",
            str(account),
            f"{currency} on {day}: postings sum to {posted}, projection says {projected}",
        )
        for account, currency, day, posted, projected in rows
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
