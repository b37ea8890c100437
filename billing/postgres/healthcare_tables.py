"""The healthcare tables (same metadata as the ledger's).

What a claim is worth now (paid, adjusted, patient responsibility) is read
from the ledger's postings, which carry `dimensions->>'claim'`; the tables
keep what the documents say. PHI (patient names, date of birth, member ids,
diagnoses) lives only here, never in postings or entry memos.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from ledger.postgres.tables import TIMESTAMPTZ, metadata


def _fk(table: str, column: str) -> ForeignKeyConstraint:
    return ForeignKeyConstraint(["book_id", column], [f"{table}.book_id", f"{table}.id"])


def _book() -> ForeignKeyConstraint:
    return ForeignKeyConstraint(["book_id"], ["books.id"])


def _created() -> Column[object]:
    return Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()"))


patients = Table(
    "patients",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("first_name", Text, nullable=False),
    Column("last_name", Text, nullable=False),
    Column("date_of_birth", Date, nullable=False),
    Column("gender", Text, nullable=False),
    Column("address", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("guarantor", JSONB),
    _created(),
    PrimaryKeyConstraint("book_id", "id"),
    _book(),
    CheckConstraint("gender in ('M', 'F', 'U')", name="gender"),
)

payers = Table(
    "payers",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("name", Text, nullable=False),
    Column("payer_id", Text, nullable=False),
    Column("claim_filing_indicator", Text, nullable=False, server_default="CI"),
    _created(),
    PrimaryKeyConstraint("book_id", "id"),
    UniqueConstraint("book_id", "payer_id"),
    _book(),
)

coverages = Table(
    "coverages",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("patient_id", Uuid, nullable=False),
    Column("payer_id", Uuid, nullable=False),
    Column("member_id", Text, nullable=False),
    Column("group_number", Text),
    Column("priority", Text, nullable=False),
    Column("effective_from", Date),
    Column("effective_to", Date),  # inclusive
    _created(),
    PrimaryKeyConstraint("book_id", "id"),
    _fk("patients", "patient_id"),
    _fk("payers", "payer_id"),
    Index(None, "book_id", "patient_id"),
    CheckConstraint("priority in ('primary', 'secondary', 'tertiary')", name="priority"),
    CheckConstraint(
        "effective_to is null or effective_from is null or effective_to >= effective_from",
        name="dates",
    ),
)

providers = Table(
    "providers",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("name", Text, nullable=False),
    Column("first_name", Text),
    Column("npi", Text, nullable=False),
    Column("tax_id", Text),
    Column("taxonomy", Text),
    Column("address", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    _created(),
    PrimaryKeyConstraint("book_id", "id"),
    UniqueConstraint("book_id", "npi"),
    _book(),
)

fee_schedules = Table(
    "fee_schedules",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("name", Text, nullable=False),
    Column("currency", Text, nullable=False),
    _created(),
    PrimaryKeyConstraint("book_id", "id"),
    UniqueConstraint("book_id", "name"),
    _book(),
)

fee_schedule_items = Table(
    "fee_schedule_items",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("fee_schedule_id", Uuid, nullable=False),
    Column("code", Text, nullable=False),
    Column("modifiers", Text, nullable=False),  # colon-joined, '' for none
    Column("amount", Numeric, nullable=False),
    PrimaryKeyConstraint("book_id", "fee_schedule_id", "code", "modifiers"),
    _fk("fee_schedules", "fee_schedule_id"),
    CheckConstraint("amount >= 0", name="amount"),
)

encounters = Table(
    "encounters",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("patient_id", Uuid, nullable=False),
    Column("provider_id", Uuid, nullable=False),  # the billing provider (837P 2010AA)
    Column("fee_schedule_id", Uuid, nullable=False),
    Column("payer_id", Uuid),  # the primary payer at the date of service; null: self-pay
    Column("date_of_service", Date, nullable=False),
    Column("place_of_service", Text, nullable=False),
    Column("diagnoses", JSONB, nullable=False),
    Column("total", Numeric, nullable=False),
    Column("entry_id", Uuid),
    _created(),
    # Who performed the service when not the billing provider (837P loop 2310B).
    Column("rendering_provider_id", Uuid),
    PrimaryKeyConstraint("book_id", "id"),
    _fk("patients", "patient_id"),
    _fk("providers", "provider_id"),
    _fk("providers", "rendering_provider_id"),
    _fk("fee_schedules", "fee_schedule_id"),
    _fk("payers", "payer_id"),
    Index(None, "book_id", "patient_id"),
)

encounter_charges = Table(
    "encounter_charges",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("encounter_id", Uuid, nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("code", Text, nullable=False),
    Column("modifiers", JSONB, nullable=False),
    Column("units", Numeric, nullable=False),
    Column("diagnosis_pointers", JSONB, nullable=False),
    Column("amount", Numeric, nullable=False),
    PrimaryKeyConstraint("book_id", "encounter_id", "line_no"),
    _fk("encounters", "encounter_id"),
    CheckConstraint("units > 0", name="units"),
)

claims = Table(
    "claims",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("control_number", Text, nullable=False),  # CLM01 → CLP01
    Column("encounter_id", Uuid, nullable=False),
    Column("payer_id", Uuid, nullable=False),
    Column("coverage_id", Uuid, nullable=False),
    Column("status", Text, nullable=False, server_default="draft"),
    Column("billed", Numeric, nullable=False),
    Column("currency", Text, nullable=False),
    Column("submitted_at", TIMESTAMPTZ),
    # The payer's last adjudication (from its 835): what a secondary claim's
    # 837 carries in loops 2320/2430. Null until adjudicated, or after a reversal.
    Column("adjudication", JSONB),
    # The interchange the last submission generated (POST /v1/claims/{id}/submit);
    # GET /v1/claims/{id}/837 returns it unchanged.
    Column("interchange", Text),
    Column("interchange_control", BigInteger),
    _created(),
    PrimaryKeyConstraint("book_id", "id"),
    UniqueConstraint("book_id", "control_number"),
    _fk("encounters", "encounter_id"),
    _fk("payers", "payer_id"),
    _fk("coverages", "coverage_id"),
    CheckConstraint(
        "status in ('draft', 'submitted', 'accepted', 'rejected', 'paid', 'partially_paid',"
        " 'denied', 'appealed', 'closed')",
        name="status",
    ),
)

remittances = Table(
    "remittances",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("trace_number", Text, nullable=False),  # TRN02
    Column("originator", Text, nullable=False),  # TRN03
    Column("payer_name", Text, nullable=False),
    Column("payment_total", Numeric, nullable=False),
    Column("method", Text, nullable=False),
    Column("paid_on", Date),
    Column("file_sha256", Text, nullable=False),
    Column("summary", JSONB, nullable=False),
    _created(),
    PrimaryKeyConstraint("book_id", "id"),
    # The same trace from the same payer is the same payment: imported once.
    UniqueConstraint("book_id", "originator", "trace_number"),
    _book(),
)

# 835 files refused whole (not balanced, unreadable, or naming a claim they may not
# move): nothing of them posted, the file kept as received so staff can see why.
# A file with these exact bytes is kept once. The content is PHI (835s name patients).
remittance_quarantine = Table(
    "remittance_quarantine",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("received_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    Column("file_name", Text, nullable=False),
    Column("file_sha256", Text, nullable=False),
    Column("content", LargeBinary, nullable=False),
    Column("code", Text, nullable=False),  # the problem's code: unbalanced_remittance, …
    Column("level", Text),  # line / claim / file for an unbalanced file
    Column("reason", Text, nullable=False),
    Column("details", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    PrimaryKeyConstraint("book_id", "id"),
    UniqueConstraint("book_id", "file_sha256"),
    _book(),
    Index(None, "book_id", "received_at"),
)

patient_payments = Table(
    "patient_payments",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("patient_id", Uuid, nullable=False),
    Column("amount", Numeric, nullable=False),
    Column("currency", Text, nullable=False),
    Column("method", Text, nullable=False),
    Column("received_on", Date, nullable=False),
    Column("entry_id", Uuid, nullable=False),
    Column("plan_id", Uuid),  # the payment plan it was applied to, if any
    _created(),
    PrimaryKeyConstraint("book_id", "id"),
    _fk("patients", "patient_id"),
    _fk("payment_plans", "plan_id"),
    CheckConstraint("amount > 0", name="amount"),
)

# Contracted (allowed) amounts per payer: expected payments, never posted.
fee_schedule_allowed = Table(
    "fee_schedule_allowed",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("fee_schedule_id", Uuid, nullable=False),
    Column("payer_id", Uuid, nullable=False),
    Column("code", Text, nullable=False),
    Column("modifiers", Text, nullable=False),  # colon-joined, '' for none
    Column("amount", Numeric, nullable=False),
    PrimaryKeyConstraint("book_id", "fee_schedule_id", "payer_id", "code", "modifiers"),
    _fk("fee_schedules", "fee_schedule_id"),
    _fk("payers", "payer_id"),
    CheckConstraint("amount >= 0", name="amount"),
)

payment_plans = Table(
    "payment_plans",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("patient_id", Uuid, nullable=False),
    Column("total", Numeric, nullable=False),
    Column("currency", Text, nullable=False),
    Column("installments", Integer, nullable=False),
    Column("start_date", Date, nullable=False),
    Column("interval", Text, nullable=False),
    Column("status", Text, nullable=False, server_default="active"),
    _created(),
    PrimaryKeyConstraint("book_id", "id"),
    _fk("patients", "patient_id"),
    Index(None, "book_id", "patient_id"),
    CheckConstraint("total > 0", name="total"),
    CheckConstraint("installments between 1 and 120", name="installments"),
    CheckConstraint("interval in ('weekly', 'biweekly', 'monthly')", name="interval"),
    CheckConstraint("status in ('active', 'completed', 'cancelled')", name="status"),
)

payment_plan_installments = Table(
    "payment_plan_installments",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("plan_id", Uuid, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("due_on", Date, nullable=False),
    Column("amount", Numeric, nullable=False),
    PrimaryKeyConstraint("book_id", "plan_id", "seq"),
    _fk("payment_plans", "plan_id"),
    CheckConstraint("amount > 0", name="amount"),
)

patient_refunds = Table(
    "patient_refunds",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("patient_id", Uuid, nullable=False),
    Column("amount", Numeric, nullable=False),
    Column("currency", Text, nullable=False),
    Column("method", Text, nullable=False),
    Column("paid_on", Date, nullable=False),
    Column("entry_id", Uuid, nullable=False),
    _created(),
    PrimaryKeyConstraint("book_id", "id"),
    _fk("patients", "patient_id"),
    CheckConstraint("amount > 0", name="amount"),
)

# One small-balance write-off run per (as_of, threshold): a repeat posts nothing.
small_balance_write_offs = Table(
    "small_balance_write_offs",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("as_of", Date, nullable=False),
    Column("max_amount", Numeric, nullable=False),
    Column("currency", Text, nullable=False),
    Column("summary", JSONB, nullable=False),
    _created(),
    PrimaryKeyConstraint("book_id", "id"),
    UniqueConstraint("book_id", "as_of", "max_amount", "currency"),
    _book(),
    CheckConstraint("max_amount > 0", name="max_amount"),
)

# Per-book X12 interchange control numbers (ISA13/GS06): handed out under a row
# lock, never reused, also when the claim's export is repeated.
x12_control_numbers = Table(
    "x12_control_numbers",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("last_number", BigInteger, nullable=False),
    PrimaryKeyConstraint("book_id"),
    _book(),
    CheckConstraint("last_number between 0 and 999999999", name="range"),
)

# Who saw or changed which patient's PHI, through which endpoint. Append-only:
# the application may insert and read, never update or delete (grants).
phi_access_log = Table(
    "phi_access_log",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", BigInteger, Identity(always=True), nullable=False),
    Column("at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    Column("key_id", Uuid),
    Column("actor", Text, nullable=False),
    Column("patient_id", Uuid, nullable=False),
    Column("action", Text, nullable=False),
    Column("endpoint", Text, nullable=False),
    PrimaryKeyConstraint("book_id", "id"),
    _book(),
    Index(None, "book_id", "patient_id"),
    CheckConstraint("action in ('read', 'write')", name="action"),
)
