"""POST /v1/journal-entries in one round trip.

The general way (adapters.http.commands.run_command_async) costs five: BEGIN,
claim the Idempotency-Key, insert the entry, store the response, COMMIT. Here
one autocommitted statement inserts the entry and its postings, its audit row,
and stores the response under the key; the triggers finish every check of the ledger inside
that statement (revision 0028_hotpath), so its end is the commit.

The response is known before the statement but for `recorded_at` (the
database's clock): the statement joins the JSON around it and returns the
body it stored, so the first answer and every replay are the same bytes.

Anything this way does not decide goes the general way, which gives the
answers it always gave: a key already used (unique_violation on the entry's
idempotency key or on `idempotency_keys`; nothing was written) is replayed or
refused there (409); an entry without a date needs the book's today, and one
naming customers or documents needs their check — both read the database.
"""

from __future__ import annotations

import re
from typing import Any
from weakref import WeakKeyDictionary

import msgspec
from psycopg import AsyncConnection, generators, pq
from psycopg import errors as pg
from psycopg.pq import DiagnosticField
from psycopg_pool import AsyncConnectionPool

from adapters.http.commands import request_fingerprint
from adapters.keys import Principal
from billing.manual_entries import references
from ledger.entries import JournalEntry
from ledger.errors import LedgerError
from ledger.postgres import posting as entry_store
from ledger.postgres.db_errors import translated

# Where `recorded_at` goes in the encoded response. The keys before it (id,
# effective_date) hold a UUID and a date, so its first occurrence is the slot.
_MARK = "@@recorded_at@@"
_QUOTED_MARK = msgspec.json.encode(_MARK)

# `datetime.isoformat()` of a UTC timestamp, as psycopg returns it on the
# service's sessions (time zone UTC): microseconds only when not zero.
RECORDED_AT = (
    "'\"' || to_char(i.recorded_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS')"
    " || case when date_trunc('second', i.recorded_at) = i.recorded_at then ''"
    " else to_char(i.recorded_at at time zone 'UTC', '.US') end || '+00:00\"'"
)

_ANSWER = f", answer as (select %(head)s || {RECORDED_AT} || %(tail)s as body from inserted i)"
# The audit row, in the entry's statement (so its transaction), as run_command writes
# it: no entry without its audit row, and no extra round trip.
_AUDITED = (
    ", audited as (insert into audit_log (book_id, at, key_id, role, method, path, status,"
    " idempotency_key, request_id, created) select %(book)s, now(), %(key_id)s, %(role)s,"
    " 'POST', %(path)s, 201, %(http_key)s, %(request_id)s, array[i.id::text] from inserted i)"
)
# The statements as psycopg would take them (tests compare what each way sends);
# _Statement numbers their placeholders for libpq once.
_POST = "with" + entry_store.STRICT_INSERT_CTES + _ANSWER + _AUDITED + " select body from answer"
_POST_AND_STORE = (
    "with"
    + entry_store.STRICT_INSERT_CTES
    + _ANSWER
    + _AUDITED
    + ", stored as (insert into idempotency_keys"
    " (book_id, key, request_hash, method, path, status_code, response_body)"
    " select %(book)s, %(http_key)s, %(fingerprint)s, 'POST', %(path)s, 201,"
    " convert_to(body, 'UTF8') from answer)"
    " select body from answer"
)

# A key already used: the general way replays or refuses it.
_KEY_TAKEN = frozenset({"uq_journal_entries_idempotency_key_book_id", "pk_idempotency_keys"})


def needs_no_reads(entry: JournalEntry) -> bool:
    """True when a dated entry can be posted without reading the database first:
    it names no customer or billing document (those are checked by a query)."""
    return not references([entry])


def _head_and_tail(entry_id: str, key: str, entry: JournalEntry) -> tuple[str, str]:
    """The 201 body around `recorded_at`: what entry_json gives for the posted entry
    (same keys, same order), built without a PostedEntry."""
    document = {
        "id": entry_id,
        "effective_date": entry.effective_date.isoformat(),
        "recorded_at": _MARK,
        "memo": entry.memo,
        "metadata": dict(entry.metadata),
        "idempotency_key": key,
        "reverses": None,
        "sequence": None,
        "postings": [
            {
                "account": p.account,
                "amount": str(p.money.quantized().amount),
                "currency": p.money.currency,
                "customer": p.customer,
                "document": p.document,
                "dimensions": dict(p.dimensions),
            }
            for p in entry.postings
        ],
    }
    head, _, tail = msgspec.json.encode(document).partition(_QUOTED_MARK)
    return head.decode(), tail.decode()


class _Statement:
    """A statement of `%(name)s` placeholders, sent through libpq (psycopg's
    `pgconn`) with its parameters encoded here: psycopg's cursor execute
    (placeholder conversion, a dumper per parameter, its prepared-statement
    cache, result wrapping) was ~40 % of the event loop's work for a post. The
    parameters go as psycopg sends them (same types and formats, hence the same
    plan): a UUID binary with oid uuid, a str as text of unknown type, None as
    NULL (tests/unit/test_hot_path_params.py compares)."""

    __slots__ = ("formats", "name", "query", "texts", "types", "uuids")

    def __init__(self, name: bytes, statement: str, uuids: frozenset[str]) -> None:
        found = list(dict.fromkeys(_PLACEHOLDER.findall(statement)))
        # Numbered texts first, then UUIDs: values() encodes each kind in one pass.
        self.texts = tuple(n for n in found if n not in uuids)
        self.uuids = tuple(n for n in found if n in uuids)
        numbers = {n: i for i, n in enumerate(self.texts + self.uuids, 1)}
        query = _PLACEHOLDER.sub(lambda m: f"${numbers[m[1]]}", statement)
        assert "%" not in query, "a literal % would need psycopg's escaping"
        self.name = name
        self.query = query.encode()
        self.types = (0,) * len(self.texts) + (_UUID_OID,) * len(self.uuids)
        self.formats = (0,) * len(self.texts) + (1,) * len(self.uuids)

    def values(self, params: dict[str, Any]) -> list[bytes | None]:
        """The parameters as libpq takes them, in placeholder order."""
        texts = [None if v is None else v.encode() for v in map(params.__getitem__, self.texts)]
        return texts + [params[n].bytes for n in self.uuids]


_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
_UUID_OID = 2950
_UUID_PARAMS = frozenset({"book", "key_id"})
_POST_STATEMENT = _Statement(b"ab_hot_post", _POST, _UUID_PARAMS)
_POST_AND_STORE_STATEMENT = _Statement(b"ab_hot_post_store", _POST_AND_STORE, _UUID_PARAMS)

# The statements prepared on each connection (by name). A connection serves one
# request at a time (drawn from the pool). Weak: a closed connection's goes with it.
_prepared: WeakKeyDictionary[AsyncConnection, set[bytes]] = WeakKeyDictionary()


async def _run(conn: AsyncConnection, statement: _Statement, params: dict[str, Any]) -> bytes:
    """The one value the statement returns, as the server sent it (UTF-8 text).

    Prepared once per connection (psycopg would prepare it too, after 5 runs),
    or sent unnamed where psycopg prepares nothing (prepare_threshold None:
    behind a transaction-pooling PgBouncer). Errors are psycopg's exceptions,
    made from the server's error as its cursor makes them (SQLSTATE class,
    diag): callers see no difference. A statement dropped from the session
    (DEALLOCATE ALL / DISCARD ALL, which psycopg's own cache may send) is
    prepared again and the run retried: it ran nothing."""
    values = statement.values(params)
    pgconn = conn.pgconn
    async with conn.lock:  # as psycopg's execute: no other use of the connection meanwhile
        if pgconn.status != pq.ConnStatus.OK:
            raise pg.OperationalError(
                "the connection is lost" if not conn.closed else "the connection is closed"
            )
        if conn.prepare_threshold is None:
            pgconn.send_query_params(statement.query, values, statement.types, statement.formats, 0)
            result = (await conn.wait(generators.execute(pgconn)))[-1]
        else:
            names = _prepared.get(conn)
            if names is None:
                names = _prepared[conn] = set()
            for attempt in (1, 2):
                if statement.name not in names:
                    await _prepare(conn, statement)
                    names.add(statement.name)
                pgconn.send_query_prepared(statement.name, values, statement.formats, 0)
                result = (await conn.wait(generators.execute(pgconn)))[-1]
                if (
                    result.status == pq.ExecStatus.FATAL_ERROR
                    and attempt == 1
                    and result.error_field(DiagnosticField.SQLSTATE) == _NO_SUCH_STATEMENT
                ):
                    names.discard(statement.name)
                    continue
                break
    if result.status != pq.ExecStatus.TUPLES_OK:
        raise _error(conn, result)
    if result.ntuples != 1:
        raise pg.InternalError(f"the post returned {result.ntuples} rows, not 1")
    value: bytes | None = result.get_value(0, 0)
    assert value is not None  # the body is built of non-null parts
    if pgconn.parameter_status(b"client_encoding") == b"UTF8":  # the service's sessions
        return value
    encoding: str = conn.info.encoding
    return value.decode(encoding).encode()


_NO_SUCH_STATEMENT = b"26000"  # invalid_sql_statement_name


async def _prepare(conn: AsyncConnection, statement: _Statement) -> None:
    pgconn = conn.pgconn
    pgconn.send_prepare(statement.name, statement.query, statement.types)
    result = (await conn.wait(generators.execute(pgconn)))[-1]
    if result.status != pq.ExecStatus.COMMAND_OK:
        raise _error(conn, result)


def _error(conn: AsyncConnection, result: pq.abc.PGresult) -> pg.Error:
    if result.status == pq.ExecStatus.FATAL_ERROR:
        return pg.error_from_result(result, encoding=conn.info.encoding)
    return pg.InternalError(f"unexpected result {pq.ExecStatus(result.status).name} of the post")


async def post_entry_once(
    pool: AsyncConnectionPool,
    path: str,
    principal: Principal,
    payload: Any,
    entry: JournalEntry,
    key: str | None,
    request_state: dict[str, Any],
) -> bytes | None:
    """Post `entry` in one statement: its 201 body, or None when the general
    way must answer (nothing was written): the key was already used, or an
    account is unknown (there, a used key is a 409 before any 404).

    `pool` opens its connections in autocommit: the statement is the transaction
    (no BEGIN, no COMMIT); an account lookup (once per process and account)
    commits by itself too. (Toggling a shared pool's connection per request cost
    two more awaits, ~16 µs of the event loop.) The connection is taken and given
    back without `pool.connection()`: its `async with conn` only commits, which in
    autocommit sends nothing but costs the connection's lock (the pool's putconn
    still rolls back or discards a connection left in a transaction or broken)."""
    conn = await pool.getconn()
    try:
        assert conn.autocommit, "the hot path needs an autocommit pool"
        body = await _post(conn, path, principal, payload, entry, key, request_state)
    finally:
        await pool.putconn(conn)
    if body is None:
        return None
    request_state["audited"] = True  # written by the statement: the after-response writer skips it
    return body


async def _post(
    conn: AsyncConnection,
    path: str,
    principal: Principal,
    payload: Any,
    entry: JournalEntry,
    key: str | None,
    request_state: dict[str, Any],
) -> bytes | None:
    """The stored body, or None (see post_entry_once)."""
    book_id = principal.book_id
    try:
        account_ids = await entry_store.DIRECTORY.resolve_async(
            conn, book_id, [p.account for p in entry.postings]
        )
    except LedgerError:
        return None
    _, id_text, entry_key, params = entry_store.PreparedEntries.one(book_id, entry, account_ids)
    head, tail = _head_and_tail(id_text, entry_key, entry)
    params["head"] = head
    params["tail"] = tail
    params["key_id"] = principal.key_id
    params["role"] = principal.role.value
    params["path"] = path
    params["http_key"] = key
    params["request_id"] = request_state.get("request_id") or ""
    statement = _POST_STATEMENT
    if key is not None:
        statement = _POST_AND_STORE_STATEMENT
        params["fingerprint"] = request_fingerprint("POST", path, payload)
    try:
        with translated():
            return await _run(conn, statement, params)
    except pg.UniqueViolation as exc:
        if exc.diag.constraint_name in _KEY_TAKEN:
            return None
        raise
