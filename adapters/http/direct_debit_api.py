"""Direct-debit collection runs and their returns (API.md, "Payments, collections
and FX"): `POST /v1/collection-runs`, `GET /v1/collection-runs/{id}` and its
`/file`, `POST /v1/collection-returns` (multipart `file`: pain.002, camt.054
or NACHA returns). Rules in billing.direct_debit; SQL in adapters.collections.runs.
"""

from __future__ import annotations

import hashlib
from datetime import date
from typing import Annotated, Any

import msgspec
import psycopg
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath, JSONBody

from adapters.collections import returns as returns_store
from adapters.collections import runs as store
from adapters.http.commands import require, run_command
from adapters.http.problems import ApiError
from adapters.http.routes import Reader, Run, Tx, book_today, command, json_response
from adapters.keys import Permission, Principal
from adapters.runtime import Runtime
from ledger.money import minor_unit_text as money

MAX_RETURNS_BYTES = 10_000_000


class CollectionRunIn(msgspec.Struct, forbid_unknown_fields=True):
    scheme: str
    as_of: date | None = None


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value is not None else None


def transaction_json(t: dict[str, Any]) -> dict[str, Any]:
    c = t["currency"]
    return {
        "id": str(t["id"]),
        "object": "collection_transaction",
        "invoice": str(t["invoice_id"]),
        "invoice_number": t["invoice_number"],
        "customer": str(t["customer_id"]),
        "payment_method": str(t["payment_method_id"]),
        "payment": str(t["payment_id"]),
        "amount": money(t["amount"], c),
        "currency": c,
        "reference": t["reference"],
        "sequence": t["sequence"],
        "sec_code": t["sec_code"],
        "status": t["status"],
        "settled_on": _iso(t["settled_on"]),
        "returned_on": _iso(t["returned_on"]),
        "return_code": t["return_code"],
        "return_reason": t["return_reason"],
        "fee_invoice": str(t["fee_invoice_id"]) if t["fee_invoice_id"] else None,
    }


def run_json(run: dict[str, Any]) -> dict[str, Any]:
    c = run["currency"]
    totals = run["totals"]
    return {
        "id": str(run["id"]),
        "object": "collection_run",
        "scheme": run["scheme"],
        "file_format": run["file_format"],
        "message_id": run["message_id"],
        "as_of": run["as_of"].isoformat(),
        "created_on": run["created_on"].isoformat(),
        "collection_date": run["collection_date"].isoformat(),
        "currency": c,
        "status": run["status"],
        "total": money(run["total"], c),
        "totals": {k: money(v, c) for k, v in totals.items()},
        "transaction_count": run["transaction_count"],
        "transactions": [transaction_json(t) for t in run["transactions"]],
        "skipped": run.get("skipped", []),
        "settlement_entry": str(run["settlement_entry_id"]) if run["settlement_entry_id"] else None,
    }


def run_summary_json(run: dict[str, Any]) -> dict[str, Any]:
    c = run["currency"]
    return {
        "id": str(run["id"]),
        "object": "collection_run",
        "scheme": run["scheme"],
        "file_format": run["file_format"],
        "message_id": run["message_id"],
        "as_of": run["as_of"].isoformat(),
        "created_on": run["created_on"].isoformat(),
        "collection_date": run["collection_date"].isoformat(),
        "currency": c,
        "status": run["status"],
        "total": money(run["total"], c),
        "returned": money(run["returned"], c),
        "transaction_count": run["transaction_count"],
    }


def returns_json(result: dict[str, Any]) -> dict[str, Any]:
    return {
        **result,
        "returns": [
            {**r, "amount": money(r["amount"], r["currency"]), "entry": r.get("entry")}
            for r in result["returns"]
        ],
    }


def returns_upload(form: dict[str, Any]) -> bytes:
    upload = form.get("file")
    if isinstance(upload, list):
        raise ApiError(400, "one_file_only", "upload one returns file per request")
    if not isinstance(upload, UploadFile):
        raise ApiError(
            400, "file_missing", "send the returns file as multipart/form-data with a `file` part"
        )
    data = upload.file.read(MAX_RETURNS_BYTES + 1)
    if len(data) > MAX_RETURNS_BYTES:
        raise ApiError(
            413, "file_too_large", f"returns files are limited to {MAX_RETURNS_BYTES} bytes"
        )
    return data


class DirectDebitController(Controller):
    path = "/v1"
    tags = ["payments"]

    @command("/collection-runs", "createCollectionRun", Permission.BILLING_WRITE)
    def create_run(self, data: JSONBody[CollectionRunIn], run: Run) -> Response[bytes]:
        def work(tx: Tx) -> dict[str, Any]:
            today = tx.today()
            found = store.create_collection_run(
                tx.conn, tx.book_id, data.scheme, data.as_of or today, today
            )
            return run_json(found)

        return run(data, work)

    @get("/collection-runs", operation_id="listCollectionRuns", sync_to_thread=True)
    def list_runs(
        self, principal: NamedDependency[Principal], runtime: NamedDependency[Runtime]
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            found = store.list_collection_runs(conn, principal.book_id)
        return json_response({"data": [run_summary_json(r) for r in found]})

    @get("/collection-runs/{ref:str}", operation_id="getCollectionRun", sync_to_thread=True)
    def get_run(
        self,
        ref: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            body = run_json(store.get_collection_run(conn, principal.book_id, ref))
        return json_response(body)

    @get(
        "/collection-runs/{ref:str}/file", operation_id="getCollectionRunFile", sync_to_thread=True
    )
    def get_file(
        self,
        ref: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            data, media = store.collection_file(conn, principal.book_id, ref)
        return Response(content=data, media_type=media)

    @post("/collection-returns", operation_id="importCollectionReturns", sync_to_thread=True)
    def import_returns(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        data: Annotated[dict[str, Any], Body(media_type=RequestEncodingType.MULTI_PART)],
    ) -> Response[bytes]:
        require(principal, Permission.BILLING_WRITE)
        content = returns_upload(data)
        returns_store.parse_returns(content)  # a malformed file is refused before a connection
        sha = hashlib.sha256(content).hexdigest()

        def work(conn: psycopg.Connection) -> tuple[int, Any]:
            today = book_today(conn, runtime, principal)
            result = returns_store.import_collection_returns(
                conn, principal.book_id, content, today
            )
            return (201 if result["processed"] else 200), returns_json(result)

        return run_command(runtime, request, principal, {"file_sha256": sha}, work)
