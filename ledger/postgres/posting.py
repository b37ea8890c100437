"""Posting journal entries: one SQL statement for any number of entries.

Entries and their postings are inserted by a single statement built from
arrays (`unnest`), so a batch of 1,000 entries costs one round trip. The
database checks every invariant; this module resolves account names, makes
idempotent replays return the original entry, and reads entries back.
"""

from __future__ import annotations

import hashlib
import os
import struct
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import msgspec
import psycopg
from psycopg.adapt import Dumper, PyFormat
from psycopg.pq import Format
from psycopg.rows import dict_row

from ledger.entries import JournalEntry, Posting, build_entry, reversal_postings
from ledger.errors import IdempotencyConflict, InvalidEntry, NotFound
from ledger.money import Money, quantum


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
    return request_hashes([entry])[0]


def request_hashes(entries: Iterable[JournalEntry]) -> list[str]:
    """request_hash of each entry, in one loop: a batch's ~40 % of building its
    parameters went to a call per entry and to Posting's amount and currency
    properties (p.money's attributes read directly here)."""
    encode = _ENCODER.encode
    sha256 = hashlib.sha256
    return [
        sha256(
            encode(
                (
                    e.effective_date,
                    e.memo,
                    e.metadata,
                    e.reverses,
                    [
                        (
                            p.account,
                            (m := p.money).amount.normalize(),
                            m.currency,
                            p.customer,
                            p.document,
                            p.dimensions,
                        )
                        for p in e.postings
                    ],
                )
            )
        ).hexdigest()
        for e in entries
    ]


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

    def known(self, book_id: uuid.UUID, names: Sequence[str]) -> dict[str, uuid.UUID] | None:
        """The ids when this process knows every name already (no query), else None."""
        found, missing = self._cached(book_id, names)
        return None if missing else found

    def _cached(
        self, book_id: uuid.UUID, names: Sequence[str]
    ) -> tuple[dict[str, uuid.UUID], list[str]]:
        ids = self._ids
        found: dict[str, uuid.UUID] = {}
        missing: set[str] = set()
        # Each name once: a batch names a few accounts thousands of times, and the
        # (book_id, name) key's hash calls UUID.__hash__, in Python (~1 ms for 2,500).
        for name in set(names):
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

# Entries and postings travel as one array per column (see PreparedEntries), unnested
# by one statement: no JSON for the server to parse, no parameter per row. The
# arrays are unnested in the select list (a ProjectSet, its rows made as they are
# read), not FROM unnest(a, b, ...) (a function scan that first copies each
# array's elements into a tuplestore of its own): ~8 % of the statement's CPU for
# 1,000 entries' postings, ~4 % more for the entries. Arrays of one length are
# read in step, as a multi-argument unnest reads them.
_ENTRY_ROWS = """
entry_rows as (
  select unnest(%(ids)s::uuid[]) as id, unnest(%(dates)s::date[]) as effective_date,
         unnest(%(memos)s::text[]) as memo, unnest(%(metadata)s::text[]) as metadata,
         unnest(%(keys)s::text[]) as idempotency_key,
         unnest(%(hashes)s::text[]) as request_hash, unnest(%(reverses)s::text[]) as reverses
)"""
# With ON CONFLICT the entries go in the order given, so of two with one key the
# first is written: numbered, and inserted in that order.
_ORDERED_ENTRY_ROWS = """
entry_rows as (
  select *
    from unnest(%(ids)s::uuid[], %(dates)s::date[], %(memos)s::text[], %(metadata)s::text[],
                %(keys)s::text[], %(hashes)s::text[], %(reverses)s::text[])
         with ordinality as t(id, effective_date, memo, metadata, idempotency_key,
                              request_hash, reverses, n)
)"""
# The postings' insert returns nothing: a data-modifying CTE runs to its end
# whether or not it is read.
_INSERTS = """, inserted as (
  insert into journal_entries
         (book_id, id, effective_date, memo, metadata, idempotency_key, request_hash,
          reverses_entry_id)
  select %(book)s, id, effective_date, memo, coalesce(metadata::jsonb, '{}'), idempotency_key,
         request_hash, reverses::uuid
    from entry_rows
  /* order and on conflict */
  returning id, recorded_at, effective_date
), posting_rows as (
  insert into postings
         (book_id, entry_id, line_no, account_id, amount, currency, effective_date,
          customer_id, document, dimensions)
  select %(book)s, p.entry_id, p.line_no, p.account_id, p.amount, p.currency,
         i.effective_date, p.customer_id, p.document, coalesce(p.dimensions::jsonb, '{}')
    from (select unnest(%(entry_ids)s::uuid[]) as entry_id,
                 unnest(%(line_nos)s::int2[]) as line_no,
                 unnest(%(accounts)s::uuid[]) as account_id,
                 unnest(%(amounts)s::numeric[]) as amount,
                 unnest(%(currencies)s::text[]) as currency,
                 unnest(%(customers)s::text[]) as customer_id,
                 unnest(%(documents)s::text[]) as document,
                 unnest(%(dimensions)s::text[]) as dimensions) as p
    join inserted i on i.id = p.entry_id
)"""


def _insert_ctes(on_conflict: str) -> str:
    """The inserts as common table expressions; `on_conflict` empty for a caller
    that wants a used key to raise unique_violation instead of replaying (then
    the entries' order does not matter: any used key fails the statement)."""
    if not on_conflict:
        return _ENTRY_ROWS + _INSERTS.replace("  /* order and on conflict */\n", "")
    return _ORDERED_ENTRY_ROWS + _INSERTS.replace(
        "/* order and on conflict */", "order by n\n  " + on_conflict
    )


# The id's 16 bytes (as bytea): the client matches them to the bytes it sent (a
# bytes object's hash is cached in C; a UUID's is Python, and formatting or
# parsing 1,000 ids as text costs ~2 ms). Fetched in binary (post_entries), so
# the server writes no recorded_at as text either.
_RESULT = "\nselect uuid_send(id), recorded_at from inserted"
_INSERT = "with" + _insert_ctes("on conflict (book_id, idempotency_key) do nothing") + _RESULT
# Without ON CONFLICT: no speculative insertion (a probe of the key's index before
# each row, a lock and a second WAL record per entry: ~5 % of the statement's CPU).
# A used key raises unique_violation; post_entries runs it in a savepoint and then
# takes _INSERT, which replays.
_INSERT_NEW = "with" + _insert_ctes("") + _RESULT
NEW_FIRST_FROM = 100  # entries in a call from which _INSERT_NEW goes first

_UUID_TIME_BITS = (1 << 48) - 1
_UUID_VERSION_7 = 0x7 << 76
_UUID_VARIANT = 0b10 << 62
_UUID_RAND_B = (1 << 62) - 1


def new_entry_ids(count: int) -> list[uuid.UUID]:
    """UUID version 7 ids (RFC 9562: 48 bits of Unix milliseconds, then 74 random
    bits; PostgreSQL 18's uuidv7() makes the same kind). Time-ordered, so a batch's
    entries and postings go to the right edge of the (book_id, id) and (book_id,
    entry_id, line_no) indexes, not to a random leaf page each: ~10 % of a
    1,000-entry batch, measured against uuid4. A call's ids share their
    millisecond and ascend in the order given (sorted random bits, as RFC 9562's
    monotonic method), so each key lands past the last one: the btree takes its
    rightmost-leaf fast path instead of a descent from the root for most rows."""
    head = ((time.time_ns() // 1_000_000) & _UUID_TIME_BITS) << 80 | _UUID_VERSION_7
    noise = os.urandom(10 * count)
    values = sorted(
        head | (bits >> 68) << 64 | _UUID_VARIANT | bits & _UUID_RAND_B
        for bits in (
            int.from_bytes(noise[start : start + 10]) for start in range(0, 10 * count, 10)
        )
    )
    return [_uuid(value) for value in values]


_UUID = uuid.UUID
_UUID_SAFE_UNKNOWN = uuid.SafeUUID.unknown
_new_object = object.__new__
_set_attribute = object.__setattr__  # UUID forbids setattr; its own __init__ uses this


def _uuid(value: int) -> uuid.UUID:
    """uuid.UUID(int=value) for a value known to be in range: the same two slots
    set, without __init__'s argument checks (~2.5x faster, ~0.7 ms a batch)."""
    made = _new_object(_UUID)
    _set_attribute(made, "int", value)
    _set_attribute(made, "is_safe", _UUID_SAFE_UNKNOWN)
    return made


def _json_text(value: Mapping[str, Any]) -> str | None:
    """A metadata or dimensions mapping as JSON text, None when empty (stored as {})."""
    return _ENCODER.encode(value).decode() if value else None


def _array(items: Iterable[str]) -> str:
    """An array literal of items that need no quoting (uuids, numbers, dates)."""
    return "{" + ",".join(items) + "}"


def text_array(items: Sequence[str | None]) -> str:
    """An array literal of any text: each item double-quoted with `\\` and `"`
    escaped (all array_in needs), None as NULL."""
    if not items:
        return "{}"
    present = [t for t in items if t is not None] if None in items else items
    if not present:
        return "{" + ",".join(["NULL"] * len(items)) + "}"
    joined = "".join(present)  # type: ignore[arg-type]  # no None left in it
    if '"' not in joined and "\\" not in joined:
        # Nothing to escape (the usual case): joined in C, not item by item.
        if len(present) == len(items):
            return '{"' + '","'.join(present) + '"}'  # type: ignore[arg-type]
        if "\x00" not in joined:
            # Each None as NUL, which no text holds (PostgreSQL refuses it), so
            # every quoted NUL is a None: still one join in C, then NULL for it.
            marked = ["\x00" if t is None else t for t in items]
            return ('{"' + '","'.join(marked) + '"}').replace('"\x00"', "NULL")
        return "{" + ",".join("NULL" if t is None else '"' + t + '"' for t in items) + "}"
    return (
        "{"
        + ",".join(
            "NULL" if t is None else '"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"'
            for t in items
        )
        + "}"
    )


class UuidArray(bytes):
    """A uuid[] in PostgreSQL's binary array format: the server copies 16 bytes
    an element (array_recv) where it parses 36 characters (array_in, uuid_in:
    ~3 ms of backend CPU for a 1,000-entry batch's 6,000 ids, ~0.13 ms so), and
    the client joins uuid.bytes in C instead of formatting str(uuid) (~2.5 ms).
    Sent by _UuidArrayDumper, which post_entries registers on its connection."""

    __slots__ = ()

    _SIZE = b"\x00\x00\x00\x10"  # each element's length: 16

    @classmethod
    def of(cls, items: Sequence[bytes]) -> UuidArray:
        if not items:
            return cls(_UUID_ARRAY_EMPTY)
        return cls(
            _UUID_ARRAY_HEAD + _DIMENSION.pack(len(items), 1) + cls._SIZE + cls._SIZE.join(items)
        )


# Header of a one-dimensional uuid[] without NULLs: ndim 1, no null bitmap, element
# type uuid (oid 2950), then the length and lower bound 1; an empty array has ndim 0.
_UUID_ARRAY_HEAD = struct.pack("!iiI", 1, 0, 2950)
_DIMENSION = struct.Struct("!ii")
_UUID_ARRAY_EMPTY = struct.pack("!iiI", 0, 0, 2950)


class _UuidArrayDumper(Dumper):
    format = Format.BINARY
    oid = 2951  # uuid[]

    def dump(self, obj: Any) -> bytes:
        return bytes(obj)


def binary_uuid_arrays(conn: psycopg.Connection | psycopg.AsyncConnection) -> None:
    """Let `conn` send UuidArray parameters (once per connection; a bytes subclass
    would otherwise go as bytea, which no uuid[] cast takes: an error, not
    wrong data)."""
    if conn.adapters.get_dumper(UuidArray, PyFormat.BINARY) is not _UuidArrayDumper:
        conn.adapters.register_dumper(UuidArray, _UuidArrayDumper)


# line_nos of entries of up to 15 postings: "{1,2,3}".
_LINE_NOS = ["{" + ",".join(str(n) for n in range(1, count + 1)) + "}" for count in range(16)]

# The same inserts as common table expressions of a caller's statement, for one
# that writes more beside the entries in that statement (the HTTP posting route
# stores its idempotent response there: one round trip). No ON CONFLICT: an
# idempotency key already used raises unique_violation on
# `uq_journal_entries_idempotency_key_book_id`, and the caller then takes
# post_entries' way, which replays. Binds PreparedEntries.params; `inserted`
# yields id, recorded_at, effective_date.
STRICT_INSERT_CTES = _insert_ctes("")


class PreparedEntries:
    """An insert's parameters, and what is needed to read its result.

    Each column is sent as one array literal, built with str.join: psycopg
    adapts a Python list element by element (~2 µs each, ~13 µs for a Decimal),
    more than the whole JSON path cost per row; array_in parses the literal in C.
    """

    __slots__ = ("entries", "hashes", "id_bytes", "ids", "keys", "params")

    def __init__(
        self,
        book_id: uuid.UUID,
        entries: Sequence[JournalEntry],
        account_ids: Mapping[str, uuid.UUID],
        *,
        binary: bool = False,
        ids: list[uuid.UUID] | None = None,
    ) -> None:
        """`binary`: the uuid columns as UuidArray (the connection must take them:
        binary_uuid_arrays), else as array literals like the others. `ids`: the
        entries' ids, when the caller made them (new_entry_ids, one per entry)."""
        self.entries = entries
        self.ids = ids = new_entry_ids(len(entries)) if ids is None else ids
        self.id_bytes = id_bytes = [i.bytes for i in ids]
        # An id is written as text only for an entry without a key (its made-up key).
        self.keys = keys = [
            e.idempotency_key or f"auto:{i}" for e, i in zip(entries, ids, strict=True)
        ]
        self.hashes = hashes = request_hashes(entries)
        # Column by column, each a comprehension over the batch's postings (one
        # loop appending to eight lists cost ~40 % more client CPU).
        postings = [p for e in entries for p in e.postings]
        counts = [len(e.postings) for e in entries]
        line_nos = [str(k) for n in counts for k in range(1, n + 1)]
        if binary:
            account_bytes = {name: account_id.bytes for name, account_id in account_ids.items()}
            id_column: str | UuidArray = UuidArray.of(id_bytes)
            entry_ids: str | UuidArray = UuidArray.of(
                [i for i, n in zip(id_bytes, counts, strict=True) for _ in range(n)]
            )
            accounts: str | UuidArray = UuidArray.of([account_bytes[p.account] for p in postings])
        else:
            account_texts = {name: str(account_id) for name, account_id in account_ids.items()}
            id_texts = [str(i) for i in ids]
            id_column = _array(id_texts)
            entry_ids = _array([i for i, n in zip(id_texts, counts, strict=True) for _ in range(n)])
            accounts = _array([account_texts[p.account] for p in postings])
        monies = [p.money for p in postings]
        currencies = [m.currency for m in monies]
        quanta = {c: quantum(c) for c in set(currencies)}
        # Written with exactly the currency's places ("12.50"), as stored.
        amounts = [str(m.amount.quantize(quanta[m.currency])) for m in monies]
        customers = [p.customer for p in postings]
        documents = [p.document for p in postings]
        dimensions = [_json_text(p.dimensions) if p.dimensions else None for p in postings]
        self.params = {
            "book": book_id,
            "ids": id_column,
            "dates": _array([e.effective_date.isoformat() for e in entries]),
            "memos": text_array([e.memo for e in entries]),
            "metadata": text_array([_json_text(e.metadata) for e in entries]),
            "keys": text_array(keys),
            "hashes": _array(hashes),
            "reverses": text_array([e.reverses for e in entries]),
            "entry_ids": entry_ids,
            "line_nos": _array(line_nos),
            "accounts": accounts,
            "amounts": _array(amounts),
            "currencies": text_array(currencies),
            "customers": text_array(customers),
            "documents": text_array(documents),
            "dimensions": text_array(dimensions),
        }

    @staticmethod
    def one(
        book_id: uuid.UUID,
        entry: JournalEntry,
        account_ids: Mapping[str, uuid.UUID],
        entry_id: uuid.UUID | None = None,
    ) -> tuple[uuid.UUID, str, str, dict[str, Any]]:
        """One entry's (id, id as text, idempotency key, params): the same params
        as PreparedEntries(book_id, [entry], account_ids).params, built without the
        batch's lists (~3x cheaper: the HTTP post sends one entry a request)."""
        if entry_id is None:
            entry_id = new_entry_ids(1)[0]
        id_text = str(entry_id)
        key = entry.idempotency_key or f"auto:{id_text}"
        postings = entry.postings
        count = len(postings)
        amounts = []
        currencies = []
        accounts = []
        dimensions: list[str | None] = []
        for posting in postings:
            money = posting.money
            currency = money.currency
            amount = money.amount
            places = quantum(currency)
            if amount.as_tuple().exponent != places.as_tuple().exponent:
                amount = amount.quantize(places)
            amounts.append(str(amount))  # written with exactly the currency's places
            currencies.append(currency)
            accounts.append(str(account_ids[posting.account]))
            dimensions.append(_json_text(posting.dimensions) if posting.dimensions else None)
        params = {
            "book": book_id,
            "ids": "{" + id_text + "}",
            "dates": "{" + entry.effective_date.isoformat() + "}",
            "memos": text_array([entry.memo]),
            "metadata": text_array([_json_text(entry.metadata)]),
            "keys": text_array([key]),
            "hashes": "{" + request_hash(entry) + "}",
            "reverses": text_array([entry.reverses]),
            "entry_ids": "{" + ",".join([id_text] * count) + "}",
            "line_nos": _LINE_NOS[count]
            if count < len(_LINE_NOS)
            else _array([str(n) for n in range(1, count + 1)]),
            "accounts": "{" + ",".join(accounts) + "}",
            "amounts": "{" + ",".join(amounts) + "}",
            "currencies": text_array(currencies),
            "customers": text_array([p.customer for p in postings]),
            "documents": text_array([p.document for p in postings]),
            "dimensions": text_array(dimensions),
        }
        return entry_id, id_text, key, params

    def results(
        self, book_id: uuid.UUID, rows: Sequence[tuple[Any, ...]]
    ) -> tuple[list[PostedEntry | None], dict[str, list[int]]]:
        """The posted entries, and (key → indexes) of those a replay must fill in
        (a key may come more than once in a batch). `rows` are (id's bytes,
        recorded_at) of the entries written."""
        recorded = {row[0]: row[1] for row in rows}
        results: list[PostedEntry | None] = []
        replayed: dict[str, list[int]] = {}
        keys = self.keys
        for index, (entry_id, id_bytes, entry) in enumerate(
            zip(self.ids, self.id_bytes, self.entries, strict=True)
        ):
            recorded_at = recorded.get(id_bytes)
            if recorded_at is not None:
                # Positional: keyword arguments cost ~20 % more for 1,000 entries.
                results.append(
                    PostedEntry(
                        entry_id,
                        book_id,
                        entry.effective_date,
                        recorded_at,
                        entry.memo,
                        dict(entry.metadata),
                        keys[index],
                        uuid.UUID(entry.reverses) if entry.reverses else None,
                        entry.postings,
                    )
                )
            else:
                results.append(None)
                replayed.setdefault(keys[index], []).append(index)
        return results, replayed

    def replay(
        self,
        results: list[PostedEntry | None],
        replayed: Mapping[str, list[int]],
        originals: Mapping[str, tuple[PostedEntry, str]],
    ) -> list[PostedEntry]:
        for key, indexes in replayed.items():
            original, stored_hash = originals[key]
            for index in indexes:
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
    binary_uuid_arrays(conn)
    # From IN_TWO_FROM entries in a transaction, two statements in one pipeline:
    # the server inserts the first half while this process prepares the second.
    count = len(entries)
    cut = count // 2 if not conn.autocommit and count >= IN_TWO_FROM else count
    ids = new_entry_ids(count)  # made at once: they ascend across the halves
    parts = (
        PreparedEntries(book_id, entries[start:end], account_ids, binary=True, ids=ids[start:end])
        for start, end in ((0, cut), (cut, count))
        if start < end
    )
    answered = [(part, *part.results(book_id, rows)) for part, rows in _insert(conn, parts, count)]
    keys = {key for _, _, replayed in answered for key in replayed}
    originals = load_entries_by_key(conn, book_id, list(keys)) if keys else {}
    return [
        posted
        for part, results, replayed in answered
        for posted in part.replay(results, replayed, originals)
    ]


IN_TWO_FROM = 2 * NEW_FIRST_FROM  # entries in a call (in a transaction) sent as two statements

Written = list[tuple[PreparedEntries, list[tuple[Any, ...]]]]


def _insert(conn: psycopg.Connection, parts: Iterator[PreparedEntries], count: int) -> Written:
    """Each part and its entries' rows written, (id's bytes, recorded_at, postings
    count), fetched in binary; a part is made when its statement is sent.

    A call of NEW_FIRST_FROM entries or more in a transaction goes first without
    ON CONFLICT, in a savepoint (sent with the inserts and its release in one
    pipeline); a unique violation undoes only that and the statements go again
    as they always went, with ON CONFLICT DO NOTHING, so replays, concurrent
    writers of one key and a second reversal end as before. Any other error is
    raised as it comes, the transaction left failed as without the savepoint."""
    if conn.autocommit or count < NEW_FIRST_FROM:
        # No transaction to hold a savepoint, or too few entries to pay for one:
        # a subtransaction takes an xid of its own, and more than 64 in one
        # transaction overflow its cache in the proc array (every snapshot taken
        # meanwhile then reads pg_subtrans).
        return _insert_or_replay(conn, parts)
    made: list[PreparedEntries] = []
    sent: list[psycopg.Cursor[Any]] = []
    try:
        with conn.pipeline():
            conn.execute("savepoint ab_post_entries")
            for part in parts:
                made.append(part)
                sent.append(conn.execute(_INSERT_NEW, part.params, binary=True))
            conn.execute("release savepoint ab_post_entries")
        return [(part, cur.fetchall()) for part, cur in zip(made, sent, strict=True)]
    except psycopg.errors.UniqueViolation:
        pass  # a used key (or, with it, a reversal's: that index may be checked first)
    conn.execute("rollback to savepoint ab_post_entries")
    conn.execute("release savepoint ab_post_entries")
    return _insert_or_replay(conn, [*made, *parts])


def _insert_or_replay(conn: psycopg.Connection, parts: Iterable[PreparedEntries]) -> Written:
    """The parts inserted with ON CONFLICT DO NOTHING: a used key's entry is not
    written (post_entries replays it)."""
    return [(part, conn.execute(_INSERT, part.params, binary=True).fetchall()) for part in parts]


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
    prepared = PreparedEntries(book_id, entries, account_ids)
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
    # States what the recorded-order index's predicate says (always true), so it can be used.
    clauses.append("e.recorded_at is not null")
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
