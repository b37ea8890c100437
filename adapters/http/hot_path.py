"""POST /v1/journal-entries in one round trip, concurrent posts in one statement.

The general way (adapters.http.commands.run_command_async) costs five: BEGIN,
claim the Idempotency-Key, insert the entry, store the response, COMMIT. Here
one autocommitted statement inserts the entry and its postings, its audit row,
and stores the response under the key; the triggers finish every check of the ledger inside
that statement (revision 0028_hotpath), so its end is the commit.

Group commit: the posts a worker receives while its statements are running
wait, and go together in its next statement, each with its own key, audit row
and answer. A statement's fixed cost (executor start of every query, the
triggers' statement-level checks, the commit and its WAL flush) was most of a
post's database CPU; shared, it is paid once per statement. A post never
waits for company: one that finds a statement free goes at once. A statement
of several that the server refuses wrote nothing; each of its posts is then
posted alone, so each gets the answer it would have had alone (one post's used
key or closed account does not refuse another's).

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

import asyncio
from typing import Any
from weakref import WeakKeyDictionary

import msgspec
from psycopg import AsyncConnection, pq
from psycopg import errors as pg
from psycopg_pool import AsyncConnectionPool

from adapters.http.commands import request_fingerprint
from adapters.http.prepared import Statement, as_utf8, execute
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
# Statement numbers their placeholders for libpq once.
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

# Several posts: the entries' columns are the posts' arrays joined; each post's
# own values (answer around recorded_at, audit row, key) are arrays in the
# entries' order, matched to its entry by id. Rows: the entry's id (binary: its
# 16 bytes), its answer.
_REQUESTS = (
    ", requests as (select unnest(%(ids)s::uuid[]) as id, unnest(%(heads)s::text[]) as head,"
    " unnest(%(tails)s::text[]) as tail, unnest(%(key_ids)s::uuid[]) as key_id,"
    " unnest(%(roles)s::text[]) as role, unnest(%(paths)s::text[]) as path,"
    " unnest(%(http_keys)s::text[]) as http_key,"
    " unnest(%(request_ids)s::text[]) as request_id,"
    " unnest(%(fingerprints)s::text[]) as fingerprint)"
)
_POST_TOGETHER = (
    "with"
    + entry_store.STRICT_INSERT_CTES
    + _REQUESTS
    + f", answers as (select r.*, r.head || {RECORDED_AT} || r.tail as body"
    " from inserted i join requests r on r.id = i.id)"
    ", audited as (insert into audit_log (book_id, at, key_id, role, method, path, status,"
    " idempotency_key, request_id, created) select %(book)s, now(), a.key_id, a.role,"
    " 'POST', a.path, 201, a.http_key, a.request_id, array[a.id::text] from answers a)"
    ", stored as (insert into idempotency_keys"
    " (book_id, key, request_hash, method, path, status_code, response_body)"
    " select %(book)s, a.http_key, a.fingerprint, 'POST', a.path, 201,"
    " convert_to(a.body, 'UTF8') from answers a where a.http_key is not null)"
    " select id, body from answers"
)
# The entry columns of PreparedEntries.one, each an array literal to be joined.
_ENTRY_ARRAYS = (
    "ids",
    "dates",
    "memos",
    "metadata",
    "keys",
    "hashes",
    "reverses",
    "entry_ids",
    "line_nos",
    "accounts",
    "amounts",
    "currencies",
    "customers",
    "documents",
    "dimensions",
)
# Each post's own values, as arrays named in the plural.
_REQUEST_VALUES = {
    "heads": "head",
    "tails": "tail",
    "key_ids": "key_id",
    "roles": "role",
    "paths": "path",
    "http_keys": "http_key",
    "request_ids": "request_id",
    "fingerprints": "fingerprint",
}

_UUID_PARAMS = frozenset({"book", "key_id"})
_POST_STATEMENT = Statement(b"ab_hot_post", _POST, _UUID_PARAMS)
_POST_AND_STORE_STATEMENT = Statement(b"ab_hot_post_store", _POST_AND_STORE, _UUID_PARAMS)
_POST_TOGETHER_STATEMENT = Statement(b"ab_hot_post_together", _POST_TOGETHER, frozenset({"book"}))

# A key already used: the general way replays or refuses it.
_KEY_TAKEN = frozenset({"uq_journal_entries_idempotency_key_book_id", "pk_idempotency_keys"})

# Statements a worker runs at once on the hot path; the posts arriving meanwhile
# wait for the next. One: the posts are shared among fewer, larger statements,
# and the worker answers and reads requests while its statement runs
# (benchmarks/post_http, 8 clients on 2 workers: backend CPU per entry 0.51–0.64
# of one statement a post; two or three at once measured no better).
STATEMENTS_AT_ONCE = 1
MOST_TOGETHER = 64  # posts in one statement (each adds ~1 KB of parameters)

# SQLSTATE classes of a statement the server refused for what it held (data,
# integrity, serialization or deadlock, a trigger's exception): it wrote nothing
# and the session is fine, so its posts may each be tried alone.
_REFUSED_FOR_ITS_ROWS = frozenset({"22", "23", "40", "P0"})


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


class _Post:
    """One request's entry, its statement parameters ready, and where its answer goes."""

    __slots__ = ("answer", "id_bytes", "params")

    def __init__(self, params: dict[str, Any], id_bytes: bytes) -> None:
        self.params = params
        self.id_bytes = id_bytes
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def settle(self, body: bytes | None = None, error: BaseException | None = None) -> None:
        if self.answer.done():  # its request was cancelled (the client went away)
            return
        if isinstance(error, asyncio.CancelledError):
            self.answer.cancel()
        elif error is not None:
            self.answer.set_exception(error)
        else:
            self.answer.set_result(body)  # type: ignore[arg-type]


class _Group:
    """A pool's posts waiting for a statement, and its statements running.

    A statement starts on the loop's next turn once a post waits and a slot is
    free, with every post waiting then (those whose requests that turn reads go
    too); the posts arriving while it runs go together in the next. A post
    never waits for company, only for a statement that is running: waiting for
    the clients of the last statement to come back (up to 2 ms) had cost more
    than the larger statements saved (benchmarks/post_http, 2 workers: 1,598
    and 1,621 entries/s with that wait, 2,004 and 1,912 without)."""

    __slots__ = ("pool", "running", "starting", "tasks", "waiting")

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool
        self.waiting: list[_Post] = []
        self.running = 0
        self.starting = False  # a start is due on the loop's next turn
        self.tasks: set[asyncio.Task[None]] = set()  # referenced until done

    def add(self, post: _Post) -> None:
        self.waiting.append(post)
        self._schedule()

    def _schedule(self) -> None:
        """Start a statement on the loop's next turn when posts wait and a slot is
        free; while none is, the statement that ends calls this again."""
        if self.waiting and self.running < STATEMENTS_AT_ONCE and not self.starting:
            self.starting = True
            asyncio.get_running_loop().call_soon(self._start)

    def _start(self) -> None:
        self.starting = False
        while self.waiting and self.running < STATEMENTS_AT_ONCE:
            posts = self._take()
            self.running += 1
            task = asyncio.get_running_loop().create_task(self._run(posts))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def _take(self) -> list[_Post]:
        """The first waiting post and those of its book after it: a statement posts
        to one book."""
        book = self.waiting[0].params["book"]
        taken: list[_Post] = []
        left: list[_Post] = []
        for post in self.waiting:
            if post.params["book"] == book and len(taken) < MOST_TOGETHER:
                taken.append(post)
            else:
                left.append(post)
        self.waiting = left
        return taken

    async def _run(self, posts: list[_Post]) -> None:
        try:
            conn = await self.pool.getconn()
            try:
                assert conn.autocommit, "the hot path needs an autocommit pool"
                await _post(conn, posts)
            finally:
                await self.pool.putconn(conn)
        except BaseException as exc:  # no connection (an outage: 503), cancelled (shutdown)
            for post in posts:
                post.settle(error=exc)  # those _post had not settled
            if not isinstance(exc, Exception):
                raise
        finally:
            self.running -= 1
            self._schedule()


_groups: WeakKeyDictionary[AsyncConnectionPool, _Group] = WeakKeyDictionary()


def _group(pool: AsyncConnectionPool) -> _Group:
    group = _groups.get(pool)
    if group is None:
        group = _groups[pool] = _Group(pool)
    return group


async def _post(conn: AsyncConnection, posts: list[_Post]) -> None:
    """Post them, in one statement when several; settle each one's answer."""
    if len(posts) > 1:
        try:
            result = await execute(conn, _POST_TOGETHER_STATEMENT, _together(posts), 1)
        except pg.Error as exc:
            if (exc.sqlstate or "")[:2] not in _REFUSED_FOR_ITS_ROWS or (
                conn.pgconn.status != pq.ConnStatus.OK
            ):
                for post in posts:
                    post.settle(error=exc)
                return
            # Refused as a whole: it wrote nothing. Each alone gets its own answer.
        else:
            bodies = {result.get_value(n, 0): result.get_value(n, 1) for n in range(result.ntuples)}
            for post in posts:
                body = bodies.get(post.id_bytes)
                if body is None:
                    post.settle(error=pg.InternalError("the post's entry was not returned"))
                else:
                    post.settle(as_utf8(conn, body))
            return
    for post in posts:
        statement = (
            _POST_STATEMENT if post.params["http_key"] is None else _POST_AND_STORE_STATEMENT
        )
        try:
            result = await execute(conn, statement, post.params)
        except pg.Error as exc:
            post.settle(error=exc)
            continue
        if result.ntuples != 1:
            post.settle(error=pg.InternalError(f"the post returned {result.ntuples} rows, not 1"))
            continue
        value = result.get_value(0, 0)
        assert value is not None  # the body is built of non-null parts
        post.settle(as_utf8(conn, value))


def _together(posts: list[_Post]) -> dict[str, Any]:
    """The statement's parameters for several posts of one book."""
    params: dict[str, Any] = {"book": posts[0].params["book"]}
    each = [post.params for post in posts]
    for name in _ENTRY_ARRAYS:
        params[name] = "{" + ",".join([p[name][1:-1] for p in each]) + "}"
    for plural, name in _REQUEST_VALUES.items():
        values = [p[name] for p in each]
        if name == "key_id":
            values = [None if v is None else str(v) for v in values]
        params[plural] = entry_store.text_array(values)
    return params


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
    book_id = principal.book_id
    names = [p.account for p in entry.postings]
    account_ids = entry_store.DIRECTORY.known(book_id, names)
    if account_ids is None:
        conn = await pool.getconn()
        try:
            account_ids = await entry_store.DIRECTORY.resolve_async(conn, book_id, names)
        except LedgerError:
            return None
        finally:
            await pool.putconn(conn)
    entry_id, id_text, entry_key, params = entry_store.PreparedEntries.one(
        book_id, entry, account_ids
    )
    head, tail = _head_and_tail(id_text, entry_key, entry)
    params["head"] = head
    params["tail"] = tail
    params["key_id"] = principal.key_id
    params["role"] = principal.role.value
    params["path"] = path
    params["http_key"] = key
    params["request_id"] = request_state.get("request_id") or ""
    params["fingerprint"] = None if key is None else request_fingerprint("POST", path, payload)
    post = _Post(params, entry_id.bytes)
    _group(pool).add(post)
    try:
        with translated():
            body = await post.answer
    except pg.UniqueViolation as exc:
        if exc.diag.constraint_name in _KEY_TAKEN:
            return None
        raise
    request_state["audited"] = True  # written by the statement: the after-response writer skips it
    return body
