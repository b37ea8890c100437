"""The OpenAPI document and its pages, as a client needs them.

Handlers answer `Response[bytes]` (their JSON is encoded once, by msgspec), so
Litestar alone documents every answer as a string and every error in its own
400 shape. `refine` completes the generated document once: each operation's
real success shapes (adapters/http/schemas.py), its errors as
application/problem+json, the bearer key, the Idempotency-Key header of every
POST, a summary and a tag. It runs on the first request for a docs page:
building the document takes most of a second, which startup should not pay.
The Swagger UI page loads its script and style from the swagger-ui-bundle
package, served here, so the docs work offline.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
from litestar import Request
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.router import Router
from litestar.static_files import create_static_files_router
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

from adapters.http import schemas as s
from adapters.http.commands import MAX_KEY_LENGTH
from adapters.http.problems import MEDIA_TYPE as PROBLEM

ASSETS = "/schema-assets/swagger-ui"
BEARER = "bearerAuth"
_METHODS = ("get", "post", "put", "delete", "patch")
_REF = "#/components/schemas/{name}"

# Each operation's success answers: status -> shape (a Struct, or a media type and a
# Struct for non-JSON answers). Two statuses where a repeat answers 200 instead of 201.
Shape = type | tuple[str, type]
SUCCESS: dict[str, dict[int, Shape]] = {
    "health": {200: s.Health},
    "metrics": {200: ("text/plain", str)},
    "getBook": {200: s.Book},
    "changeBookSettings": {200: s.Book},
    "listApiKeys": {200: s.ApiKeyList},
    "listAuditLog": {200: s.AuditLog},
    "revokeApiKey": {200: s.ApiKey},
    "createApiKey": {201: s.NewApiKey},
    "rotateApiKey": {201: s.RotatedApiKey},
    # ledger
    "createAccount": {201: s.Account},
    "listAccounts": {200: s.AccountList},
    "getAccount": {200: s.Account},
    "closeAccount": {200: s.Account},
    "postJournalEntry": {201: s.JournalEntry, 200: s.JournalEntry},
    "postJournalEntryBatch": {201: s.JournalEntryBatch},
    "listJournalEntries": {200: s.JournalEntryPage},
    "getJournalEntry": {200: s.JournalEntry},
    "reverseJournalEntry": {201: s.JournalEntry},
    "getBalances": {200: s.AccountBalances},
    "getTrialBalance": {200: s.TrialBalance},
    "closePeriod": {200: s.Period},
    "reopenPeriod": {200: s.Period},
    "listPeriods": {200: s.PeriodList},
    "getClock": {200: s.Clock},
    "advanceClock": {200: s.Clock},
    # financial statements
    "getBalanceSheet": {200: s.Object},
    "getIncomeStatement": {200: s.Object},
    "getTrialBalanceAsRecorded": {200: s.Object},
    # billing
    "upsertCustomer": {201: s.Customer, 200: s.Customer},
    "listCustomers": {200: s.CustomerPage},
    "getCustomer": {200: s.Customer},
    "updateCustomer": {200: s.Customer},
    "getCustomerStatement": {200: s.CustomerStatement},
    "createProduct": {201: s.Product},
    "listProducts": {200: s.ProductPage},
    "getProduct": {200: s.Product},
    "createPrice": {201: s.Price},
    "getPrice": {200: s.Price},
    "createInvoice": {201: s.Invoice},
    "listInvoices": {200: s.InvoicePage},
    "getInvoice": {200: s.Invoice},
    "getInvoiceDocument": {200: ("text/html", str)},
    "finalizeInvoice": {200: s.Invoice},
    "voidInvoice": {200: s.Invoice},
    "deleteDraftInvoice": {200: s.Deleted},
    "applyCredit": {200: s.InvoiceWithCreditApplied},
    "markInvoiceUncollectible": {200: s.Invoice},
    "createPayment": {201: s.Payment},
    "listPayments": {200: s.PaymentPage},
    "getPayment": {200: s.Payment},
    "createRefund": {201: s.Refund},
    "getRefund": {200: s.Refund},
    "createCreditNote": {201: s.CreditNote},
    "listCreditNotes": {200: s.CreditNotePage},
    "getCreditNote": {200: s.CreditNote},
    "getCreditNoteDocument": {200: ("text/html", str)},
    "createSubscription": {201: s.Subscription},
    "listSubscriptions": {200: s.SubscriptionPage},
    "getSubscription": {200: s.Subscription},
    "changeSubscription": {200: s.SubscriptionWithInvoice},
    "cancelSubscription": {200: s.SubscriptionWithInvoice},
    "pauseSubscription": {200: s.Subscription},
    "resumeSubscription": {200: s.Subscription},
    "createCoupon": {201: s.Coupon},
    "createBillingRun": {201: s.BillingRun},
    "getBillingRun": {200: s.BillingRun},
    # revenue
    "runRevenueRecognition": {201: s.RecognitionRun},
    "getArAging": {200: s.ArAging},
    "getDeferredRevenue": {200: s.DeferredRevenue},
    "getDeferredRevenueRollForward": {200: s.DeferredRollForward},
    "getRevenue": {200: s.Revenue},
    "getMrr": {200: s.Mrr},
    "getRetention": {200: s.Retention},
    "getCollections": {200: s.Collections},
    "getCashForecast": {200: s.CashForecast},
    "getCashForecastBacktest": {200: s.CashForecastBacktest},
    # reconciliation (documents built by adapters/reconciliation)
    "uploadBankStatement": {201: s.Object, 200: s.Object},
    "listBankStatements": {200: s.DataPage},
    "getBankStatement": {200: s.Object},
    "createEntryFromStatementLine": {201: s.Object},
    "createCsvMapping": {201: s.Object},
    "listCsvMappings": {200: s.DataList},
    "autoMatch": {200: s.Object},
    "createMatch": {201: s.Object},
    "listMatches": {200: s.DataList},
    "getMatch": {200: s.Object},
    "deleteMatch": {200: s.Object},
    "unmatch": {200: s.Object},
    "getReconciliationReport": {200: s.Object},
    # exports
    "exportBeancount": {200: ("text/plain", str)},
    "exportJournal": {200: ("application/jsonl", str)},
    "getErpMapping": {200: s.Object},
    "putErpMapping": {200: s.Object},
    # wallets
    "createWallet": {201: s.Wallet},
    "getWallet": {200: s.Wallet},
    "topUpWallet": {201: s.WalletWithEntry},
    "expireWalletValue": {201: s.WalletWithEntry},
    "listWalletTransactions": {200: s.WalletTransactionList},
    "listWalletEvents": {200: s.WalletEventList},
    "createWalletReservation": {201: s.WalletReservation},
    "listWalletReservations": {200: s.WalletReservationList},
    "captureWalletReservation": {200: s.WalletReservation},
    "releaseWalletReservation": {200: s.WalletReservation},
    # telecom
    "createRatePlan": {201: s.RatePlan},
    "createSubscriber": {201: s.Subscriber},
    "importCdrs": {200: s.CdrImport},
    "runCdrRating": {201: s.CdrRatingRun},
    "getSubscriberUsageDetail": {200: ("text/csv", str)},
    # services (MSP)
    "createRateCard": {201: s.RateCard},
    "createContract": {201: s.Contract},
    "listContracts": {200: s.ContractList},
    "getContract": {200: s.Contract},
    "recordContractCount": {201: s.Contract},
    "completeMilestone": {200: s.Contract},
    "closeContract": {200: s.Contract},
    "createTimeEntry": {201: s.TimeEntry},
    "importTimeEntries": {201: s.TimeEntryImport},
    "listTimeEntries": {200: s.TimeEntryList},
    "getTimeEntry": {200: s.TimeEntry},
    "updateTimeEntry": {200: s.TimeEntry},
    "approveTimeEntry": {200: s.TimeEntry},
    "createContractBillingRun": {201: s.ContractBillingRun},
    "getTimeStatement": {200: ("text/csv", str)},
    "createWipAccrual": {201: s.WipAccrual},
    "getUtilization": {200: s.UtilizationReport},
    "getRealization": {200: s.RealizationReport},
    "createExpense": {201: s.Expense},
    "listExpenses": {200: s.ExpenseList},
    "getExpense": {200: s.Expense},
    "updateExpense": {200: s.Expense},
    "approveExpense": {200: s.Expense},
    "recordContractProgress": {201: s.ContractProgress},
    "setPerson": {201: s.Person},
    "listPeople": {200: s.PersonList},
    "getWipReport": {200: s.WipReport},
    "getRetainerBurnDown": {200: s.RetainerBurnDown},
    "getProfitability": {200: s.ProfitabilityReport},
    # events and webhooks
    "listEvents": {200: s.EventPage},
    "getEvent": {200: s.Event},
    "redeliverEvent": {201: s.Redelivery},
    "createWebhookEndpoint": {201: s.WebhookEndpoint},
    "listWebhookEndpoints": {200: s.WebhookEndpointList},
    "getWebhookEndpoint": {200: s.WebhookEndpoint},
    "deleteWebhookEndpoint": {200: s.WebhookEndpoint},
    "listWebhookDeliveries": {200: s.WebhookAttemptPage},
    # foreign exchange
    "importFxRates": {201: s.FxRateImport},
    "getFxRate": {200: s.FxRate},
    "createFxRevaluation": {201: s.FxRevaluation, 200: s.FxRevaluation},
    # usage
    "ingestUsageEvents": {200: s.UsageIngest},
    "createMeter": {201: s.Meter},
    "listMeters": {200: s.MeterList},
    "getCustomerUsage": {200: s.CustomerUsage},
    "getUpcomingInvoice": {200: s.UpcomingInvoice},
    "getInvoiceUsageDetail": {200: ("text/csv", str)},
    "createUsageAccrual": {201: s.UsageAccrual},
    "sellWalletAddOn": {201: s.WalletAddOn},
    "addSubscriptionAddOn": {201: s.SubscriptionAddOn},
    "issueVouchers": {201: s.VoucherBatch},
    "redeemVoucher": {201: s.VoucherRedemption},
    # healthcare
    "createPatient": {201: s.Patient},
    "getPatient": {200: s.Patient},
    "getPatientAccessLog": {200: s.PhiAccessLog},
    "createPayer": {201: s.Payer},
    "createCoverage": {201: s.Coverage},
    "createProvider": {201: s.Provider},
    "createFeeSchedule": {201: s.FeeSchedule},
    "createEncounter": {201: s.Encounter},
    "getEncounter": {200: s.Encounter},
    "createClaim": {201: s.Claim},
    "getClaim": {200: s.Claim},
    "setClaimStatus": {200: s.Claim},
    "getClaim837": {200: ("text/plain", str)},
    "submitClaim": {200: s.Claim},
    "importRemittance": {201: s.RemittanceImport, 200: s.RemittanceImport},
    "listQuarantinedRemittances": {200: s.QuarantinedRemittanceList},
    "getQuarantinedRemittanceFile": {200: ("text/plain", str)},
    "createPatientPayment": {201: s.PatientPayment},
    "getArByPayer": {200: s.ArByPayer},
    "getPatientStatement": {200: s.PatientStatement},
    "createPaymentPlan": {201: s.PaymentPlan},
    "getPaymentPlan": {200: s.PaymentPlan},
    "createPatientRefund": {201: s.PatientRefund},
    "writeOffSmallBalances": {201: s.SmallBalanceWriteOff, 200: s.SmallBalanceWriteOff},
    "getDenialReport": {200: s.DenialReport},
    "getDaysInAr": {200: s.DaysInAr},
    "getNetCollectionRate": {200: s.NetCollectionRate},
    "getExpectedPayments": {200: s.ExpectedPayments},
    "attachPaymentMethod": {201: s.PaymentMethod},
    "listPaymentMethods": {200: s.PaymentMethodList},
    "detachPaymentMethod": {200: s.PaymentMethod},
    "payInvoice": {200: s.Invoice},
    "listPayouts": {200: s.PayoutList},
    "listDisputes": {200: s.DisputeList},
    "closeDispute": {200: s.Dispute},
    "createDunningRun": {201: s.DunningRun},
    "listMessages": {200: s.MessageList},
    "createCollectionRun": {201: s.CollectionRun},
    "getCollectionRun": {200: s.CollectionRun},
    "listCollectionRuns": {200: s.CollectionRunList},
    "getCollectionRunFile": {200: ("application/xml", str)},
    "importCollectionReturns": {201: s.CollectionReturnImport, 200: s.CollectionReturnImport},
    "receiveStripeWebhook": {200: s.WebhookReceived},
    # CRM sync
    "setCrmMapping": {200: s.CrmMapping},
    "getCrmMapping": {200: s.CrmMapping},
    "runCrmSync": {200: s.CrmSync},
    "listCrmSyncLog": {200: s.CrmSyncLogPage},
    "receiveHubSpotWebhook": {200: s.CrmWebhookReceived},
    "receiveSalesforceOutboundMessage": {200: ("text/xml", str)},
}

# Summaries where the operation id alone reads badly.
_SUMMARIES = {
    "health": "Check that the service and its database answer",
    "metrics": "Prometheus metrics of the service (no key)",
    "upsertCustomer": "Create a customer, or update the one with the same external_id",
    "getArAging": "Accounts receivable aging",
    "unmatch": "Undo a reconciliation match",
    "autoMatch": "Match statement lines to postings automatically",
    "exportJournal": "Export the journal feed (JSON lines, or an ERP's CSV layout)",
    "getBalances": "Balances of one account",
    "postJournalEntryBatch": "Post up to 1,000 journal entries at once",
    "getClaim837": "The X12 837P interchange the claim's submission generated (409 before)",
    "submitClaim": "Submit a claim: generate and keep its X12 837P, status submitted",
    "importRemittance": "Import an X12 835 remittance (refused whole unless it balances)",
    "listQuarantinedRemittances": "835 files refused whole (nothing posted), with the reason",
    "getQuarantinedRemittanceFile": "A quarantined 835 as received (PHI)",
    "runCrmSync": "Sync customers and closed-won deals from a CRM (full or incremental)",
    "receiveHubSpotWebhook": "Receive webhooks from Hubspot (signature v3, 5-minute window)",
    "receiveSalesforceOutboundMessage": "Receive Salesforce outbound messages (SOAP)",
    "getCollectionRunFile": "The run's pain.008 XML or NACHA text, the same bytes every time",
    "importCollectionReturns": "Import a pain.002, camt.054 or NACHA returns file",
}
_ACRONYMS = {"ar": "AR", "erp": "ERP", "csv": "CSV", "crm": "CRM"}

_ERRORS = {
    400: "The request is malformed (a bad parameter or body)",
    402: "The wallet's available balance is short of the amount asked",
    401: "No API key, or an unknown or revoked one",
    403: "The key's role may not do this",
    404: "Something the request names does not exist in this book",
    409: (
        "The request conflicts with the book's state, reuses an Idempotency-Key, or was"
        " rolled back in favour of a concurrent request (concurrent_update: retry it)"
    ),
    413: "The uploaded file is too large",
    415: "The body is not application/json",
    422: "The request is well-formed but breaks a rule",
    503: "The database is unavailable; try again shortly",
}

IDEMPOTENCY_KEY: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": (
        "Makes a retry safe: the first request's answer is stored and replayed (with"
        " Idempotent-Replayed: true) for the same key and request; the same key with"
        " another request is a 409."
    ),
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH},
}

# Runs that are many transactions: safe to repeat by construction, so a key is
# accepted but no answer is stored for it.
REPEATABLE = {"createBillingRun", "runRevenueRecognition", "runCrmSync", "createDunningRun"}
REPEATABLE_KEY = (
    "Accepted for uniformity; a repeated run creates nothing twice (each subscription"
    " period is invoiced once; recognition posts only what is still due; each dunning"
    " step is done once per invoice), so no"
    " answer is stored."
)


def summary(operation_id: str) -> str:
    """A sentence from the operation id: "finalizeInvoice" -> "Finalize invoice"."""
    if operation_id in _SUMMARIES:
        return _SUMMARIES[operation_id]
    words = [w.lower() for w in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])", operation_id)]
    words = [_ACRONYMS.get(w, w) for w in words]
    return " ".join([words[0].capitalize(), *words[1:]])


def tag(path: str) -> str:
    """The resource an operation belongs to: /v1/invoices/{ref}/void -> invoices."""
    parts = [p for p in path.split("/") if p and not p.startswith("{")]
    if parts[:1] != ["v1"]:
        return "service"
    if parts[1:2] == ["reports"] and parts[2:3] != ["reconciliation"]:
        return "reports"
    if parts[1:2] in (["bank-statements"], ["csv-mappings"], ["reports"]):
        return "reconciliation"
    return parts[1]


def _content(shape: Shape, components: dict[str, Any]) -> dict[str, Any]:
    media, kind = shape if isinstance(shape, tuple) else ("application/json", shape)
    (schema,), found = msgspec.json.schema_components([kind], ref_template=_REF)
    components.update(found)
    return {media: {"schema": schema}}


def _errors(path: str, method: str, operation: dict[str, Any]) -> list[int]:
    codes = [400, 404, 422, 503]
    if path.startswith("/v1/"):
        codes += [401, 403]
    if method in ("post", "put", "delete"):
        codes.append(409)
    if method == "post" and (
        path.endswith("/reservations") or path.endswith("wallets/{ref}/add-ons")
    ):
        codes.append(402)  # the wallet's available balance is short
    if "requestBody" in operation:
        body = operation["requestBody"].get("content", {})
        codes.append(413 if "multipart/form-data" in body else 415)
    return sorted(codes)


def refine(document: dict[str, Any]) -> None:
    """Complete Litestar's document in place (see the module's docstring), once."""
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    if "Problem" in schemas:
        return
    (problem,), found = msgspec.json.schema_components([s.Problem], ref_template=_REF)
    schemas.update(found)
    imported = document.get("paths", {}).get("/v1/time-entries/import", {}).get("post")
    if imported is not None:  # a raw text/csv body, which Litestar does not describe
        imported["requestBody"] = {
            "required": True,
            "content": {"text/csv": {"schema": {"type": "string"}}},
        }
    usage = document.get("paths", {}).get("/v1/usage-events", {}).get("post")
    if usage is not None:  # the route reads its JSON body as bytes (RawBody)
        name = "UsageBatchIn"
        schemas[name] = {
            "properties": {"events": {"items": {}, "type": "array"}},
            "type": "object",
            "required": ["events"],
            "title": name,
        }
        batch = {
            "oneOf": [{"items": {}, "type": "array"}, {"$ref": _REF.format(name="UsageBatchIn")}]
        }
        usage["requestBody"] = {
            "content": {"application/json": {"schema": batch}},
            "required": True,
        }
    for path, item in document.get("paths", {}).items():
        for method in _METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            operation_id = operation["operationId"]
            operation["summary"] = summary(operation_id)
            operation["tags"] = [tag(path)]
            if path.startswith("/v1/"):
                operation["security"] = [{BEARER: []}]
            if method == "post":
                key = IDEMPOTENCY_KEY
                if operation_id in REPEATABLE:
                    key = {**key, "description": REPEATABLE_KEY}
                operation.setdefault("parameters", []).append(key)
            # A route missing from SUCCESS keeps Litestar's answer (and fails the
            # test that every answer is typed) rather than break the docs pages.
            responses = {k: v for k, v in operation["responses"].items() if k.startswith("2")}
            if operation_id in SUCCESS:
                responses = {
                    str(status): {
                        "description": "Created" if status == 201 else "OK",
                        "content": _content(shape, schemas),
                    }
                    for status, shape in SUCCESS[operation_id].items()
                }
            for status in _errors(path, method, operation):
                responses[str(status)] = {
                    "description": _ERRORS[status],
                    "content": {PROBLEM: {"schema": problem}},
                }
            operation["responses"] = responses
    journal = document["paths"].get("/v1/exports/journal", {}).get("get")
    if journal is not None:  # the ERP layouts are CSV; `manifest=true` answers JSON
        content = journal["responses"]["200"]["content"]
        content["text/csv"] = {"schema": {"type": "string"}}
        content["application/json"] = {"schema": {"type": "object"}}
    invoice = document["paths"].get("/v1/invoices/{ref}/document", {}).get("get")
    if invoice is not None:  # format=pdf answers the same document as a PDF
        invoice["responses"]["200"]["content"]["application/pdf"] = {
            "schema": {"type": "string", "format": "binary"}
        }
    patient = document["paths"].get("/v1/patients/{ref}/statement", {}).get("get")
    if patient is not None:  # format=html and format=pdf: the same statement as a page
        content = patient["responses"]["200"]["content"]
        content["text/html"] = {"schema": {"type": "string"}}
        content["application/pdf"] = {"schema": {"type": "string", "format": "binary"}}
    statement = document["paths"].get("/v1/invoices/{ref}/time-statement", {}).get("get")
    if statement is not None:  # format=html and format=pdf: the same rows as a page
        content = statement["responses"]["200"]["content"]
        content["text/html"] = {"schema": {"type": "string"}}
        content["application/pdf"] = {"schema": {"type": "string", "format": "binary"}}


class _Json(JsonRenderPlugin):
    """The JSON document, completed before its first render."""

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        refine(openapi_schema)
        return super().render(request, openapi_schema)


class _Swagger(SwaggerRenderPlugin):
    """The Swagger UI page, completed before its first render."""

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        refine(openapi_schema)
        return super().render(request, openapi_schema)


def openapi_config() -> OpenAPIConfig:
    swagger = _Swagger(
        path=["/", "/swagger"],
        js_url=f"{ASSETS}/swagger-ui-bundle.js",
        css_url=f"{ASSETS}/swagger-ui.css",
        standalone_preset_js_url=f"{ASSETS}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/png' href='{ASSETS}/favicon-32x32.png'>",
    )
    return OpenAPIConfig(
        title="Active Billing",
        version="0.1.0",
        description="Billing and accounting whose ledger is the truth. Amounts are decimal"
        " strings; errors are RFC 9457 problems (application/problem+json).",
        components=Components(
            security_schemes={
                BEARER: SecurityScheme(
                    type="http",
                    scheme="bearer",
                    description="An API key: `Authorization: Bearer <key>`",
                )
            }
        ),
        render_plugins=[swagger, _Json()],
    )


def docs_assets() -> Router:
    """Swagger UI's files from the installed swagger-ui-bundle package."""
    return create_static_files_router(
        path=ASSETS, directories=[Path(str(swagger_ui_path))], include_in_schema=False
    )
