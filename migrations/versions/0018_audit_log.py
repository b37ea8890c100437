"""The audit log: every mutation the API answered, append-only.

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-30 16:50:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        create table audit_log (
          book_id uuid not null,
          id bigint generated always as identity not null,
          at timestamptz not null,
          key_id uuid not null,
          role text not null,
          method text not null,
          path text not null,
          status integer not null,
          idempotency_key text,
          request_id text not null,
          created text[] not null default '{}',
          constraint pk_audit_log primary key (book_id, id),
          constraint fk_audit_log_book_id_books foreign key (book_id) references books (id)
        );
        create index ix_audit_log_book_id_at on audit_log (book_id, at);
        create trigger audit_log_append_only before update or delete on audit_log
          for each row execute function ab_forbid_change();
        create trigger audit_log_no_truncate before truncate on audit_log
          for each statement execute function ab_forbid_change();
        grant select, insert on audit_log to activebilling_app;
        """
    )


def downgrade() -> None:
    op.execute("drop table audit_log")
