"""A hold or a capture as one autocommitted statement: refuse a low-balance crossing.

On an autocommit connection `ab_wallet_hold` / `ab_wallet_capture` are the whole
unit of work (they post all and update all, or raise), so the round trips of
BEGIN and COMMIT go. The one thing Python adds in the transaction is the outbox
event of a low-balance crossing (it carries the wallet's JSON); so the statement
ends with `ab_wallet_alone(fell_low)`, which raises SQLSTATE ABW01 on a crossing:
everything rolls back and the caller runs it again in a transaction (once per
crossing, rare).

Revision ID: 0049
Revises: 0048
Create Date: 2026-12-01 07:50:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0049"
down_revision: str | None = "0048"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
create function ab_wallet_alone(p_fell_low boolean) returns boolean
language plpgsql as $$
begin
  if p_fell_low then
    raise exception 'a low-balance crossing commits with its outbox event: run it in a transaction'
      using errcode = 'ABW01';
  end if;
  return true;
end $$;
"""
    )


def downgrade() -> None:
    op.execute("drop function ab_wallet_alone")
