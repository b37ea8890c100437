"""All tables of the service on one metadata: what Alembic compares against."""

from __future__ import annotations

import adapters.db_tables  # noqa: F401  (registers the edge's tables)
import billing.postgres.tables  # noqa: F401  (registers the billing tables)
from ledger.postgres.tables import metadata

__all__ = ["metadata"]
