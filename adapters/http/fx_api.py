"""Exchange rates and revaluations (API.md, "Payments, collections and FX").

POST /v1/fx-rates takes either a JSON array `[{"date", "base", "quote",
"rate"}]` or multipart/form-data with a `file`: the ECB reference-rate CSV
layout (daily or history) or a plain `date,base,quote,rate` CSV.
GET /v1/fx-rates?base=&quote=&date= answers the rate in force (rule in
billing.fx); POST /v1/fx-revaluations `{"as_of"}` revalues the open
foreign-currency receivables.
"""

from __future__ import annotations

from datetime import date
from functools import partial
from typing import Annotated, Any

import anyio.to_thread
import msgspec
import psycopg
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.params import FromQuery, JSONBody, QueryParameter

from adapters.fx_rates import parse_rates_file
from adapters.http.commands import require, run_command
from adapters.http.problems import ApiError
from adapters.http.routes import Reader, Reply, Run, Tx, book_today, command, json_response
from adapters.keys import Permission, Principal
from adapters.runtime import Runtime
from billing.fx import FxRate, ResolvedRate, make_rate, parse_rate
from billing.postgres import fx as fx_store
from ledger.money import check_currency

MAX_JSON_RATES = 10_000
MAX_FILE_BYTES = 20 * 1024 * 1024


class FxRateIn(msgspec.Struct, forbid_unknown_fields=True):
    date: date
    base: str
    quote: str
    rate: str


class RevaluationIn(msgspec.Struct, forbid_unknown_fields=True):
    as_of: date


def _media(request: Request[Any, Any, Any]) -> str:
    return request.headers.get("content-type", "application/json").partition(";")[0].strip()


async def _rates_from_request(
    request: Request[Any, Any, Any],
) -> tuple[list[FxRate], list[str], str]:
    media = _media(request).lower()
    if media == "multipart/form-data":
        form = await request.form()
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiError(400, "file_missing", "send the ECB CSV as a multipart `file` part")
        data = await upload.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise ApiError(413, "file_too_large", f"files are limited to {MAX_FILE_BYTES} bytes")
        try:
            parsed = parse_rates_file(data)
        except UnicodeDecodeError:
            raise ApiError(422, "invalid_request", "the file is not UTF-8 text") from None
        return list(parsed.rates), list(parsed.skipped), "ecb_csv"
    if media != "application/json" and not media.endswith("+json"):
        raise ApiError(
            415,
            "unsupported_media_type",
            "send rates as application/json or an ECB CSV as multipart/form-data",
        )
    body = await request.body()
    try:
        items = msgspec.json.decode(body, type=list[FxRateIn])
    except msgspec.ValidationError as exc:
        raise ApiError(422, "invalid_request", f"invalid rates: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, "invalid_json", f"the body is not JSON: {exc}") from None
    if not items:
        raise ApiError(422, "invalid_request", "send at least one rate")
    if len(items) > MAX_JSON_RATES:
        raise ApiError(422, "invalid_request", f"send at most {MAX_JSON_RATES} rates at once")
    rates = [make_rate(i.date, i.base, i.quote, parse_rate(i.rate)) for i in items]
    return rates, [], "json"


def _rate_json(r: FxRate) -> dict[str, Any]:
    return {"date": r.on, "base": r.base, "quote": r.quote, "rate": str(r.rate)}


def resolved_json(r: ResolvedRate) -> dict[str, Any]:
    return {
        "object": "fx_rate",
        "base": r.base,
        "quote": r.quote,
        "date": r.on,
        "rate": str(r.rate),
        "how": r.how,
        "sources": [_rate_json(s) for s in r.sources],
    }


def revaluation_json(r: fx_store.Revaluation) -> dict[str, Any]:
    return {
        "id": str(r.id),
        "object": "fx_revaluation",
        "as_of": r.as_of,
        "functional_currency": r.functional_currency,
        "entry_id": str(r.entry_id) if r.entry_id else None,
        "reversal_entry_id": str(r.reversal_entry_id) if r.reversal_entry_id else None,
        "reversal_date": r.reversal_date,
        "lines": [
            {
                "invoice": str(line.invoice_id),
                "number": line.number,
                "currency": line.currency,
                "open_amount": str(line.open_amount),
                "carried_rate": str(line.carried_rate),
                "rate": str(line.rate),
                "amount": str(line.amount),
            }
            for line in r.lines
        ],
    }


def import_summary(rates: list[FxRate], skipped: list[str], source: str) -> dict[str, Any]:
    return {
        "object": "fx_rate_import",
        "source": source,
        "imported": len(rates),
        "skipped_columns": skipped,
        "first_date": min(r.on for r in rates),
        "last_date": max(r.on for r in rates),
    }


class FxController(Controller):
    path = "/v1"

    @post("/fx-rates", operation_id="importFxRates", status_code=201)
    async def import_rates(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        require(principal, Permission.BILLING_WRITE)
        rates, skipped, source = await _rates_from_request(request)
        summary = import_summary(rates, skipped, source)

        def work(conn: psycopg.Connection) -> tuple[int, Any]:
            fx_store.store_rates(conn, principal.book_id, rates)
            return 201, summary

        payload = {"rates": [_rate_json(r) for r in rates]}
        call = partial(run_command, runtime, request, principal, payload, work)
        return await anyio.to_thread.run_sync(call)

    @get("/fx-rates", operation_id="getFxRate", sync_to_thread=True)
    def get_rate(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        base: FromQuery[str],
        quote: FromQuery[str],
        on: Annotated[date | None, QueryParameter(name="date")] = None,
    ) -> Response[bytes]:
        base, quote = check_currency(base), check_currency(quote)
        with Reader(runtime, principal) as conn:
            day = on or book_today(conn, runtime, principal)
            found = fx_store.rate_in_force(conn, principal.book_id, base, quote, day)
        return json_response(resolved_json(found))

    @command("/fx-revaluations", "createFxRevaluation", Permission.BILLING_WRITE)
    def revalue(self, data: JSONBody[RevaluationIn], run: Run) -> Response[bytes]:
        def work(tx: Tx) -> Reply:
            done = fx_store.revalue(tx.conn, tx.book_id, data.as_of)
            return Reply(201 if done.created else 200, revaluation_json(done))

        return run(data, work)
