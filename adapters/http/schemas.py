"""The shapes of the API's answers, for its OpenAPI document.

The routes build their JSON as dicts (the *_json functions beside them); these
Structs say the same shapes to clients and to the schema-conformance test
(tests/integration/test_http_openapi.py), which fails when the two part.
Amounts are decimal strings; dates are ISO dates, times ISO date-times.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import msgspec

Object = dict[str, Any]


class Health(msgspec.Struct):
    status: str


class Problem(msgspec.Struct):
    """An RFC 9457 problem; `code` is the machine-readable reason."""

    type: str
    title: str
    status: int
    detail: str
    code: str | None = None


# --- ledger -----------------------------------------------------------------------------


class Account(msgspec.Struct):
    id: str
    name: str
    type: str
    currencies: list[str]
    code: str | None
    min_balance: str | None
    metadata: Object
    status: str
    opened_at: str
    closed_at: str | None


class AccountList(msgspec.Struct):
    data: list[Account]


class PostingOut(msgspec.Struct):
    account: str
    amount: str
    currency: str
    customer: str | None
    document: str | None
    dimensions: dict[str, str]


class JournalEntry(msgspec.Struct):
    id: str
    effective_date: date
    recorded_at: str
    memo: str
    metadata: Object
    idempotency_key: str | None
    reverses: str | None
    sequence: int | None
    postings: list[PostingOut]


class JournalEntryPage(msgspec.Struct):
    data: list[JournalEntry]
    next_cursor: str | None


class JournalEntryBatch(msgspec.Struct):
    data: list[JournalEntry]


class CurrencyBalance(msgspec.Struct):
    currency: str
    balance: str


class AccountBalances(msgspec.Struct):
    account: str
    account_id: str
    as_of: date
    balances: list[CurrencyBalance]


class TrialBalanceLine(msgspec.Struct):
    account: str
    currency: str
    debit: str
    credit: str
    balance: str


class DebitCredit(msgspec.Struct):
    debit: str
    credit: str


class TrialBalance(msgspec.Struct):
    as_of: date
    lines: list[TrialBalanceLine]
    totals: dict[str, DebitCredit]


class Period(msgspec.Struct):
    period: str
    status: str


class PeriodList(msgspec.Struct):
    data: list[Period]


class Clock(msgspec.Struct):
    mode: str
    now: date


# --- billing ----------------------------------------------------------------------------


class CustomerBalance(msgspec.Struct):
    currency: str
    balance_due: str
    credit_balance: str


class Customer(msgspec.Struct):
    id: str
    object: str
    name: str
    currency: str
    email: str | None
    external_id: str | None
    payment_terms: str
    payment_terms_days: int
    tax_rate: str
    tax_treatment: str
    address: Object
    metadata: Object
    created_at: str
    credit_balance: str
    balance_due: str
    balances: list[CustomerBalance]
    collection_method: str
    default_payment_method: str | None


class CustomerPage(msgspec.Struct):
    data: list[Customer]
    next_cursor: str | None


class StatementLine(msgspec.Struct):
    date: date
    entry_id: str
    kind: str
    document: str | None
    reference: str | None
    invoices: list[str]
    description: str
    amount: str
    balance: str


class CustomerStatement(msgspec.Struct):
    object: str
    customer: str
    customer_name: str
    currency: str
    date_from: date = msgspec.field(name="from")
    date_to: date = msgspec.field(name="to")
    opening_balance: str
    lines: list[StatementLine]
    closing_balance: str


class Product(msgspec.Struct):
    id: str
    object: str
    name: str
    description: str | None
    revenue_account: str
    active: bool
    metadata: Object


class ProductPage(msgspec.Struct):
    data: list[Product]
    next_cursor: str | None


class Price(msgspec.Struct):
    id: str
    object: str
    product: str
    currency: str
    charge_model: str
    unit_amount: str | None
    tiers: list[Object] | None
    package_size: int | None
    recurring: bool
    interval: str | None
    interval_count: int | None
    metric: str | None
    aggregation: str | None
    tax_behavior: str
    customer: str | None
    overrides_price: str | None
    free_units: str | None
    minimum_amount: str | None
    active: bool
    metadata: Object


class InvoiceLine(msgspec.Struct):
    line_no: int
    kind: str
    description: str
    quantity: str
    unit_amount: str
    amount: str
    discount_amount: str
    net_amount: str
    tax_rate: str
    tax_amount: str
    service_start: date | None
    service_end: date | None
    price: str | None
    revenue_account: str


class PaymentAttempt(msgspec.Struct):
    id: str
    at: str
    payment_method: str
    outcome: str
    code: str | None
    amount: str
    payment: str | None


class NextAction(msgspec.Struct):
    type: str
    on: str


class DunningStep(msgspec.Struct):
    step: str
    kind: str
    on: str
    as_of: str
    outcome: str
    detail: Object


class Invoice(msgspec.Struct):
    id: str
    object: str
    number: str | None
    status: str
    customer: str
    subscription: str | None
    currency: str
    issue_date: date | None
    due_date: date | None
    supply_start: date | None
    supply_end: date | None
    subtotal: str
    discount_total: str
    tax_total: str
    total: str
    amount_paid: str
    amount_credited: str
    amount_written_off: str
    amount_due: str
    memo: str
    metadata: Object
    created_at: str
    lines: list[InvoiceLine]
    attempts: list[PaymentAttempt] = []
    next_action: NextAction | None = None
    dunning_steps: list[DunningStep] = []


class InvoiceWithCreditApplied(Invoice, kw_only=True):
    applied: str


class InvoicePage(msgspec.Struct):
    data: list[Invoice]
    next_cursor: str | None


class Deleted(msgspec.Struct):
    id: str
    object: str
    deleted: bool


class Allocation(msgspec.Struct):
    invoice: str
    number: str | None
    amount: str


class Payment(msgspec.Struct):
    id: str
    object: str
    customer: str
    amount: str
    currency: str
    method: str
    received_on: date
    reference: str | None
    status: str
    allocations: list[Allocation]
    unapplied: str
    refunded: str
    entry: str | None
    metadata: Object
    created_at: str


class PaymentPage(msgspec.Struct):
    data: list[Payment]
    next_cursor: str | None


class Refund(msgspec.Struct):
    id: str
    object: str
    customer: str
    payment: str | None
    amount: str
    currency: str
    reason: str
    refunded_on: date
    entry: str | None
    created_at: str


class CreditNote(msgspec.Struct):
    id: str
    object: str
    number: str
    invoice: str
    customer: str
    currency: str
    issue_date: date
    net_amount: str
    tax_amount: str
    total: str
    reason: str
    credit_to: str
    lines: list[Object]
    entry: str | None
    created_at: str


class CreditNotePage(msgspec.Struct):
    data: list[CreditNote]
    next_cursor: str | None


class SubscriptionItem(msgspec.Struct):
    id: str
    price: str | None  # None on a rate-plan item
    quantity: str
    effective_from: date
    effective_to: date | None
    rate_plan: str | None = None  # a postpaid telecom item: the subscriber's CDRs


class Subscription(msgspec.Struct):
    id: str
    object: str
    customer: str
    status: str
    currency: str
    start_date: date
    billing_anchor: date
    interval: str
    interval_count: int
    trial_end: date | None
    current_period_start: date | None
    current_period_end: date | None
    next_period_start: date
    periods_billed: int
    cancel_at: date | None
    canceled_on: date | None
    paused_on: date | None
    coupon: str | None
    metadata: Object
    items: list[SubscriptionItem]
    subscriber: str | None = None  # with a rate-plan item: the MSISDN or account it bills


class SubscriptionWithInvoice(Subscription, kw_only=True):
    """A changed or canceled subscription with what the change issued: an invoice for a
    charge, or credit notes for a credit (never a negative invoice)."""

    invoice: Invoice | None
    credit_notes: list[CreditNote]


class SubscriptionPage(msgspec.Struct):
    data: list[Subscription]
    next_cursor: str | None


class Coupon(msgspec.Struct):
    id: str
    object: str
    name: str
    duration: str
    duration_in_periods: int | None
    percent_off: str | None
    amount_off: str | None
    currency: str | None


class BillingRun(msgspec.Struct):
    id: str
    object: str
    as_of: date
    status: str
    invoices_created: int
    started_at: str
    finished_at: str | None
    heartbeat_at: str
    failures: list[BillingRunFailure]


class BillingRunFailure(msgspec.Struct):
    """A subscription the run could not bill (rolled back whole), and why."""

    subscription: str
    reason: str


# --- revenue and reports ----------------------------------------------------------------


class RecognitionRun(msgspec.Struct):
    through: date
    entries: int
    lines: int
    recognized: dict[str, str]


class AgingLine(msgspec.Struct):
    invoice: str
    number: str
    customer: str
    customer_name: str
    currency: str
    due_date: date | None
    amount_due: str
    bucket: str


class ArAging(msgspec.Struct):
    as_of: date
    totals: dict[str, dict[str, str]]
    invoices: list[AgingLine]


class DeferredRevenue(msgspec.Struct):
    as_of: date
    balances: list[CurrencyBalance]
    by_revenue_account: list[Object]
    waterfall: list[Object]


class DeferredRollForward(msgspec.Struct):
    date_from: date = msgspec.field(name="from")
    date_to: date = msgspec.field(name="to")
    currencies: dict[str, dict[str, str]]


class Revenue(msgspec.Struct):
    date_from: date = msgspec.field(name="from")
    date_to: date = msgspec.field(name="to")
    lines: list[Object]


# --- documents whose shape the reconciliation and export modules own ---------------------


class DataList(msgspec.Struct):
    data: list[Object]


class DataPage(msgspec.Struct):
    data: list[Object]
    next_cursor: str | None


# --- the book ---------------------------------------------------------------------------


class BookClock(msgspec.Struct):
    mode: str
    date: str | None


class Book(msgspec.Struct):
    """The book and its settings (secrets masked)."""

    id: str
    name: str
    currency: str
    clock: BookClock
    today: date
    created_at: str
    settings: dict[str, Any]


class ApiKey(msgspec.Struct):
    """An API key as listed: never its secret (shown once, at creation)."""

    key_id: str
    role: str
    label: str | None
    created_at: str
    last_used_at: str | None
    revoked_at: str | None


class ApiKeyList(msgspec.Struct):
    data: list[ApiKey]


class NewApiKey(msgspec.Struct):
    """A key just made: `api_key` is its secret, shown this once (stored hashed)."""

    id: str  # the new key's id (as key_id)
    key_id: str
    role: str
    label: str | None
    created_at: str
    last_used_at: str | None
    revoked_at: str | None
    api_key: str


class RotatedApiKey(msgspec.Struct):
    """The successor key (secret shown once) and the rotated key, refused from its
    `revoked_at` (now, or the end of the grace period)."""

    id: str  # the new key's id (as key_id)
    key_id: str
    role: str
    label: str | None
    created_at: str
    last_used_at: str | None
    revoked_at: str | None
    api_key: str
    rotated_from: ApiKey


class AuditRecord(msgspec.Struct):
    """One mutation the API answered: who, what, how it ended, what it created."""

    id: str
    at: str
    key_id: str | None  # none for a command-line mutation
    principal: str  # "key:<key id>", or "cli:<os user>" for the command line
    role: str
    method: str  # POST, PUT, PATCH, DELETE, or CLI
    path: str  # the route, or the command ("keys rotate")
    status: int  # HTTP status, or the command's exit code
    idempotency_key: str | None
    request_id: str
    created: list[str]


class AuditLog(msgspec.Struct):
    data: list[AuditRecord]
    next_cursor: str | None


# --- wallets ------------------------------------------------------------------------------


class Wallet(msgspec.Struct):
    id: str
    object: str
    customer: str
    currency: str
    account: str
    balance: str
    held: str
    available: str
    low_balance_threshold: str | None
    low_balance: bool
    valid_until: str | None
    created_at: str


class WalletWithEntry(msgspec.Struct):
    wallet: Wallet
    entry: str


class WalletReservation(msgspec.Struct):
    id: str
    object: str
    wallet: str
    requested: str
    amount: str
    captured: str | None
    status: str
    expires_at: str
    closed_at: str | None
    entry: str | None
    created_at: str


class WalletReservationList(msgspec.Struct):
    data: list[WalletReservation]


class WalletTransaction(msgspec.Struct):
    entry: str
    date: str
    recorded_at: str
    kind: str
    amount: str
    memo: str


class WalletTransactionList(msgspec.Struct):
    data: list[WalletTransaction]


class WalletEvent(msgspec.Struct):
    id: str
    kind: str
    available: str
    threshold: str
    created_at: str


class WalletEventList(msgspec.Struct):
    data: list[WalletEvent]


# --- telecom ------------------------------------------------------------------------------


class RatePlan(msgspec.Struct):
    id: str
    object: str
    name: str
    effective_from: str
    currency: str
    time_zone: str
    bands: list[Object]
    zones: list[Object]
    rates: list[Object]
    allowances: list[Object]
    roaming_uplift_percent: str


class Subscriber(msgspec.Struct):
    subscriber: str
    object: str
    customer: str
    rate_plan: str
    wallet: str | None
    created_at: str


class CdrImport(msgspec.Struct):
    accepted: int
    duplicates: list[str]
    rejected: list[Object]


class CdrRatingRun(msgspec.Struct):
    id: str
    object: str
    through: str
    rated: int
    unrateable: int
    entries: int
    amounts: dict[str, str]


class UsageAccrual(msgspec.Struct):
    object: str
    as_of: str
    cdrs_rated: int
    cdr_amounts: dict[str, str]
    accrued: dict[str, str]
    entries: int


class WalletAddOn(msgspec.Struct):
    id: str
    object: str
    price: str
    quantity: str
    amount: str
    currency: str
    revenue_account: str
    wallet: Wallet
    entry: str | None


class SubscriptionAddOn(msgspec.Struct):
    id: str
    object: str
    price: str
    quantity: str
    amount: str
    currency: str
    revenue_account: str
    subscription: str
    pending_invoice: str


class VoucherBatch(msgspec.Struct):
    id: str
    object: str
    currency: str
    amount: str
    count: int
    codes: list[str]
    entry: str


class VoucherRedemption(msgspec.Struct):
    object: str
    amount: str
    currency: str
    wallet: Wallet


# services (MSP)
class RateCard(msgspec.Struct):
    id: str
    object: str
    name: str
    currency: str
    customer: str | None
    rates: dict[str, str]
    default_rate: str | None


class ContractMilestone(msgspec.Struct):
    name: str
    amount: str
    completed_on: str | None
    invoice: str | None


class ContractCount(msgspec.Struct):
    date: str
    quantity: int


class Contract(msgspec.Struct):
    id: str
    object: str
    customer: str
    type: str
    currency: str
    start_date: str
    end_date: str | None
    interval: str
    status: str
    terms: Object
    milestones: list[ContractMilestone]
    counts: list[ContractCount]


class ContractList(msgspec.Struct):
    data: list[Contract]


class TimeEntry(msgspec.Struct):
    id: str
    object: str
    contract: str
    customer: str
    person: str
    date: str
    start: str | None
    end: str | None
    minutes: int
    rounded_minutes: int
    hours: str
    role: str
    billable: str
    after_hours: bool
    notes: str
    ticket: str | None
    project: str | None
    rate: str
    rate_source: str
    amount: str
    status: str
    drawn_minutes: int
    overage_minutes: int
    written_down: str
    invoice: str | None
    invoice_line: int | None
    adjusts: str | None


class TimeEntryList(msgspec.Struct):
    data: list[TimeEntry]


class TimeEntryImport(msgspec.Struct):
    object: str
    imported: int
    time_entries: list[TimeEntry]


class ContractRunInvoice(msgspec.Struct):
    id: str
    number: str | None
    customer: str
    total: str


class ContractBillingRun(msgspec.Struct):
    object: str
    as_of: str
    invoices: list[ContractRunInvoice]
    written_down: dict[str, str]
    expired_hours: dict[str, str]
    held_below_zero: dict[str, str]  # client id → its lines' total, not invoiced this run


class WipContract(msgspec.Struct):
    contract: str
    customer: str
    currency: str
    amount: str
    entries: int


class WipAccrual(msgspec.Struct):
    object: str
    as_of: str
    contracts: list[WipContract]


class UtilizationRow(msgspec.Struct):
    person: str
    billable_hours: str
    non_billable_hours: str
    available_hours: str
    utilization: str | None


class UtilizationReport(msgspec.Struct, rename={"date_from": "from"}):
    date_from: str
    to: str
    people: list[UtilizationRow]


class RealizationRow(msgspec.Struct):
    customer: str
    currency: str
    standard: str
    billed: str
    realization: str | None


class Expense(msgspec.Struct):
    id: str
    object: str
    contract: str
    customer: str
    person: str
    date: str
    description: str
    currency: str
    amount: str
    markup_percent: str | None
    billable_amount: str
    billable: bool
    receipt: dict[str, str] | None
    status: str
    invoice: str | None
    invoice_line: int | None
    external_id: str | None
    adjusts: str | None


class ExpenseList(msgspec.Struct):
    data: list[Expense]


class ContractProgress(msgspec.Struct):
    object: str
    contract: str
    kind: str
    date: str
    percent_complete: str
    earned: str
    billed: str
    unbilled: str
    deferred: str


class Person(msgspec.Struct):
    object: str
    name: str
    currency: str
    cost_rate: str
    role: str | None


class PersonList(msgspec.Struct):
    data: list[Person]


class WipAgeRow(msgspec.Struct):
    customer: str
    currency: str
    buckets: dict[str, str]
    total: str


class WipReport(msgspec.Struct):
    as_of: str
    buckets: list[str]
    clients: list[WipAgeRow]


class BurnDownPeriod(msgspec.Struct):
    contract: str
    customer: str
    period_start: str
    period_end: str
    included_hours: str
    carried_in_hours: str
    used_hours: str
    drawn_hours: str
    overage_hours: str
    remaining_hours: str
    carried_out_hours: str
    expired_hours: str
    closed: bool


class RetainerBurnDown(msgspec.Struct):
    periods: list[BurnDownPeriod]


class ProfitabilityRow(msgspec.Struct):
    customer: str
    currency: str
    revenue: str
    labor_cost: str
    expense_cost: str
    cost: str
    margin: str
    margin_ratio: str | None
    unpriced_hours: str


class ProfitabilityReport(msgspec.Struct, rename={"date_from": "from"}):
    date_from: str
    to: str
    clients: list[ProfitabilityRow]


class RealizationReport(msgspec.Struct, rename={"date_from": "from"}):
    date_from: str
    to: str
    clients: list[RealizationRow]


# --- insight (adapters/http/metrics_api.py) ---------------------------------------------


class MrrMonth(msgspec.Struct):
    """One month and currency: start + new + expansion + contraction + churn +
    reactivation = end (contraction and churn negative); ARR = 12 x end."""

    month: str
    currency: str
    start: str
    new: str
    expansion: str
    contraction: str
    churn: str
    reactivation: str
    end: str
    arr: str
    customers: int
    churned_customers: int
    logo_churn_rate: str | None
    revenue_churn_rate: str | None
    nrr: str | None
    grr: str | None
    arpa: str | None


class Ltv(msgspec.Struct):
    currency: str
    arpa: str | None
    revenue_churn_rate: str | None
    ltv: str | None
    formula: str


class CohortMonth(msgspec.Struct):
    month: str
    customers: int
    mrr: str
    logo_retention: str | None
    revenue_retention: str | None


class Cohort(msgspec.Struct):
    cohort: str
    currency: str
    customers: int
    start_mrr: str
    months: list[CohortMonth]


class MrrTotal(msgspec.Struct):
    """One month over every currency in the functional currency, at the rates in force
    on the month's last day: start + movements + fx_effect = end."""

    month: str
    currency: str
    rate_date: str
    rates: dict[str, str]
    start: str
    new: str
    expansion: str
    contraction: str
    churn: str
    reactivation: str
    fx_effect: str
    end: str
    arr: str
    customers: int


class MrrMissingRate(msgspec.Struct):
    month: str
    currency: str


class Mrr(msgspec.Struct):
    date_from: str = msgspec.field(name="from")
    date_to: str = msgspec.field(name="to")
    rules: list[str] = []
    months: list[MrrMonth] = []
    ltv: list[Ltv] = []
    cohorts: list[Cohort] = []
    # only when the book holds FX rates
    functional_currency: str | None = None
    totals: list[MrrTotal] = []
    missing_rates: list[MrrMissingRate] = []


class Retention(msgspec.Struct):
    date_from: str = msgspec.field(name="from")
    date_to: str = msgspec.field(name="to")
    ltv: list[Ltv] = []
    cohorts: list[Cohort] = []


class CollectionsCurrency(msgspec.Struct):
    currency: str
    opening_ar: str
    credit_sales: str
    closing_ar: str
    closing_current_ar: str
    dso: str
    cei: str | None
    invoices_settled: int
    paid_on_time: int
    share_paid_on_time: str | None


class CustomerLateness(msgspec.Struct):
    customer: str
    name: str
    currency: str
    invoices_settled: int
    average_days_late: str


class AgingTrendPoint(msgspec.Struct):
    """Receivable by age bucket at a month end (the range's last day for its last month)."""

    as_of: date
    currency: str
    current: str
    d1_30: str = msgspec.field(name="1-30")
    d31_60: str = msgspec.field(name="31-60")
    d61_90: str = msgspec.field(name="61-90")
    d90: str = msgspec.field(name="90+")
    total: str = "0"


class Collections(msgspec.Struct):
    date_from: date = msgspec.field(name="from")
    date_to: date = msgspec.field(name="to")
    rules: list[str]
    currencies: list[CollectionsCurrency]
    customers: list[CustomerLateness]
    aging_trend: list[AgingTrendPoint]


class ForecastWeek(msgspec.Struct):
    week: int
    start: date
    end: date
    currency: str
    open_invoices: str
    scheduled_billing: str
    gross: str
    expected_failures: str
    net: str


class CashForecast(msgspec.Struct):
    as_of: date
    rules: list[str]
    weeks: list[ForecastWeek]
    beyond: dict[str, str]
    failure_rate: dict[str, str]


class BacktestWeek(msgspec.Struct):
    start: date
    end: date
    currency: str
    forecast: str
    actual: str
    error: str


class BacktestOverall(msgspec.Struct):
    currency: str
    forecast: str
    actual: str
    error: str
    mean_absolute_error: str
    wape: str | None


class CashForecastBacktest(msgspec.Struct):
    date_from: date = msgspec.field(name="from")
    weeks_compared: int = 0
    rules: list[str] = []
    weeks: list[BacktestWeek] = []
    overall: list[BacktestOverall] = []


# --- events and webhooks ----------------------------------------------------------------


class EventData(msgspec.Struct):
    object: Object
    previous_attributes: Object | msgspec.UnsetType = msgspec.UNSET


class Event(msgspec.Struct):
    """Stripe's shape; `created` is unix seconds, `sequence` the order written."""

    id: str
    object: str
    type: str
    created: int
    sequence: int
    data: EventData


class EventPage(msgspec.Struct):
    data: list[Event]
    next_cursor: str | None


class Redelivery(msgspec.Struct):
    event: str
    deliveries: list[str]


class WebhookEndpoint(msgspec.Struct):
    """`secret` only in the answer to its creation."""

    id: str
    object: str
    url: str
    enabled_events: list[str]
    allow_private_network: bool
    status: str
    disabled_reason: str | None
    consecutive_failures: int
    created_at: str
    secret: str | msgspec.UnsetType = msgspec.UNSET


class WebhookEndpointList(msgspec.Struct):
    data: list[WebhookEndpoint]


class WebhookAttempt(msgspec.Struct):
    id: str
    object: str
    delivery: str
    event: str
    attempted_at: str
    status: str
    response_code: int | None
    error: str | None


class WebhookAttemptPage(msgspec.Struct):
    data: list[WebhookAttempt]
    next_cursor: str | None


# --- foreign exchange ---------------------------------------------------------------------


class FxRateRow(msgspec.Struct):
    date: date
    base: str
    quote: str
    rate: str


class FxRate(msgspec.Struct):
    """The rate in force on `date`: units of `quote` per one `base` (how: direct, inverse,
    cross:EUR, cross:<functional>, identity), with the stored rates it came from."""

    object: str
    base: str
    quote: str
    date: date
    rate: str
    how: str
    sources: list[FxRateRow]


class FxRateImport(msgspec.Struct):
    object: str
    source: str
    imported: int
    skipped_columns: list[str]
    first_date: date
    last_date: date


class FxRevaluationLine(msgspec.Struct):
    invoice: str
    number: str | None
    currency: str
    open_amount: str
    carried_rate: str
    rate: str
    amount: str


class FxRevaluation(msgspec.Struct):
    id: str
    object: str
    as_of: date
    functional_currency: str
    entry_id: str | None
    reversal_entry_id: str | None
    reversal_date: date
    lines: list[FxRevaluationLine]


# --- usage ------------------------------------------------------------------------------


class UsageRejection(msgspec.Struct):
    id: str | None
    reason: str
    message: str


class UsageIngest(msgspec.Struct):
    object: str
    accepted: int
    duplicates: list[str]
    rejected: list[UsageRejection]


class Meter(msgspec.Struct):
    id: str | None
    object: str
    metric: str
    aggregation: str
    property: str | None
    filters: dict[str, list[str]]
    group_by: list[str]
    created_at: str | None


class MeterList(msgspec.Struct):
    data: list[Meter]


class UsageGroup(msgspec.Struct):
    group: dict[str, str | None]
    label: str
    quantity: str


class CustomerUsage(msgspec.Struct):
    object: str
    customer: str
    metric: str
    aggregation: str
    date_from: str = msgspec.field(name="from")
    to: str
    quantity: str
    groups: list[UsageGroup]


class UpcomingLine(msgspec.Struct):
    line_no: int
    kind: str
    description: str
    quantity: str
    unit_amount: str
    amount: str
    discount_amount: str
    tax_amount: str
    service_start: str
    service_end: str
    price: str | None
    revenue_account: str


class UpcomingInvoice(msgspec.Struct):
    object: str
    customer: str
    subscription: str
    currency: str
    issue_date: str
    period_start: str
    period_end: str
    subtotal: str
    discount_total: str
    tax_total: str
    total: str
    lines: list[UpcomingLine]


# --- healthcare (PHI fields are absent for keys that may not see PHI) -------------------


class Patient(msgspec.Struct):
    id: str
    object: str
    created_at: str
    phi: bool
    balance: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    date_of_birth: date | None = None
    gender: str | None = None
    address: Object | None = None
    guarantor: Object | None = None


class PhiAccess(msgspec.Struct):
    at: str
    key_id: str | None
    actor: str
    action: str
    endpoint: str


class PhiAccessLog(msgspec.Struct):
    object: str
    patient: str
    data: list[PhiAccess]


class Payer(msgspec.Struct):
    id: str
    object: str
    name: str
    payer_id: str
    claim_filing_indicator: str
    created_at: str


class Coverage(msgspec.Struct):
    id: str
    object: str
    patient: str
    payer: str
    priority: str
    group_number: str | None
    effective_from: date | None
    effective_to: date | None
    created_at: str
    phi: bool
    member_id: str | None = None


class Provider(msgspec.Struct):
    id: str
    object: str
    name: str
    first_name: str | None
    npi: str
    tax_id: str | None
    taxonomy: str | None
    address: Object
    created_at: str


class FeeItem(msgspec.Struct):
    code: str
    modifiers: list[str]
    amount: str
    allowed: dict[str, str] | None = None  # payer id → contracted amount


class FeeSchedule(msgspec.Struct):
    id: str
    object: str
    name: str
    currency: str
    items: list[FeeItem]
    created_at: str


class EncounterCharge(msgspec.Struct):
    line: int
    code: str
    modifiers: list[str]
    units: str
    amount: str
    diagnosis_pointers: list[int] | None = None


class Encounter(msgspec.Struct):
    id: str
    object: str
    patient: str
    provider: str
    payer: str | None
    fee_schedule: str
    date_of_service: date
    place_of_service: str
    currency: str
    total: str
    entry: str | None
    charges: list[EncounterCharge]
    created_at: str
    phi: bool
    diagnoses: list[str] | None = None


class Claim(msgspec.Struct):
    id: str
    object: str
    control_number: str
    encounter: str
    patient: str
    payer: str
    coverage: str
    priority: str
    status: str
    currency: str
    date_of_service: date
    billed: str
    paid: str
    adjusted: str
    patient_responsibility: str
    payer_balance: str
    submitted_at: str | None
    created_at: str
    phi: bool
    interchange_control: int | None = None  # ISA13 of the 837P its submission generated
    member_id: str | None = None
    diagnoses: list[str] | None = None


class RemittanceClaim(msgspec.Struct):
    control_number: str
    status_code: str
    charge: str
    paid: str
    adjusted: str
    patient_responsibility: str
    claim: str | None = None
    status: str | None = None


class RemittanceImport(msgspec.Struct):
    object: str
    file_sha256: str
    remittances: list[Object]
    claims: list[RemittanceClaim]
    unmatched: list[RemittanceClaim]


class QuarantinedRemittance(msgspec.Struct):
    id: str
    object: str
    received_at: str
    file_name: str
    file_sha256: str
    size: int
    code: str
    level: str | None
    reason: str
    details: dict[str, str]


class QuarantinedRemittanceList(msgspec.Struct):
    object: str
    data: list[QuarantinedRemittance]


class PatientPayment(msgspec.Struct):
    id: str
    object: str
    patient: str
    amount: str
    currency: str
    method: str
    received_on: date
    entry: str
    patient_balance: str


class ArByPayerRow(msgspec.Struct):
    payer: str | None
    name: str
    currency: str
    total: str
    buckets: dict[str, str]


class ArByPayer(msgspec.Struct):
    object: str
    as_of: date
    basis: str
    payers: list[ArByPayerRow]


class StatementEncounter(msgspec.Struct):
    encounter: str
    date_of_service: date
    charges: str
    insurance_paid: str
    adjustments: str
    patient_responsibility: str
    payments: str
    write_offs: str
    balance: str


class PlanInstallment(msgspec.Struct):
    seq: int
    due_on: date
    amount: str
    paid: str
    remaining: str
    status: str  # paid, missed, due, scheduled


class PaymentPlan(msgspec.Struct):
    id: str
    object: str
    patient: str
    status: str
    currency: str
    total: str
    installments: int
    interval: str
    start_date: date
    paid: str
    remaining: str
    as_of: date
    schedule: list[PlanInstallment]
    missed: list[int]
    created_at: str


class PatientStatement(msgspec.Struct):
    object: str
    patient: str
    patient_name: str
    address: Object
    as_of: date
    currency: str
    encounters: list[StatementEncounter]
    payments: list[Object]
    refunds: list[Object]
    totals: dict[str, str]
    payment_plan: PaymentPlan | None


class PatientRefund(msgspec.Struct):
    id: str
    object: str
    patient: str
    amount: str
    currency: str
    method: str
    paid_on: date
    entry: str
    credit_balance: str


class SmallBalanceWriteOff(msgspec.Struct):
    object: str
    id: str
    as_of: date
    max_amount: str
    currency: str
    account: str
    patients: list[Object]
    total: str
    duplicate: bool


class DenialCarc(msgspec.Struct):
    group: str
    carc: str
    claims: int
    rate: str | None
    amount: str


class DenialPayer(msgspec.Struct):
    payer: str
    name: str
    claims_adjudicated: int
    claims_denied: int
    denial_rate: str | None
    denied_amount: str
    by_carc: list[DenialCarc]


class DenialReport(msgspec.Struct):
    object: str
    to: date
    claims_adjudicated: int
    claims_denied: int
    denial_rate: str | None
    payers: list[DenialPayer]
    by_carc: list[DenialCarc]
    date_from: date = msgspec.field(name="from")


class DaysInAr(msgspec.Struct):
    object: str
    as_of: date
    currency: str
    window: Object
    ar: str
    charges: str
    average_daily_charges: str | None
    days_in_ar: str | None


class NetCollectionRate(msgspec.Struct):
    object: str
    to: date
    currency: str
    charges: str
    contractual_adjustments: str
    payer_payments: str
    patient_payments: str
    patient_refunds: str
    payments: str
    net_collection_rate: str | None
    date_from: date = msgspec.field(name="from")


class ExpectedPaymentsPayer(msgspec.Struct):
    payer: str
    name: str
    claims: int
    claims_without_contract: int
    expected_allowed: str
    actual_allowed: str
    expected_payment: str
    actual_payment: str
    variance: str
    detail: list[Object]


class ExpectedPayments(msgspec.Struct):
    object: str
    to: date
    payers: list[ExpectedPaymentsPayer]
    date_from: date = msgspec.field(name="from")


class PaymentMethod(msgspec.Struct):
    id: str
    object: str
    customer: str
    type: str
    gateway: str | None
    token: str | None
    brand: str | None
    last4: str
    exp_month: int | None
    exp_year: int | None
    details: Object
    default: bool
    created_at: str
    detached_at: str | None


class PaymentMethodList(msgspec.Struct):
    data: list[PaymentMethod]


class Payout(msgspec.Struct):
    id: str
    object: str
    gateway: str
    amount: str
    currency: str
    arrival_date: str
    status: str
    entry: str | None


class PayoutList(msgspec.Struct):
    data: list[Payout]


class Dispute(msgspec.Struct):
    id: str
    object: str
    gateway: str
    charge: str
    payment: str
    amount: str
    fee: str
    currency: str
    opened_on: str
    evidence_due: str
    status: str
    closed_on: str | None
    entry: str | None
    closing_entry: str | None


class DisputeList(msgspec.Struct):
    data: list[Dispute]


class CollectionTransaction(msgspec.Struct):
    id: str
    object: str
    invoice: str
    invoice_number: str | None
    customer: str
    payment_method: str
    payment: str
    amount: str
    currency: str
    reference: str
    sequence: str | None
    sec_code: str | None
    status: str
    settled_on: str | None
    returned_on: str | None
    return_code: str | None
    return_reason: str | None
    fee_invoice: str | None


class CollectionRun(msgspec.Struct):
    id: str
    object: str
    scheme: str
    file_format: str
    message_id: str
    as_of: str
    created_on: str
    collection_date: str
    currency: str
    status: str
    total: str
    totals: dict[str, str]
    transaction_count: int
    transactions: list[CollectionTransaction]
    skipped: list[Object]
    settlement_entry: str | None


class CollectionRunSummary(msgspec.Struct):
    id: str
    object: str
    scheme: str
    file_format: str
    message_id: str
    as_of: str
    created_on: str
    collection_date: str
    currency: str
    status: str
    total: str
    returned: str
    transaction_count: int


class CollectionRunList(msgspec.Struct):
    data: list[CollectionRunSummary]


class CollectionReturn(msgspec.Struct):
    transaction: str
    reference: str
    invoice: str
    amount: str
    currency: str
    code: str | None
    reason: str | None
    duplicate: bool
    mandate_status: str
    fee_invoice: str | None
    entry: str | None


class CollectionReturnImport(msgspec.Struct):
    object: str
    format: str
    processed: int
    duplicates: int
    returns: list[CollectionReturn]


class WebhookReceived(msgspec.Struct):
    received: bool
    event: str
    duplicate: bool


# --- CRM sync -------------------------------------------------------------------------------


class CrmMapping(msgspec.Struct):
    object: str
    provider: str
    fields: dict[str, str]
    outbound: dict[str, str]
    products: dict[str, str]
    cursor: str | None
    synced_at: str | None


class CrmSync(msgspec.Struct):
    object: str
    provider: str
    since: str | None
    cursor: str | None
    accounts: int
    created: int
    updated: int
    unchanged: int
    conflicts: int
    deals: int
    subscriptions: int
    skipped: int
    errors: list[str]


class CrmSyncLogEntry(msgspec.Struct):
    id: str
    object: str
    provider: str
    record_id: str | None
    customer: str | None
    kind: str
    field: str | None
    crm_value: Any
    billing_value: Any
    resolution: str | None
    message: str | None
    at: str


class CrmSyncLogPage(msgspec.Struct):
    data: list[CrmSyncLogEntry]
    next_cursor: str | None


class CrmWebhookReceived(msgspec.Struct):
    object: str
    received: int
    synced: dict[str, str]


class DunningRefusal(msgspec.Struct):
    invoice: str
    reason: str


class DunningRun(msgspec.Struct):
    object: str
    as_of: str
    invoices: int
    retries: int
    retries_succeeded: int
    reminders: int
    late_fees: int
    suspended: int
    written_off: int
    resumed: int
    refused: list[DunningRefusal]


class Message(msgspec.Struct):
    id: str
    object: str
    customer: str
    invoice: str | None
    kind: str
    recipient: str
    subject: str
    body: str
    status: str
    attempts: int
    next_attempt_at: str
    last_error: str | None
    sent_at: str | None
    created_at: str


class MessageList(msgspec.Struct):
    data: list[Message]
    next_cursor: str | None
