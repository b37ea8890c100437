"""Posting journal entries: one SQL statement for any number of entries.

Entries and their postings are inserted by a single statement built from
arrays (`unnest`), so a batch of 1,000 entries costs one round trip. The
database checks every invariant; this module resolves account names, makes
idempotent replays return the original entry, and reads entries back.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import msgspec
import psycopg
from psycopg.rows import dict_row

from ledger.entries import JournalEntry, Posting, build_entry, reversal_postings
from ledger.errors import IdempotencyConflict, InvalidEntry, NotFound
from ledger.money import Money, minor_unit_text


@dataclass(frozen=True, slots=True)
class PostedEntry:
    id: uuid.UUID
    book_id: uuid.UUID
    effective_date: date
    recorded_at: datetime
    memo: str
    metadata: dict[str, Any]
    idempotency_key: str
    reverses: uuid.UUID | None
    postings: tuple[Posting, ...]
    created: bool = True  # False when an idempotent replay returned the original
    sequence: int | None = None  # the seal's sequence number, once sealed
    account_ids: tuple[uuid.UUID, ...] = field(default=())


def _default(value: object) -> object:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


# Decimals as strings (never floats), keys sorted so equal content hashes equally.
_ENCODER = msgspec.json.Encoder(decimal_format="string", order="sorted", enc_hook=_default)


def request_hash(entry: JournalEntry) -> str:
    """Fingerprint of what was asked, to tell a replay from a conflicting reuse of a key."""
    document = (
        entry.effective_date,
        entry.memo,
        entry.metadata,
        entry.reverses,
        [
            (p.account, p.amount.normalize(), p.currency, p.customer, p.document, p.dimensions)
            for p in entry.postings
        ],
    )
    return hashlib.sha256(_ENCODER.encode(document)).hexdigest()


class AccountDirectory:
    """Account name → id, per book. Names and ids never change once created
    (a trigger forbids it), so a process can keep what it has looked up."""

    def __init__(self) -> None:
        self._ids: dict[tuple[uuid.UUID, str], uuid.UUID] = {}

    def resolve(
        self, conn: psycopg.Connection, book_id: uuid.UUID, names: Sequence[str]
    ) -> dict[str, uuid.UUID]:
        found, missing = self._cached(book_id, names)
        if missing:
            rows = conn.execute(_ACCOUNT_IDS, (book_id, missing)).fetchall()
            self._learn(book_id, rows, found, names)
        return found

    async def resolve_async(
        self, conn: psycopg.AsyncConnection, book_id: uuid.UUID, names: Sequence[str]
    ) -> dict[str, uuid.UUID]:
        found, missing = self._cached(book_id, names)
        if missing:
            cur = await conn.execute(_ACCOUNT_IDS, (book_id, missing))
            self._learn(book_id, await cur.fetchall(), found, names)
        return found

    def _cached(
        self, book_id: uuid.UUID, names: Sequence[str]
    ) -> tuple[dict[str, uuid.UUID], list[str]]:
        ids = self._ids
        found: dict[str, uuid.UUID] = {}
        missing: set[str] = set()
        for name in names:
            account_id = ids.get((book_id, name))
            if account_id is None:
                missing.add(name)
            else:
                found[name] = account_id
        return found, sorted(missing)

    def _learn(
        self,
        book_id: uuid.UUID,
        rows: Sequence[tuple[Any, ...]],
        found: dict[str, uuid.UUID],
        names: Sequence[str],
    ) -> None:
        for name, account_id in rows:
            self._ids[(book_id, name)] = account_id
            found[name] = account_id
        unknown = sorted(set(names) - found.keys())
        if unknown:
            raise NotFound(
                f"unknown account(s): {', '.join(unknown)}; create them first (POST /v1/accounts)",
                accounts=unknown,
            )


_ACCOUNT_IDS = "select name, id from accounts where book_id = %s and name = any(%s)"

DIRECTORY = AccountDirectory()

# Entries and postings travel as two JSON documents: PostgreSQL parses them
# faster than psycopg can adapt a dozen Python lists to arrays.
_INSERT = """
with entry_rows as (
  select * from json_to_recordset(%(entries)s::json)
         as t(id uuid, effective_date date, memo text, metadata jsonb, idempotency_key text,
              request_hash text, reverses uuid)
), inserted as (
  insert into journal_entries
         (book_id, id, effective_date, memo, metadata, idempotency_key, request_hash,
          reverses_entry_id)
  select %(book)s, id, effective_date, memo, coalesce(metadata, '{}'), idempotency_key,
         request_hash, reverses
    from entry_rows
  on conflict (book_id, idempotency_key) do nothing
  returning id, recorded_at, effective_date
), posting_rows as (
  insert into postings
         (book_id, entry_id, line_no, account_id, amount, currency, effective_date,
          customer_id, document, dimensions)
  select %(book)s, p.entry_id, p.line_no, p.account_id, p.amount, p.currency,
         i.effective_date, p.customer_id, p.document, coalesce(p.dimensions, '{}')
    from json_to_recordset(%(postings)s::json)
         as p(entry_id uuid, line_no int, account_id uuid, amount numeric, currency text,
              customer_id text, document text, dimensions jsonb)
    join inserted i on i.id = p.entry_id
  returning 1
)
select id, recorded_at, (select count(*) from posting_rows) from inserted
"""


class _Prepared:
    """An insert's parameters, and what is needed to read its result."""

    __slots__ = ("entries", "hashes", "ids", "keys", "params")

    def __init__(
        self,
        book_id: uuid.UUID,
        entries: Sequence[JournalEntry],
        account_ids: Mapping[str, uuid.UUID],
    ) -> None:
        self.entries = entries
        self.ids = ids = [uuid.uuid4() for _ in entries]
        self.keys = keys = [
            e.idempotency_key or f"auto:{i}" for e, i in zip(entries, ids, strict=True)
        ]
        self.hashes = hashes = [request_hash(e) for e in entries]
        entry_rows = []
        posting_rows = []
        for entry_id, entry, key, digest in zip(ids, entries, keys, hashes, strict=True):
            entry_rows.append(
                {
                    "id": entry_id,
                    "effective_date": entry.effective_date,
                    "memo": entry.memo,
                    "metadata": entry.metadata or None,
                    "idempotency_key": key,
                    "request_hash": digest,
                    "reverses": entry.reverses,
                }
            )
            for line_no, posting in enumerate(entry.postings, start=1):
                posting_rows.append(
                    {
                        "entry_id": entry_id,
                        "line_no": line_no,
                        "account_id": account_ids[posting.account],
                        "amount": minor_unit_text(posting.amount, posting.currency),
                        "currency": posting.currency,
                        "customer_id": posting.customer,
                        "document": posting.document,
                        "dimensions": posting.dimensions or None,
                    }
                )
        self.params = {
            "book": book_id,
            "entries": _ENCODER.encode(entry_rows).decode(),
            "postings": _ENCODER.encode(posting_rows).decode(),
        }

    def results(
        self, book_id: uuid.UUID, rows: Sequence[tuple[Any, ...]]
    ) -> tuple[list[PostedEntry | None], dict[str, int]]:
        """The posted entries, and (key → index) of those a replay must fill in."""
        recorded = {row[0]: row[1] for row in rows}
        results: list[PostedEntry | None] = []
        replayed: dict[str, int] = {}
        keys = self.keys
        for index, (entry_id, entry) in enumerate(zip(self.ids, self.entries, strict=True)):
            if entry_id in recorded:
                results.append(
                    PostedEntry(
                        id=entry_id,
                        book_id=book_id,
                        effective_date=entry.effective_date,
                        recorded_at=recorded[entry_id],
                        memo=entry.memo,
                        metadata=dict(entry.metadata),
                        idempotency_key=keys[index],
                        reverses=uuid.UUID(entry.reverses) if entry.reverses else None,
                        postings=entry.postings,
                    )
                )
            else:
                results.append(None)
                replayed[keys[index]] = index
        return results, replayed

    def replay(
        self,
        results: list[PostedEntry | None],
        replayed: Mapping[str, int],
        originals: Mapping[str, tuple[PostedEntry, str]],
    ) -> list[PostedEntry]:
        for key, index in replayed.items():
            original, stored_hash = originals[key]
            if stored_hash != self.hashes[index]:
                raise IdempotencyConflict(
                    f"idempotency key {key!r} was already used for a different entry "
                    f"({original.id}); use a new key for a new entry",
                    idempotency_key=key,
                    entry_id=str(original.id),
                )
            results[index] = original
        return [r for r in results if r is not None]


def post_entries(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    entries: Sequence[JournalEntry],
    directory: AccountDirectory = DIRECTORY,
) -> list[PostedEntry]:
    """Insert entries in the caller's transaction; replays return the originals.

    Each entry needs an idempotency key (one is made up when it has none). A
    key already used with other content raises IdempotencyConflict.
    """
    if not entries:
        return []
    account_ids = directory.resolve(conn, book_id, [p.account for e in entries for p in e.postings])
    prepared = _Prepared(book_id, entries, account_ids)
    rows = conn.execute(_INSERT, prepared.params).fetchall()
    results, replayed = prepared.results(book_id, rows)
    if not replayed:
        return results  # type: ignore[return-value]  # no None without a replay
    originals = load_entries_by_key(conn, book_id, list(replayed))
    return prepared.replay(results, replayed, originals)


def post_entry(conn: psycopg.Connection, book_id: uuid.UUID, entry: JournalEntry) -> PostedEntry:
    return post_entries(conn, book_id, [entry])[0]


async def post_entries_async(
    conn: psycopg.AsyncConnection,
    book_id: uuid.UUID,
    entries: Sequence[JournalEntry],
    directory: AccountDirectory = DIRECTORY,
) -> list[PostedEntry]:
    """post_entries on an asyncio connection (same statement, same results)."""
    if not entries:
        return []
    names = [p.account for e in entries for p in e.postings]
    account_ids = await directory.resolve_async(conn, book_id, names)
    prepared = _Prepared(book_id, entries, account_ids)
    cur = await conn.execute(_INSERT, prepared.params)
    results, replayed = prepared.results(book_id, await cur.fetchall())
    if not replayed:
        return results  # type: ignore[return-value]  # no None without a replay
    originals = await load_entries_by_key_async(conn, book_id, list(replayed))
    return prepared.replay(results, replayed, originals)


async def post_entry_async(
    conn: psycopg.AsyncConnection, book_id: uuid.UUID, entry: JournalEntry
) -> PostedEntry:
    return (await post_entries_async(conn, book_id, [entry]))[0]


_SELECT_ENTRIES = """
select e.id, e.book_id, e.effective_date, e.recorded_at, e.memo, e.metadata,
       e.idempotency_key, e.request_hash, e.reverses_entry_id, s.seq,
       coalesce(
         (select json_agg(json_build_array(a.name, p.amount::text, p.currency, p.customer_id,
                                           p.document, p.dimensions, a.id) order by p.line_no)
            from postings p join accounts a on a.book_id = p.book_id and a.id = p.account_id
           where p.book_id = e.book_id and p.entry_id = e.id), '[]') as postings
  from journal_entries e
  left join seals s on s.book_id = e.book_id and s.entry_id = e.id
 where e.book_id = %(book)s
"""


def _posted(row: dict[str, Any], created: bool = False) -> PostedEntry:
    postings = tuple(
        Posting(name, Money(Decimal(amount), currency), customer, document, dims)
        for name, amount, currency, customer, document, dims, _ in row["postings"]
    )
    return PostedEntry(
        id=row["id"],
        book_id=row["book_id"],
        effective_date=row["effective_date"],
        recorded_at=row["recorded_at"],
        memo=row["memo"],
        metadata=row["metadata"],
        idempotency_key=row["idempotency_key"],
        reverses=row["reverses_entry_id"],
        postings=postings,
        created=created,
        sequence=row["seq"],
        account_ids=tuple(uuid.UUID(p[6]) for p in row["postings"]),
    )


def load_entries_by_key(
    conn: psycopg.Connection, book_id: uuid.UUID, keys: Sequence[str]
) -> dict[str, tuple[PostedEntry, str]]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            _SELECT_ENTRIES + " and e.idempotency_key = any(%(keys)s)",
            {"book": book_id, "keys": list(keys)},
        ).fetchall()
    return {r["idempotency_key"]: (_posted(r), r["request_hash"]) for r in rows}


async def load_entries_by_key_async(
    conn: psycopg.AsyncConnection, book_id: uuid.UUID, keys: Sequence[str]
) -> dict[str, tuple[PostedEntry, str]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            _SELECT_ENTRIES + " and e.idempotency_key = any(%(keys)s)",
            {"book": book_id, "keys": list(keys)},
        )
        rows = await cur.fetchall()
    return {r["idempotency_key"]: (_posted(r), r["request_hash"]) for r in rows}


def get_entry(conn: psycopg.Connection, book_id: uuid.UUID, entry_id: str) -> PostedEntry:
    try:
        parsed = uuid.UUID(entry_id)
    except ValueError:
        raise NotFound(f"journal entry {entry_id!r} does not exist") from None
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            _SELECT_ENTRIES + " and e.id = %(id)s", {"book": book_id, "id": parsed}
        ).fetchone()
    if row is None:
        raise NotFound(f"journal entry {entry_id} does not exist in this book")
    return _posted(row)


@dataclass(frozen=True, slots=True)
class EntryFilter:
    date_from: date | None = None
    date_to: date | None = None
    account: uuid.UUID | None = None
    customer: str | None = None
    document: str | None = None


def list_entries(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    filters: EntryFilter,
    *,
    after: tuple[datetime, uuid.UUID] | None = None,
    limit: int = 100,
) -> list[PostedEntry]:
    """Entries in recorded order, keyset-paginated by (recorded_at, id)."""
    clauses: list[str] = []
    params: dict[str, Any] = {"book": book_id, "limit": limit}
    if filters.date_from:
        clauses.append("e.effective_date >= %(date_from)s")
        params["date_from"] = filters.date_from
    if filters.date_to:
        clauses.append("e.effective_date <= %(date_to)s")
        params["date_to"] = filters.date_to
    for column, value in (
        ("account_id", filters.account),
        ("customer_id", filters.customer),
        ("document", filters.document),
    ):
        if value is not None:
            clauses.append(
                f"exists (select 1 from postings f where f.book_id = e.book_id"
                f" and f.entry_id = e.id and f.{column} = %({column})s)"
            )
            params[column] = value
    if after is not None:
        clauses.append("(e.recorded_at, e.id) > (%(after_at)s, %(after_id)s)")
        params["after_at"], params["after_id"] = after
    where = "".join(f" and {c}" for c in clauses)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            _SELECT_ENTRIES + where + " order by e.recorded_at, e.id limit %(limit)s", params
        ).fetchall()
    return [_posted(r) for r in rows]


def reverse_entry(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    entry_id: str,
    *,
    effective_date: date | None = None,
    memo: str | None = None,
    idempotency_key: str | None = None,
) -> PostedEntry:
    """Post the entry that undoes `entry_id`, dated as given or on the original's date."""
    original = get_entry(conn, book_id, entry_id)
    when = effective_date or original.effective_date
    if when < original.effective_date:
        raise InvalidEntry("a reversal cannot be dated before the entry it reverses")
    entry = build_entry(
        when,
        memo if memo is not None else f"Reversal of {original.id}",
        reversal_postings(original.postings),
        metadata={"reverses": str(original.id)},
        idempotency_key=idempotency_key or f"reversal:{original.id}",
        reverses=str(original.id),
    )
    return post_entry(conn, book_id, entry)
