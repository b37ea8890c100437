"""Matches between statement lines and postings, in PostgreSQL; and the report.

Matching writes only `statement_matches` and its link tables, never the
ledger. Every write on an account's matches takes a per-account advisory
lock, so two auto-match runs cannot both claim a line; the partial unique
indexes on live links and the commit-time balance trigger back this up.
"""

from __future__ import annotations

import gc
import json
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import msgspec
import psycopg
from psycopg import errors as pg
from psycopg.rows import dict_row

from adapters.reconciliation.matching import BankLine, BookPosting, Match, auto_match, book_posting
from adapters.reconciliation.statements import (
    LINE_SELECT,
    ReconciliationError,
    bank_account_of,
    line_json,
    parse_id,
)
from ledger.entries import Posting, build_entry
from ledger.errors import InvalidEntry, NotFound
from ledger.money import Money
from ledger.postgres.books import Account, get_account
from ledger.postgres.posting import post_entry
from ledger.postgres.queries import account_balance

# Postings this far around the statement lines are candidates for auto-matching.
CANDIDATE_DAYS = 60


def lock_account(conn: psycopg.Connection, book_id: uuid.UUID, account_id: uuid.UUID) -> None:
    conn.execute(
        "select pg_advisory_xact_lock(hashtextextended('ab_reconcile:' || %s::text, 0))",
        (f"{book_id}:{account_id}",),
    )


# --- loading plain data for the matcher -----------------------------------------------


def open_lines(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    account_id: uuid.UUID,
    statement_id: uuid.UUID | None = None,
) -> list[BankLine]:
    extra = " and l.statement_id = %(statement)s" if statement_id else ""
    rows = conn.execute(
        "select l.id::text, l.booking_date, l.amount, l.currency, l.bank_reference,"
        " l.end_to_end_id, l.counterparty_name, l.remittance_info, l.value_date"
        " from bank_statement_lines l"
        " where l.book_id = %(book)s and l.account_id = %(account)s" + extra + " and not exists"
        " (select 1 from statement_match_lines x where x.book_id = l.book_id"
        "  and x.line_id = l.id and x.released_at is null)",
        {"book": book_id, "account": account_id, "statement": statement_id},
    ).fetchall()
    return [BankLine(*r) for r in rows]


def open_postings(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    account_id: uuid.UUID,
    date_from: date,
    date_to: date,
) -> list[BookPosting]:
    rows = conn.execute(
        "select p.entry_id::text, p.line_no, p.effective_date, p.amount, p.currency, p.document,"
        " p.customer_id, e.memo, e.metadata::text, e.idempotency_key, e.reverses_entry_id::text"
        " from postings p join journal_entries e on e.book_id = p.book_id and e.id = p.entry_id"
        " where p.book_id = %(book)s and p.account_id = %(account)s"
        " and p.effective_date between %(from)s and %(to)s and not exists"
        " (select 1 from statement_match_postings x where x.book_id = p.book_id"
        "  and x.entry_id = p.entry_id and x.line_no = p.line_no and x.released_at is null)",
        {"book": book_id, "account": account_id, "from": date_from, "to": date_to},
    ).fetchall()
    return [
        book_posting(
            entry_id=r[0],
            line_no=r[1],
            effective_date=r[2],
            amount=r[3],
            currency=r[4],
            document=r[5],
            customer=r[6],
            memo=r[7],
            metadata=_metadata(r[8]),
            idempotency_key=r[9],
            reverses=r[10],
        )
        for r in rows
    ]


def _metadata(text: str) -> Any:
    """An entry's metadata from its jsonb text. msgspec decodes it several times faster
    than json.loads (psycopg's jsonb loader); the matcher reads only its strings."""
    if text == "{}":
        return {}
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:  # whatever msgspec refuses (numbers out of its range)
        return json.loads(text)


# --- writing matches ------------------------------------------------------------------


def insert_matches(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    account_id: uuid.UUID,
    matches: Sequence[Match],
    *,
    created_by: uuid.UUID | None = None,
    note: str = "",
    entry_id: uuid.UUID | None = None,
) -> list[uuid.UUID]:
    """Insert matches and their links in three statements, whatever their number.

    The id arrays go in binary (`%b`): as text literals, parsing 100,000 uuids
    cost PostgreSQL more than inserting them."""
    if not matches:
        return []
    ids = [uuid.uuid4() for _ in matches]
    line_links = [(m_id, uuid.UUID(x)) for m_id, m in zip(ids, matches, strict=True)
                  for x in m.line_ids]  # fmt: skip
    posting_links = [(m_id, uuid.UUID(e), n) for m_id, m in zip(ids, matches, strict=True)
                     for e, n in m.postings]  # fmt: skip
    try:
        conn.execute(
            "insert into statement_matches (book_id, account_id, created_by, note, entry_id,"
            " id, currency, rule, amount) select %s, %s, %s, %s, %s, t.* from"
            " unnest(%b::uuid[], %s::text[], %s::text[], %t::numeric[]) t",
            (book_id, account_id, created_by, note, entry_id, ids,
             [m.currency for m in matches], [m.rule for m in matches],
             [m.amount for m in matches]),
        )  # fmt: skip
        if line_links:
            conn.execute(
                "insert into statement_match_lines (book_id, match_id, line_id)"
                " select %s, t.* from unnest(%b::uuid[], %b::uuid[]) t",
                (book_id, [a for a, _ in line_links], [b for _, b in line_links]),
            )
        if posting_links:
            conn.execute(
                "insert into statement_match_postings (book_id, match_id, entry_id, line_no)"
                " select %s, t.* from unnest(%b::uuid[], %b::uuid[], %s::int[]) t",
                (book_id, [a for a, _, _ in posting_links], [b for _, b, _ in posting_links],
                 [c for _, _, c in posting_links]),
            )  # fmt: skip
    except pg.UniqueViolation as exc:
        raise ReconciliationError(
            409, "already_matched", "a line or posting is already in a live match; undo it first"
        ) from exc
    return ids


@dataclass(frozen=True, slots=True)
class AutoMatchOutcome:
    account: Account
    lines_considered: int
    postings_considered: int
    matches: list[tuple[uuid.UUID, Match]]
    unmatched_lines: int

    def json(self) -> dict[str, Any]:
        by_rule: dict[str, int] = defaultdict(int)
        for _, match in self.matches:
            by_rule[match.rule] += 1
        matched_lines = sum(len(m.line_ids) for _, m in self.matches)
        return {
            "account": self.account.name,
            "lines_considered": self.lines_considered,
            "postings_considered": self.postings_considered,
            "matched": len(self.matches),
            "matched_lines": matched_lines,
            "unmatched_lines": self.unmatched_lines,
            "match_rate": (
                str((Decimal(matched_lines) / self.lines_considered).quantize(Decimal("0.0001")))
                if self.lines_considered
                else None
            ),
            "by_rule": dict(by_rule),
            "matches": [
                {
                    "id": str(match_id),
                    "rule": m.rule,
                    "amount": str(m.amount),
                    "currency": m.currency,
                    "lines": list(m.line_ids),
                    "postings": [{"entry_id": e, "line_no": n} for e, n in m.postings],
                }
                for match_id, m in self.matches
            ],
        }


def run_auto_match(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    *,
    account_ref: str | None = None,
    statement_ref: str | None = None,
    created_by: uuid.UUID | None = None,
    window_days: int = 3,
) -> AutoMatchOutcome:
    statement_id = parse_id(statement_ref, "bank statement") if statement_ref else None
    if statement_id is not None:
        row = conn.execute(
            "select account_id from bank_statements where book_id = %s and id = %s",
            (book_id, statement_id),
        ).fetchone()
        if row is None:
            raise NotFound(f"bank statement {statement_ref} does not exist in this book")
        account = get_account(conn, book_id, str(row[0]))
        if account_ref and get_account(conn, book_id, account_ref).id != account.id:
            raise InvalidEntry(f"bank statement {statement_ref} belongs to {account.name}")
    elif account_ref:
        account = get_account(conn, book_id, account_ref)
    else:
        raise InvalidEntry("name the `account` (or the `statement`) to auto-match")
    bank_account_of(account)
    lock_account(conn, book_id, account.id)
    with _collector_paused():
        return _auto_match_locked(conn, book_id, account, statement_id, created_by, window_days)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """A run holds a few objects per line and posting (100,000s), none in a cycle; the
    cyclic collector's full passes would walk all of them again and again for nothing."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _auto_match_locked(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    account: Account,
    statement_id: uuid.UUID | None,
    created_by: uuid.UUID | None,
    window_days: int,
) -> AutoMatchOutcome:
    lines = open_lines(conn, book_id, account.id, statement_id)
    settled = _settle_collections(conn, book_id, account, lines, created_by)
    if settled:
        lines = open_lines(conn, book_id, account.id, statement_id)
    if not lines:
        return AutoMatchOutcome(account, len(settled), 0, settled, 0)
    margin = timedelta(days=CANDIDATE_DAYS)
    postings = open_postings(
        conn,
        book_id,
        account.id,
        min(x.booking_date for x in lines) - margin,
        max(x.booking_date for x in lines) + margin,
    )
    result = auto_match(lines, postings, window_days=window_days)
    ids = insert_matches(conn, book_id, account.id, result.matches, created_by=created_by)
    return AutoMatchOutcome(
        account,
        len(lines) + len(settled),
        len(postings),
        settled + list(zip(ids, result.matches, strict=True)),
        len(result.unmatched_lines),
    )


def _settle_collections(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    account: Account,
    lines: Sequence[BankLine],
    created_by: uuid.UUID | None,
) -> list[tuple[uuid.UUID, Match]]:
    """Lines that settle a direct-debit collection (adapters.collections.settlement):
    its Bank | Clearing entry is posted and the line matched to the bank posting."""
    from adapters.collections.settlement import settle_from_lines

    found = [
        Match("created_entry", (line.id,), ((str(entry_id), 1),), line.amount, line.currency)
        for line, entry_id in settle_from_lines(conn, book_id, account.name, lines)
    ]
    note = "direct-debit collection settled"
    ids = insert_matches(conn, book_id, account.id, found, created_by=created_by, note=note)
    return list(zip(ids, found, strict=True))


def create_match(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    *,
    line_ids: Sequence[str],
    postings: Sequence[tuple[str, int]],
    entries: Sequence[str] = (),
    note: str = "",
    created_by: uuid.UUID | None = None,
    rule: str = "manual",
    entry_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """A manual match: lines and postings of one account whose amounts agree in sum."""
    lines = sorted({parse_id(x, "statement line") for x in line_ids})
    keys = {(parse_id(e, "journal entry"), int(n)) for e, n in postings}
    rows = conn.execute(
        "select id, account_id, amount, currency from bank_statement_lines"
        " where book_id = %s and id = any(%s)",
        (book_id, lines),
    ).fetchall()
    if len(rows) != len(lines):
        missing = sorted(set(map(str, lines)) - {str(r[0]) for r in rows})
        raise NotFound(f"statement line(s) {', '.join(missing)} do not exist in this book")
    account_ids = {r[1] for r in rows}
    if entries:
        if len(account_ids) != 1:
            raise InvalidEntry("name postings by (entry_id, line_no) when no line is matched")
        found = conn.execute(
            "select entry_id, line_no from postings where book_id = %s and entry_id = any(%s)"
            " and account_id = %s",
            (book_id, [parse_id(e, "journal entry") for e in entries], next(iter(account_ids))),
        ).fetchall()
        named = {parse_id(e, "journal entry") for e in entries}
        without = named - {r[0] for r in found}
        if without:
            raise InvalidEntry(
                f"journal entry {sorted(map(str, without))[0]} has no posting on the "
                "statement's account"
            )
        keys |= {(r[0], r[1]) for r in found}
    posting_rows = conn.execute(
        "select p.entry_id, p.line_no, p.account_id, p.amount, p.currency from postings p"
        " join unnest(%s::uuid[], %s::int[]) k(entry_id, line_no)"
        " on k.entry_id = p.entry_id and k.line_no = p.line_no where p.book_id = %s",
        ([k[0] for k in keys], [k[1] for k in keys], book_id),
    ).fetchall()
    if len(posting_rows) != len(keys):
        found_keys = {(r[0], r[1]) for r in posting_rows}
        e, n = sorted(keys - found_keys)[0]
        raise NotFound(f"posting {n} of journal entry {e} does not exist in this book")
    if len(lines) + len(keys) < 2:
        raise InvalidEntry("a match links at least two items: statement lines and postings")
    account_ids |= {r[2] for r in posting_rows}
    currencies = {r[3] for r in rows} | {r[4] for r in posting_rows}
    if len(account_ids) != 1:
        raise ReconciliationError(
            422,
            "account_mismatch",
            "the statement lines and postings must all be on one ledger account",
        )
    if len(currencies) != 1:
        raise ReconciliationError(
            422, "currency_mismatch", "the statement lines and postings must share one currency"
        )
    line_sum = sum((r[2] for r in rows), Decimal(0))
    posting_sum = sum((r[3] for r in posting_rows), Decimal(0))
    if line_sum != posting_sum or (not lines and posting_sum != 0) or (not keys and line_sum != 0):
        raise ReconciliationError(
            422,
            "match_amounts_differ",
            f"the statement lines sum to {line_sum} but the postings to {posting_sum}; a match "
            "needs equal sums (post the difference, e.g. a bank fee, and include it).",
            lines_total=str(line_sum),
            postings_total=str(posting_sum),
        )
    account_id = next(iter(account_ids))
    account = get_account(conn, book_id, str(account_id))
    bank_account_of(account)
    lock_account(conn, book_id, account_id)
    _check_free(conn, book_id, lines, sorted(keys))
    match = Match(
        rule,
        tuple(str(x) for x in lines),
        tuple((str(e), n) for e, n in sorted(keys)),
        posting_sum,
        next(iter(currencies)),
    )
    (match_id,) = insert_matches(
        conn, book_id, account_id, [match], created_by=created_by, note=note, entry_id=entry_id
    )
    return get_match(conn, book_id, str(match_id))


def _check_free(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    lines: Sequence[uuid.UUID],
    keys: Sequence[tuple[uuid.UUID, int]],
) -> None:
    taken = conn.execute(
        "select line_id::text, match_id from statement_match_lines where book_id = %s"
        " and line_id = any(%s) and released_at is null"
        " union all select entry_id::text || '/' || line_no, match_id"
        " from statement_match_postings x join unnest(%s::uuid[], %s::int[]) k(e, n)"
        " on k.e = x.entry_id and k.n = x.line_no where x.book_id = %s and released_at is null",
        (book_id, list(lines), [k[0] for k in keys], [k[1] for k in keys], book_id),
    ).fetchall()
    if taken:
        item, match_id = taken[0]
        raise ReconciliationError(
            409,
            "already_matched",
            f"{item} is already matched (match {match_id}); undo that match first",
            match_id=str(match_id),
        )


def undo_match(
    conn: psycopg.Connection, book_id: uuid.UUID, match_ref: str, by: uuid.UUID | None = None
) -> dict[str, Any]:
    match_id = parse_id(match_ref, "match")
    row = conn.execute(
        "select account_id, undone_at from statement_matches where book_id = %s and id = %s",
        (book_id, match_id),
    ).fetchone()
    if row is None:
        raise NotFound(f"match {match_ref} does not exist in this book")
    lock_account(conn, book_id, row[0])
    row = conn.execute(
        "update statement_matches set undone_at = now(), undone_by = %s"
        " where book_id = %s and id = %s and undone_at is null returning id",
        (by, book_id, match_id),
    ).fetchone()
    if row is None:
        raise ReconciliationError(409, "already_undone", f"match {match_ref} was already undone")
    for table in ("statement_match_lines", "statement_match_postings"):
        conn.execute(
            f"update {table} set released_at = now()"  # fixed table names
            " where book_id = %s and match_id = %s",
            (book_id, match_id),
        )
    return get_match(conn, book_id, match_ref)


def get_match(conn: psycopg.Connection, book_id: uuid.UUID, match_ref: str) -> dict[str, Any]:
    match_id = parse_id(match_ref, "match")
    found = list_matches(conn, book_id, match_id=match_id, include_undone=True)
    if not found:
        raise NotFound(f"match {match_ref} does not exist in this book")
    return found[0]


def list_matches(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    *,
    match_id: uuid.UUID | None = None,
    account_id: uuid.UUID | None = None,
    include_undone: bool = False,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    clauses = ["m.book_id = %(book)s"]
    params: dict[str, Any] = {"book": book_id, "limit": limit}
    if match_id is not None:
        clauses.append("m.id = %(id)s")
        params["id"] = match_id
    if account_id is not None:
        clauses.append("m.account_id = %(account)s")
        params["account"] = account_id
    if not include_undone:
        clauses.append("m.undone_at is null")
    sql = f"""
select m.id, a.name as account, m.currency, m.rule, m.amount, m.note, m.entry_id,
       m.created_at, m.undone_at,
       coalesce((select json_agg(json_build_object('id', l.id, 'amount', l.amount::text,
                  'booking_date', l.booking_date, 'bank_reference', l.bank_reference)
                  order by l.booking_date, l.id)
                   from statement_match_lines x join bank_statement_lines l
                     on l.book_id = x.book_id and l.id = x.line_id
                  where x.book_id = m.book_id and x.match_id = m.id), '[]') as lines,
       coalesce((select json_agg(json_build_object('entry_id', p.entry_id,
                  'line_no', p.line_no, 'amount', p.amount::text,
                  'effective_date', p.effective_date) order by p.entry_id, p.line_no)
                   from statement_match_postings x join postings p
                     on p.book_id = x.book_id and p.entry_id = x.entry_id
                    and p.line_no = x.line_no
                  where x.book_id = m.book_id and x.match_id = m.id), '[]') as postings
  from statement_matches m join accounts a on a.book_id = m.book_id and a.id = m.account_id
 where {" and ".join(clauses)} order by m.created_at, m.id limit %(limit)s"""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(sql, params).fetchall()
    return [
        {
            "id": str(r["id"]),
            "account": r["account"],
            "currency": r["currency"],
            "rule": r["rule"],
            "amount": str(r["amount"]),
            "note": r["note"],
            "entry_id": str(r["entry_id"]) if r["entry_id"] else None,
            "status": "undone" if r["undone_at"] else "live",
            "created_at": r["created_at"].isoformat(),
            "undone_at": r["undone_at"].isoformat() if r["undone_at"] else None,
            "lines": r["lines"],
            "postings": r["postings"],
        }
        for r in rows
    ]


# --- an entry for an unmatched line ---------------------------------------------------


def get_line(
    conn: psycopg.Connection, book_id: uuid.UUID, statement_ref: str, line_ref: str
) -> dict[str, Any]:
    """A statement's line by its number in the statement or by its id."""
    statement_id = parse_id(statement_ref, "bank statement")
    if line_ref.isdigit():
        clause = " and l.statement_id = %s and l.line_no = %s"
        value: tuple[Any, ...] = (statement_id, int(line_ref))
    else:
        clause = " and l.statement_id = %s and l.id = %s"
        value = (statement_id, parse_id(line_ref, "statement line"))
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(LINE_SELECT + clause, (book_id, *value)).fetchone()
    if row is None:
        raise NotFound(f"statement {statement_ref} has no line {line_ref}")
    return row


def entry_from_line(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    statement_ref: str,
    line_ref: str,
    *,
    counter_account: str,
    memo: str | None = None,
    effective_date: date | None = None,
    metadata: dict[str, Any] | None = None,
    created_by: uuid.UUID | None = None,
) -> dict[str, Any]:
    """Post the bank line's other side (a fee, interest) and match the line to it."""
    line = get_line(conn, book_id, statement_ref, line_ref)
    account = get_account(conn, book_id, str(line["account_id"]))
    lock_account(conn, book_id, account.id)
    line = get_line(conn, book_id, statement_ref, line_ref)  # re-read under the lock
    if line["match_id"] is not None:
        raise ReconciliationError(
            409,
            "already_matched",
            f"line {line_ref} is already matched (match {line['match_id']}); undo it first",
            match_id=str(line["match_id"]),
        )
    counter = get_account(conn, book_id, counter_account)
    if counter.id == account.id:
        raise InvalidEntry("the counter-account must differ from the statement's account")
    amount = Money.exact(line["amount"], line["currency"])
    description = line["remittance_info"] or line["counterparty_name"] or "bank statement line"
    entry = build_entry(
        effective_date or line["booking_date"],
        memo if memo is not None else f"Bank: {description}"[:1000],
        [Posting(account.name, amount), Posting(counter.name, -amount)],
        metadata={
            **(metadata or {}),
            "bank_reference": line["bank_reference"],
            "statement_line": str(line["id"]),
        },
        idempotency_key=f"statement-line:{line['id']}",
    )
    posted = post_entry(conn, book_id, entry)
    match = create_match(
        conn,
        book_id,
        line_ids=[str(line["id"])],
        postings=[(str(posted.id), 1)],
        note=f"entry created from statement line {line['line_no']}",
        created_by=created_by,
        rule="created_entry",
        entry_id=posted.id,
    )
    return {"entry_id": str(posted.id), "created": posted.created, "match": match,
            "line": line_json({**line, "match_id": match["id"]})}  # fmt: skip


# --- the reconciliation report --------------------------------------------------------


def reconciliation_report(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    account_ref: str,
    as_of: date,
    currency: str | None = None,
) -> dict[str, Any]:
    """Book balance against the bank's, with the outstanding items between them.

    adjusted bank = bank balance + postings not yet on a statement;
    adjusted book = book balance + statement lines not yet in the book;
    the account reconciles when the two agree. An item counts as cleared at
    `as_of` when its live match has every line and posting dated by then.
    """
    account = get_account(conn, book_id, account_ref)
    bank_account_of(account)
    params: dict[str, Any] = {"book": book_id, "account": account.id, "as_of": as_of}
    if currency is None:
        row = conn.execute(
            "select currency from bank_statements where book_id = %(book)s"
            " and account_id = %(account)s order by closing_date desc nulls last,"
            " created_at desc limit 1",
            params,
        ).fetchone()
        currency = row[0] if row else (account.currencies[0] if account.currencies else None)
    if currency is None:
        raise ReconciliationError(
            422, "no_statements", f"{account.name} has no bank statement to reconcile against"
        )
    params["currency"] = currency
    book_balance = account_balance(conn, book_id, account.id, as_of).get(currency, Decimal(0))
    bank_balance, anchor = _bank_balance(conn, params)
    start_row = conn.execute(
        "select min(coalesce(opening_date, closing_date)) from bank_statements"
        " where book_id = %(book)s and account_id = %(account)s and currency = %(currency)s",
        params,
    ).fetchone()
    params["start"] = start_row[0] if start_row and start_row[0] else date.min
    cleared = """
      with cleared as (
        select m.id from statement_matches m
         where m.book_id = %(book)s and m.account_id = %(account)s and m.undone_at is null
           and not exists (select 1 from statement_match_lines x join bank_statement_lines l
                             on l.book_id = x.book_id and l.id = x.line_id
                            where x.book_id = m.book_id and x.match_id = m.id
                              and l.booking_date > %(as_of)s)
           and not exists (select 1 from statement_match_postings x join postings p
                             on p.book_id = x.book_id and p.entry_id = x.entry_id
                            and p.line_no = x.line_no
                            where x.book_id = m.book_id and x.match_id = m.id
                              and p.effective_date > %(as_of)s)
      )"""
    with conn.cursor(row_factory=dict_row) as cur:
        lines = cur.execute(
            cleared
            + """
            select l.id, l.statement_id, l.line_no, l.booking_date, l.amount,
                   l.bank_reference, l.counterparty_name, l.remittance_info
              from bank_statement_lines l
             where l.book_id = %(book)s and l.account_id = %(account)s
               and l.currency = %(currency)s and l.booking_date <= %(as_of)s
               and not exists (select 1 from statement_match_lines x join cleared c
                                 on c.id = x.match_id
                                where x.book_id = l.book_id and x.line_id = l.id
                                  and x.released_at is null)
             order by l.booking_date, l.id""",
            params,
        ).fetchall()
        postings = cur.execute(
            cleared
            + """
            select p.entry_id, p.line_no, p.effective_date, p.amount, p.document,
                   p.customer_id, e.memo
              from postings p join journal_entries e on e.book_id = p.book_id
                                                   and e.id = p.entry_id
             where p.book_id = %(book)s and p.account_id = %(account)s
               and p.currency = %(currency)s
               and p.effective_date between %(start)s and %(as_of)s
               and not exists (select 1 from statement_match_postings x join cleared c
                                 on c.id = x.match_id
                                where x.book_id = p.book_id and x.entry_id = p.entry_id
                                  and x.line_no = p.line_no and x.released_at is null)
             order by p.effective_date, p.entry_id, p.line_no""",
            params,
        ).fetchall()
    lines_total = sum((r["amount"] for r in lines), Decimal(0))
    postings_total = sum((r["amount"] for r in postings), Decimal(0))
    adjusted_book = book_balance + lines_total
    adjusted_bank = None if bank_balance is None else bank_balance + postings_total
    unexplained = None if adjusted_bank is None else adjusted_book - adjusted_bank
    return {
        "account": account.name,
        "account_id": str(account.id),
        "currency": currency,
        "as_of": as_of.isoformat(),
        "since": None if params["start"] == date.min else params["start"].isoformat(),
        "book_balance": str(book_balance),
        "statement_balance": None if bank_balance is None else str(bank_balance),
        "statement_balance_from": anchor,
        "difference": None if bank_balance is None else str(bank_balance - book_balance),
        "outstanding_postings": {
            "description": "in the book, not yet on a bank statement",
            "count": len(postings),
            "total": str(postings_total),
            "items": [_posting_item(r) for r in postings],
        },
        "outstanding_lines": {
            "description": "on a bank statement, not yet in the book",
            "count": len(lines),
            "total": str(lines_total),
            "items": [_line_item(r) for r in lines],
        },
        "adjusted_book_balance": str(adjusted_book),
        "adjusted_statement_balance": None if adjusted_bank is None else str(adjusted_bank),
        "unexplained_difference": None if unexplained is None else str(unexplained),
        "reconciled": unexplained is not None and unexplained == 0,
    }


def _bank_balance(
    conn: psycopg.Connection, params: dict[str, Any]
) -> tuple[Decimal | None, dict[str, Any] | None]:
    """The bank's balance at the end of `as_of`, from the nearest statement balance."""
    row = conn.execute(
        "select id, closing_balance, closing_date from bank_statements"
        " where book_id = %(book)s and account_id = %(account)s and currency = %(currency)s"
        " and closing_balance is not null and closing_date <= %(as_of)s"
        " order by closing_date desc, created_at desc limit 1",
        params,
    ).fetchone()
    if row is not None:
        after = conn.execute(
            "select coalesce(sum(amount), 0) from bank_statement_lines where book_id = %(book)s"
            " and account_id = %(account)s and currency = %(currency)s"
            " and booking_date > %(day)s and booking_date <= %(as_of)s",
            {**params, "day": row[2]},
        ).fetchone()
        extra = after[0] if after else Decimal(0)
        anchor = {"statement_id": str(row[0]), "closing_date": row[2].isoformat(),
                  "closing_balance": str(row[1]), "lines_after": str(extra)}  # fmt: skip
        return row[1] + extra, anchor
    row = conn.execute(
        "select id, opening_balance, opening_date from bank_statements"
        " where book_id = %(book)s and account_id = %(account)s and currency = %(currency)s"
        " and opening_balance is not null and opening_date <= %(as_of)s"
        " order by opening_date, created_at limit 1",
        params,
    ).fetchone()
    if row is None:
        return None, None
    after = conn.execute(
        "select coalesce(sum(amount), 0) from bank_statement_lines where book_id = %(book)s"
        " and account_id = %(account)s and currency = %(currency)s"
        " and booking_date >= %(day)s and booking_date <= %(as_of)s",
        {**params, "day": row[2]},
    ).fetchone()
    extra = after[0] if after else Decimal(0)
    anchor = {"statement_id": str(row[0]), "opening_date": row[2].isoformat(),
              "opening_balance": str(row[1]), "lines_after": str(extra)}  # fmt: skip
    return row[1] + extra, anchor


def _posting_item(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "entry_id": str(r["entry_id"]),
        "line_no": r["line_no"],
        "effective_date": r["effective_date"].isoformat(),
        "amount": str(r["amount"]),
        "document": r["document"],
        "customer": r["customer_id"],
        "memo": r["memo"],
    }


def _line_item(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(r["id"]),
        "statement_id": str(r["statement_id"]),
        "line_no": r["line_no"],
        "booking_date": r["booking_date"].isoformat(),
        "amount": str(r["amount"]),
        "bank_reference": r["bank_reference"],
        "counterparty_name": r["counterparty_name"],
        "remittance_info": r["remittance_info"],
    }
