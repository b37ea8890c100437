"""Usage billed and accrued (API.md, "Usage and telecom").

- `GET /v1/invoices/{id}/usage-detail` — the CDRs the invoice billed, as CSV
  (`id, start, event_type, destination, zone, band, quantity, billed_quantity,
  amount`); only the header for an invoice that billed none.
- `POST /v1/usage-accruals` `{"as_of": date}` (default the book's today) — the
  month-end accrual run (billing.postgres.usage_accrual_run); running the same
  date again posts nothing.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import msgspec
from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from adapters.http.routes import Reader, Run, Tx, command
from adapters.http.telecom_api import usage_detail_csv
from adapters.keys import Permission, Principal
from adapters.runtime import Runtime
from billing.postgres.telecom_billing import invoice_usage_detail
from billing.postgres.usage_accrual_run import AccrualRun, accrue_usage
from ledger.money import minor_unit_text as money


class UsageAccrualIn(msgspec.Struct, forbid_unknown_fields=True):
    as_of: date | None = None


def accrual_json(run: AccrualRun) -> dict[str, Any]:
    return {
        "object": "usage_accrual",
        "as_of": run.as_of.isoformat(),
        "cdrs_rated": run.cdrs_rated,
        "cdr_amounts": {c: money(a, c) for c, a in sorted(run.cdr_amounts.items())},
        "accrued": {c: money(a, c) for c, a in sorted(run.accrued.items())},
        "entries": run.entries,
    }


class UsageBillingController(Controller):
    path = "/v1"
    tags = ["usage"]

    @get(
        "/invoices/{ref:str}/usage-detail",
        operation_id="getInvoiceUsageDetail",
        sync_to_thread=True,
    )
    def usage_detail(
        self,
        ref: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            rows = invoice_usage_detail(conn, principal.book_id, ref)
        return Response(content=usage_detail_csv(rows).encode(), media_type="text/csv")

    @command("/usage-accruals", "createUsageAccrual", Permission.BILLING_WRITE)
    def accrue(self, data: JSONBody[UsageAccrualIn], run: Run) -> Response[bytes]:
        def work(tx: Tx) -> dict[str, Any]:
            today = tx.today()
            return accrual_json(accrue_usage(tx.conn, tx.book_id, data.as_of or today, today))

        return run(data, work)
