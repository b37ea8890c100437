"""All tables of the service on one metadata: what Alembic compares against."""

from __future__ import annotations

# Imported for their side effect: each module adds its tables to `metadata`.
import adapters.db_tables
import adapters.exports.tables
import adapters.reconciliation.tables  # noqa: F401
import billing.postgres.tables  # noqa: F401
from ledger.postgres.tables import metadata

__all__ = ["metadata"]
