"""One unit of work per command: everything commits together, or nothing does.

The transaction rolls back unless `commit()` is called; the commit is where
PostgreSQL's deferred checks run, so it is translated like any statement.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
)

import psycopg

from ledger.postgres.db_errors import translated

ConnectionSource = Callable[[], AbstractContextManager[psycopg.Connection]]


class UnitOfWork:
    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self.committed = False

    def commit(self) -> None:
        with translated():
            self.conn.commit()
        self.committed = True


@contextmanager
def unit_of_work(connect: ConnectionSource) -> Iterator[UnitOfWork]:
    with connect() as conn:
        uow = UnitOfWork(conn)
        try:
            with translated():
                yield uow
        finally:
            if not uow.committed and not conn.closed:
                conn.rollback()


AsyncConnectionSource = Callable[[], AbstractAsyncContextManager[psycopg.AsyncConnection]]


class AsyncUnitOfWork:
    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        self.conn = conn
        self.committed = False

    async def commit(self) -> None:
        with translated():
            await self.conn.commit()
        self.committed = True


@asynccontextmanager
async def async_unit_of_work(connect: AsyncConnectionSource) -> AsyncIterator[AsyncUnitOfWork]:
    """The same unit of work on an asyncio connection (the hot posting path)."""
    async with connect() as conn:
        uow = AsyncUnitOfWork(conn)
        try:
            with translated():
                yield uow
        finally:
            if not uow.committed and not conn.closed:
                await conn.rollback()
