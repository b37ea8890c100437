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

from ledger.postgres.sealer import load_sealed_entries
from ledger.sealing import GENESIS_HASH, chain_hash

CHUNK = 5000


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
    rows = conn.execute(
        "select e.id, coalesce(string_agg(s.currency || ' ' || s.total::text, ', '), ''),"
        "       coalesce(sum(s.n), 0)"
        "  from journal_entries e"
        "  left join (select entry_id, currency, sum(amount) as total, count(*) as n"
        "               from postings where book_id = %s group by entry_id, currency) s"
        "    on s.entry_id = e.id"
        " where e.book_id = %s"
        " group by e.id"
        " having coalesce(sum(s.n), 0) < 2 or bool_or(s.total <> 0)",
        (book_id, book_id),
    ).fetchall()
    return [
        Discrepancy("balanced", str(entry_id), f"postings: {int(n)}; sums per currency: {sums}")
        for entry_id, sums, n in rows
    ]


def _seal_chain(conn: psycopg.Connection, book_id: uuid.UUID) -> list[Discrepancy]:
    found: list[Discrepancy] = []
    expected_seq, previous = 1, GENESIS_HASH
    with conn.cursor(name="seals_walk") as cursor:
        cursor.itersize = CHUNK
        cursor.execute(
            "select seq, entry_id, prev_hash, hash from seals where book_id = %s order by seq",
            (book_id,),
        )
        while rows := cursor.fetchmany(CHUNK):
            entries = load_sealed_entries(conn, book_id, [r[1] for r in rows])
            for seq, entry_id, prev_hash, stored in rows:
                if seq != expected_seq:
                    found.append(
                        Discrepancy("seal_chain", f"seq {expected_seq}", f"gap: next is {seq}")
                    )
                if prev_hash != previous:
                    found.append(
                        Discrepancy(
                            "seal_chain", str(entry_id), f"seq {seq} does not name its predecessor"
                        )
                    )
                entry = entries.get(entry_id)
                if entry is None:
                    found.append(Discrepancy("seal_chain", str(entry_id), "sealed entry missing"))
                elif chain_hash(prev_hash, entry) != stored:
                    found.append(
                        Discrepancy(
                            "seal_chain",
                            str(entry_id),
                            f"entry {entry_id} (seq {seq}) differs from what was sealed",
                        )
                    )
                expected_seq, previous = seq + 1, stored
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
