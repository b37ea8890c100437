"""Statements sent through libpq (psycopg's `pgconn`), prepared once per connection.

psycopg's cursor execute (placeholder conversion, a dumper per parameter, its
prepared-statement cache, result wrapping) was ~40 % of the event loop's work
for an HTTP post (adapters/http/hot_path.py). A `Statement` numbers its
`%(name)s` placeholders once and encodes its parameters as psycopg sends them
(same types and formats, hence the same plan): a UUID binary with oid uuid, a
str as text of unknown type, None as NULL (tests/unit/test_hot_path_params.py
compares)."""

from __future__ import annotations

import re
from typing import Any
from weakref import WeakKeyDictionary

from psycopg import AsyncConnection, generators, pq
from psycopg import errors as pg
from psycopg.pq import DiagnosticField

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
_UUID_OID = 2950
_NO_SUCH_STATEMENT = b"26000"  # invalid_sql_statement_name


class Statement:
    """A statement of `%(name)s` placeholders; those named in `uuids` take UUIDs."""

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


# The statements prepared on each connection (by name). A connection serves one
# request at a time (drawn from the pool). Weak: a closed connection's goes with it.
_prepared: WeakKeyDictionary[AsyncConnection, set[bytes]] = WeakKeyDictionary()


async def execute(
    conn: AsyncConnection, statement: Statement, params: dict[str, Any], result_format: int = 0
) -> pq.abc.PGresult:
    """The statement's rows (text, or binary with `result_format` 1).

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
            pgconn.send_query_params(
                statement.query, values, statement.types, statement.formats, result_format
            )
            result: pq.abc.PGresult = (await conn.wait(generators.execute(pgconn)))[-1]
        else:
            names = _prepared.get(conn)
            if names is None:
                names = _prepared[conn] = set()
            for attempt in (1, 2):
                if statement.name not in names:
                    await _prepare(conn, statement)
                    names.add(statement.name)
                pgconn.send_query_prepared(statement.name, values, statement.formats, result_format)
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
    return result


def as_utf8(conn: AsyncConnection, value: bytes) -> bytes:
    """A text value as the server sent it, in UTF-8."""
    if conn.pgconn.parameter_status(b"client_encoding") == b"UTF8":  # the service's sessions
        return value
    encoding: str = conn.info.encoding
    return value.decode(encoding).encode()


async def _prepare(conn: AsyncConnection, statement: Statement) -> None:
    pgconn = conn.pgconn
    pgconn.send_prepare(statement.name, statement.query, statement.types)
    result = (await conn.wait(generators.execute(pgconn)))[-1]
    if result.status != pq.ExecStatus.COMMAND_OK:
        raise _error(conn, result)


def _error(conn: AsyncConnection, result: pq.abc.PGresult) -> pg.Error:
    if result.status == pq.ExecStatus.FATAL_ERROR:
        return pg.error_from_result(result, encoding=conn.info.encoding)
    return pg.InternalError(f"unexpected result {pq.ExecStatus(result.status).name} of the post")
