"""CDR ratings in a table of their own, written once: rating inserts, never updates.

A rating run used to write each CDR's rating into its `cdrs` row: one UPDATE per
CDR, a new row version and new index entries each, growing with the table (141 s
of 192 s for a million CDRs). Ratings now go to `cdr_ratings` (one row per rated
CDR, keyed by the CDR's id) by COPY; a CDR is unrated while it has no rating row.
The existing ratings move over; `cdrs` keeps what was imported, the invoice that
billed it and the last rating error of an unrateable one.

Revision ID: 0037
Revises: 0036
Create Date: 2026-11-30 23:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0037"
down_revision: str | None = "0036"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RATING = (
    "rate_plan",
    "plan_version",
    "zone",
    "band",
    "billed_quantity",
    "included",
    "amount",
    "currency",
)


def upgrade() -> None:
    op.create_table(
        "cdr_ratings",
        sa.Column("book_id", sa.Uuid(), nullable=False),
        sa.Column("cdr_id", sa.Text(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("rate_plan", sa.Text(), nullable=False),
        sa.Column("plan_version", sa.Date(), nullable=False),
        sa.Column("zone", sa.Text(), nullable=True),
        sa.Column("band", sa.Text(), nullable=True),
        sa.Column("billed_quantity", sa.Numeric(), nullable=False),
        sa.Column("included", sa.Numeric(), nullable=False),
        sa.Column("amount", sa.Numeric(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("book_id", "cdr_id", name=op.f("pk_cdr_ratings")),
    )
    op.create_index(
        "ix_cdr_ratings_included",
        "cdr_ratings",
        ["book_id"],
        unique=False,
        postgresql_where=sa.text("included > 0"),
    )
    columns = ", ".join(_RATING)
    op.execute(
        f"insert into cdr_ratings (book_id, cdr_id, run_id, {columns})"
        f" select book_id, id, rating_run_id, {columns} from cdrs"
        " where rating_run_id is not null"
    )
    op.execute("drop index ix_cdrs_unrated")
    op.execute(
        "alter table cdrs drop constraint ck_cdrs_rated, "
        + ", ".join(f"drop column {c}" for c in ("rating_run_id", *_RATING))
    )
    # Insert-only for the application: a rating is corrected by nothing but a new CDR.
    op.execute("grant select, insert on cdr_ratings to activebilling_app")


def downgrade() -> None:
    op.execute(
        "alter table cdrs add column rating_run_id uuid, add column rate_plan text,"
        " add column plan_version date, add column zone text, add column band text,"
        " add column billed_quantity numeric, add column included numeric,"
        " add column amount numeric, add column currency text"
    )
    op.execute(
        "update cdrs c set rating_run_id = r.run_id, rate_plan = r.rate_plan,"
        " plan_version = r.plan_version, zone = r.zone, band = r.band,"
        " billed_quantity = r.billed_quantity, included = r.included, amount = r.amount,"
        " currency = r.currency, rating_error = null"
        " from cdr_ratings r where r.book_id = c.book_id and r.cdr_id = c.id"
    )
    op.execute(
        "alter table cdrs add constraint ck_cdrs_rated check ((rating_run_id is null) = (amount is null))"
    )
    op.create_index(
        "ix_cdrs_unrated",
        "cdrs",
        ["book_id", "start"],
        unique=False,
        postgresql_where=sa.text("rating_run_id is null"),
    )
    op.drop_index("ix_cdr_ratings_included", table_name="cdr_ratings")
    op.drop_table("cdr_ratings")
