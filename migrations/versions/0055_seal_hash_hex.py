"""A seal's hash is 64 lowercase hex digits, as the sealer writes it (a sha256 hexdigest).

The journal feed writes each entry's `seal_hash` into its JSON Lines page. Quoted as it
is, a hash with a quote, a backslash or a control character in it would break the line
(and could forge the rest of it), so the feed ran every hash through to_json: a per-entry
function call for text that, from the sealer (ledger.sealing.link_hash, formats 1 and 2),
is only ever hex. With this check the database guarantees it, and the feed quotes the
hash by hand (adapters/exports/feed_sql.py).

The constraint is added NOT VALID and validated apart: the validation scans `seals` under
a SHARE UPDATE EXCLUSIVE lock, which lets the sealer go on inserting meanwhile.

Revision ID: 0055
Revises: 0054
Create Date: 2026-12-01 16:10:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0055"
down_revision: str | None = "0054"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "alter table seals add constraint ck_seals_hash_hex"
        " check (hash ~ '^[0-9a-f]{64}$') not valid"
    )
    op.execute("alter table seals validate constraint ck_seals_hash_hex")


def downgrade() -> None:
    op.execute("alter table seals drop constraint ck_seals_hash_hex")
