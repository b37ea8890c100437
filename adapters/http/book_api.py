"""The book itself: `GET /v1/book` and `PATCH /v1/book/settings` (admin).

Settings are changed by a JSON merge patch (billing/settings.py states the
rules); the change is checked whole and applied in one transaction, or not
at all. Secrets never leave the service: responses show them masked.
"""

from __future__ import annotations

from typing import Any

import psycopg
from litestar import Controller, Response, get, patch
from litestar.di import NamedDependency
from litestar.params import JSONBody

from adapters.http.commands import require
from adapters.http.routes import Reader, json_response
from adapters.keys import Permission, Principal
from adapters.runtime import Runtime
from billing.postgres.settings import change_settings, read_settings
from billing.settings import masked
from ledger.postgres.books import get_book
from ledger.postgres.unit_of_work import unit_of_work


def book_document(conn: psycopg.Connection, runtime: Runtime, principal: Principal) -> Any:
    book = get_book(conn, principal.book_id)
    return {
        "id": str(book.id),
        "name": book.name,
        "currency": book.base_currency,
        "clock": {
            "mode": book.clock_mode,
            "date": book.clock_date.isoformat() if book.clock_date else None,
        },
        "today": book.today(runtime.today()).isoformat(),
        "created_at": book.created_at.isoformat(),
        "settings": masked(read_settings(conn, book.id)),
    }


class BookController(Controller):
    path = "/v1/book"
    tags = ["book"]

    @get(
        "",
        operation_id="getBook",
        sync_to_thread=True,
        summary="The book: name, currency, clock, settings",
    )
    def show(
        self, principal: NamedDependency[Principal], runtime: NamedDependency[Runtime]
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            return json_response(book_document(conn, runtime, principal))

    @patch(
        "/settings",
        operation_id="changeBookSettings",
        sync_to_thread=True,
        summary="Change book settings (a JSON merge patch; null removes a key)",
    )
    def change(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        data: JSONBody[dict[str, Any]],
    ) -> Response[bytes]:
        require(principal, Permission.MANAGE_BOOK)
        with unit_of_work(runtime.connection) as uow:
            change_settings(uow.conn, principal.book_id, data)
            document = book_document(uow.conn, runtime, principal)
            uow.commit()
        return json_response(document)
