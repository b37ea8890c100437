"""Export endpoints: the Beancount file, the ERP journal feed and ERP mappings."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import date
from typing import Annotated, Any

import msgspec
import psycopg
from litestar import Controller, Request, Response, get, put
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.response import Stream

from adapters.exports import journal_feed
from adapters.exports.beancount import ExportRange, begin_snapshot, export_beancount
from adapters.exports.errors import InvalidRange
from adapters.http.commands import require, run_command
from adapters.http.routes import Reader, json_response
from adapters.keys import Permission, Principal
from adapters.runtime import Runtime
from ledger.postgres.sealer import seal_pending


class ErpMappingIn(msgspec.Struct, forbid_unknown_fields=True):
    settings: dict[str, Any] = {}
    accounts: dict[str, str] = {}


def check_range(date_from: date | None, date_to: date | None) -> None:
    if date_from is not None and date_to is not None and date_to < date_from:
        raise InvalidRange(
            f"the range ends ({date_to}) before it starts ({date_from})",
            date_from=date_from.isoformat(),
            date_to=date_to.isoformat(),
        )


def beancount_chunks(runtime: Runtime, book_id: uuid.UUID, export: ExportRange) -> Iterator[bytes]:
    with runtime.read_connection() as conn:
        begin_snapshot(conn)
        for chunk in export_beancount(conn, book_id, export):
            yield chunk.encode("utf-8")
        conn.rollback()


def manifest_headers(batch: journal_feed.Batch) -> dict[str, str]:
    totals = {c: {"debit": str(d), "credit": str(k)} for c, (d, k) in sorted(batch.totals.items())}
    return {
        "Next-Cursor": str(batch.next_cursor),
        "X-Batch-First-Seq": "" if batch.first_seq is None else str(batch.first_seq),
        "X-Batch-Last-Seq": "" if batch.last_seq is None else str(batch.last_seq),
        "X-Batch-Count": str(batch.count),
        "X-Batch-Lines": str(batch.lines),
        "X-Batch-Totals": json.dumps(totals, separators=(",", ":"), sort_keys=True),
        "X-Batch-SHA256": batch.sha256,
    }


class ExportsController(Controller):
    path = "/v1"

    @get("/exports/beancount", operation_id="exportBeancount", sync_to_thread=True)
    def beancount(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        date_from: Annotated[date | None, QueryParameter(name="from")] = None,
        date_to: Annotated[date | None, QueryParameter(name="to")] = None,
    ) -> Stream:
        require(principal, Permission.EXPORT)
        check_range(date_from, date_to)
        seal_pending(runtime.connection, principal.book_id, wait=True)
        name = f"book-{principal.book_id}.beancount"
        return Stream(
            beancount_chunks(runtime, principal.book_id, ExportRange(date_from, date_to)),
            media_type="text/plain",  # Litestar adds "; charset=utf-8" to text/*
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @get("/exports/journal", operation_id="exportJournal", sync_to_thread=True)
    def journal(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        export_format: Annotated[str, QueryParameter(name="format")] = "jsonl",
        since: FromQuery[str | None] = None,
        limit: FromQuery[int] = journal_feed.DEFAULT_LIMIT,
        manifest: FromQuery[bool] = False,
    ) -> Response[bytes]:
        require(principal, Permission.EXPORT)
        fmt = journal_feed.check_format(export_format)
        cursor = journal_feed.parse_cursor(since)
        journal_feed.check_limit(limit)
        batch = journal_feed.seal_then_build(
            runtime.connection, principal.book_id, fmt, cursor, limit, read=runtime.read_connection
        )
        headers = manifest_headers(batch)
        if manifest:
            return Response(
                content=msgspec.json.encode(batch.manifest(principal.book_id)),
                media_type="application/json",
                headers=headers,
            )
        name = f"journal-{principal.book_id.hex[:8]}-{batch.since}-{batch.next_cursor}"
        headers["Content-Disposition"] = (
            f'attachment; filename="{name}.{journal_feed.EXTENSIONS[fmt]}"'
        )
        return Response(
            content=batch.body,
            # Litestar adds the charset to text/* itself; said twice, clients choke.
            media_type=journal_feed.MEDIA_TYPES[fmt].partition(";")[0],
            headers=headers,
        )

    @get("/erp-mappings/{erp_format:str}", operation_id="getErpMapping", sync_to_thread=True)
    def get_mapping(
        self,
        erp_format: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        fmt = _erp_format(erp_format)
        with Reader(runtime, principal) as conn:
            document = journal_feed.mapping_document(conn, principal.book_id, fmt)
        return json_response(document)

    @put("/erp-mappings/{erp_format:str}", operation_id="putErpMapping", sync_to_thread=True)
    def put_mapping(
        self,
        erp_format: FromPath[str],
        request: Request[Any, Any, Any],
        data: JSONBody[ErpMappingIn],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        require(principal, Permission.MANAGE_ACCOUNTS)
        fmt = _erp_format(erp_format)

        def work(conn: psycopg.Connection) -> tuple[int, Any]:
            journal_feed.save_mapping(conn, principal.book_id, fmt, data.settings, data.accounts)
            return 200, journal_feed.mapping_document(conn, principal.book_id, fmt)

        return run_command(runtime, request, principal, {"format": fmt, "body": data}, work)


def _erp_format(value: str) -> str:
    fmt = journal_feed.check_format(value)
    if fmt not in journal_feed.ERP_FORMATS:
        journal_feed.check_format("")  # jsonl needs no mapping: same problem as an unknown one
    return fmt
