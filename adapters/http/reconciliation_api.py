"""Bank statements and reconciliation endpoints (accountants)."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from typing import Annotated, Any

import msgspec
import psycopg
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath, FromQuery, JSONBody, QueryParameter

from adapters.bank_statements import CsvMapping
from adapters.http.commands import require, run_command
from adapters.http.cursors import decode_keyset, encode_keyset
from adapters.http.problems import ApiError
from adapters.http.routes import Command, Reader, Run, book_today, command, json_response
from adapters.keys import Permission, Principal
from adapters.reconciliation import statements as statement_store
from adapters.reconciliation import store
from adapters.runtime import Runtime
from ledger.postgres.books import get_account

# Accountants reconcile; the API's roles give them (and admins) `post_journal`.
RECONCILE = Permission.POST_JOURNAL
MAX_FILE_BYTES = 20 * 1024 * 1024


class PostingRef(msgspec.Struct, forbid_unknown_fields=True):
    entry_id: str
    line_no: int


class MatchIn(msgspec.Struct, forbid_unknown_fields=True):
    lines: list[str] = []
    postings: list[PostingRef] = []
    entries: list[str] = []  # every posting of these entries on the statement's account
    note: str = ""


class AutoMatchIn(msgspec.Struct, forbid_unknown_fields=True):
    account: str | None = None
    statement: str | None = None
    window_days: int = 3


class LineEntryIn(msgspec.Struct, forbid_unknown_fields=True):
    counter_account: str
    memo: str | None = None
    effective_date: date | None = None
    metadata: dict[str, Any] = {}


class CsvMappingIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    mapping: dict[str, Any]


def _text(form: dict[str, Any], name: str) -> str | None:
    value = form.get(name)
    if value is None or isinstance(value, UploadFile):
        return None
    text = str(value).strip()
    return text or None


def _file(form: dict[str, Any]) -> tuple[bytes, str | None]:
    upload = form.get("file")
    if isinstance(upload, list):
        raise ApiError(400, "one_file_only", "upload one statement file per request")
    if not isinstance(upload, UploadFile):
        raise ApiError(
            400,
            "file_missing",
            "send the statement as multipart/form-data with a `file` part (and `account`)",
        )
    data = upload.file.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ApiError(413, "file_too_large", f"statements are limited to {MAX_FILE_BYTES} bytes")
    return data, upload.filename or None


def _refuse_nul(form: dict[str, Any], filename: str | None) -> None:
    # PostgreSQL text cannot hold NUL: refuse it here, naming the field.
    fields = [(name, value) for name, value in form.items() if isinstance(value, str)]
    for name, value in [*fields, ("file (its filename)", filename or "")]:
        if "\x00" in value:
            raise ApiError(
                422, "nul_character", f"the form field {name!r} holds a NUL character", field=name
            )


def _csv_mapping(conn: psycopg.Connection, principal: Principal, raw: str | None) -> Any:
    if raw is None:
        return None
    if raw.lstrip().startswith("{"):
        try:
            document = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ApiError(422, "bad_mapping", f"csv_mapping is not valid JSON: {exc}") from None
        return statement_store.csv_mapping_from_json(document)
    return statement_store.load_csv_mapping(conn, principal.book_id, raw)


class ReconciliationController(Controller):
    path = "/v1"

    @post("/bank-statements", operation_id="uploadBankStatement", sync_to_thread=True)
    def upload_statement(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        data: Annotated[dict[str, Any], Body(media_type=RequestEncodingType.MULTI_PART)],
    ) -> Response[bytes]:
        require(principal, RECONCILE)
        content, filename = _file(data)
        _refuse_nul(data, filename)
        account = _text(data, "account")
        if account is None:
            raise ApiError(
                400, "account_missing", "name the ledger `account` the statement belongs to"
            )
        fmt, mapping_ref = _text(data, "format"), _text(data, "csv_mapping")
        mapping_ref = mapping_ref or _text(data, "csv_mapping_id")
        bank_account = _text(data, "bank_account")
        payload = {
            "account": account,
            "format": fmt,
            "csv_mapping": mapping_ref,
            "bank_account": bank_account,
            "time_zone": _text(data, "time_zone"),
            "file_sha256": hashlib.sha256(content).hexdigest(),
        }
        # What the parse needs comes from a short read; the file is parsed with
        # no connection held, and only a readable file takes a writing one.
        with Reader(runtime, principal) as conn:
            target = statement_store.upload_account(conn, principal.book_id, account)
            mapping: CsvMapping | None = _csv_mapping(conn, principal, mapping_ref)
        parsed = statement_store.parse_upload(
            content,
            format=fmt,
            csv_mapping=mapping,
            time_zone=statement_store.account_time_zone(target, _text(data, "time_zone")),
            filename=filename,
        )

        def work(conn: psycopg.Connection) -> tuple[int, Any]:
            imported = statement_store.store_statements(
                conn,
                principal.book_id,
                account_ref=account,
                parsed=parsed,
                bank_account=bank_account,
            )
            summaries = []
            for item in imported:
                summary = statement_store.get_statement(conn, principal.book_id, str(item.id),
                                                        with_lines=False)  # fmt: skip
                summary.update(created=item.created, new_lines=item.new_lines,
                               duplicate_lines=item.duplicate_lines)  # fmt: skip
                summaries.append(summary)
            first = statement_store.get_statement(conn, principal.book_id, str(imported[0].id))
            first.update({k: summaries[0][k] for k in ("created", "new_lines", "duplicate_lines")})
            first["statements"] = summaries
            created = any(item.created for item in imported)
            return (201 if created else 200), first

        return run_command(runtime, request, principal, payload, work)

    @get("/bank-statements", operation_id="listBankStatements", sync_to_thread=True)
    def list_statements(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        account: FromQuery[str | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    ) -> Response[bytes]:
        after = decode_keyset(cursor)
        with Reader(runtime, principal) as conn:
            account_id = get_account(conn, principal.book_id, account).id if account else None
            rows = statement_store.list_statements(
                conn, principal.book_id, account_id=account_id, after=after, limit=limit
            )
        next_cursor = (
            encode_keyset(rows[-1]["created_at"], rows[-1]["id"]) if len(rows) == limit else None
        )
        return json_response({"data": rows, "next_cursor": next_cursor})

    @get(
        "/bank-statements/{statement_id:str}", operation_id="getBankStatement", sync_to_thread=True
    )
    def get_statement(
        self,
        statement_id: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            document = statement_store.get_statement(conn, principal.book_id, statement_id)
        return json_response(document)

    @command(
        "/bank-statements/{statement_id:str}/lines/{line:str}/entry",
        "createEntryFromStatementLine",
        RECONCILE,
    )
    def entry_from_line(
        self,
        statement_id: FromPath[str],
        line: FromPath[str],
        data: JSONBody[LineEntryIn],
        run: Run,
    ) -> Response[bytes]:
        payload = {"statement": statement_id, "line": line, "body": data}
        return run(
            payload,
            lambda tx: store.entry_from_line(
                tx.conn,
                tx.book_id,
                statement_id,
                line,
                counter_account=data.counter_account,
                memo=data.memo,
                effective_date=data.effective_date,
                metadata=data.metadata,
                created_by=tx.principal.key_id,
            ),
        )

    @command("/csv-mappings", "createCsvMapping", RECONCILE)
    def create_csv_mapping(self, data: JSONBody[CsvMappingIn], run: Run) -> Response[bytes]:
        mapping = statement_store.csv_mapping_from_json(data.mapping)
        return run(
            data,
            lambda tx: statement_store.save_csv_mapping(tx.conn, tx.book_id, data.name, mapping),
        )

    @get("/csv-mappings", operation_id="listCsvMappings", sync_to_thread=True)
    def list_csv_mappings(
        self, principal: NamedDependency[Principal], runtime: NamedDependency[Runtime]
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            rows = statement_store.list_csv_mappings(conn, principal.book_id)
        return json_response({"data": rows})

    @command("/reconciliation/auto-match", "autoMatch", RECONCILE, status=200)
    def auto_match(self, data: JSONBody[AutoMatchIn], run: Run) -> Response[bytes]:
        if not 0 <= data.window_days <= 31:
            raise ApiError(422, "invalid_window", "window_days must be between 0 and 31")
        return run(
            data,
            lambda tx: store.run_auto_match(
                tx.conn,
                tx.book_id,
                account_ref=data.account,
                statement_ref=data.statement,
                created_by=tx.principal.key_id,
                window_days=data.window_days,
            ).json(),
        )

    @command("/reconciliation/matches", "createMatch", RECONCILE)
    def create_match(self, data: JSONBody[MatchIn], run: Run) -> Response[bytes]:
        return run(
            data,
            lambda tx: store.create_match(
                tx.conn,
                tx.book_id,
                line_ids=data.lines,
                postings=[(p.entry_id, p.line_no) for p in data.postings],
                entries=data.entries,
                note=data.note,
                created_by=tx.principal.key_id,
            ),
        )

    @get("/reconciliation/matches", operation_id="listMatches", sync_to_thread=True)
    def list_matches(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        account: FromQuery[str | None] = None,
        include_undone: FromQuery[bool] = False,
        limit: Annotated[int, QueryParameter(ge=1, le=10000)] = 1000,
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            account_id = get_account(conn, principal.book_id, account).id if account else None
            rows = store.list_matches(
                conn,
                principal.book_id,
                account_id=account_id,
                include_undone=include_undone,
                limit=limit,
            )
        return json_response({"data": rows})

    @get("/reconciliation/matches/{match_id:str}", operation_id="getMatch", sync_to_thread=True)
    def get_match(
        self,
        match_id: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            match = store.get_match(conn, principal.book_id, match_id)
        return json_response(match)

    @command(
        "/reconciliation/matches/{match_id:str}",
        "deleteMatch",
        RECONCILE,
        status=200,
        method="DELETE",
    )
    def delete_match(self, match_id: FromPath[str], run: Run) -> Response[bytes]:
        return _undo(run, match_id)

    @command("/reconciliation/matches/{match_id:str}/unmatch", "unmatch", RECONCILE, status=200)
    def unmatch(self, match_id: FromPath[str], run: Run) -> Response[bytes]:
        return _undo(run, match_id)

    @get("/reports/reconciliation", operation_id="getReconciliationReport", sync_to_thread=True)
    def report(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        account: FromQuery[str],
        as_of: FromQuery[date | None] = None,
        currency: FromQuery[str | None] = None,
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            day = as_of or book_today(conn, runtime, principal)
            document = store.reconciliation_report(conn, principal.book_id, account, day, currency)
        return json_response(document)


def _undo(run: Command, match_id: str) -> Response[bytes]:
    return run(
        {"unmatch": match_id},
        lambda tx: store.undo_match(tx.conn, tx.book_id, match_id, tx.principal.key_id),
    )
