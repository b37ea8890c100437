"""All tables of the service on one metadata: what Alembic compares against."""

from __future__ import annotations

import adapters.collections.tables

# Imported for their side effect: each module adds its tables to `metadata`.
import adapters.crm.tables
import adapters.db_tables
import adapters.exports.tables
import adapters.gateways.tables
import adapters.reconciliation.tables  # noqa: F401
import billing.postgres.dunning_tables
import billing.postgres.event_tables
import billing.postgres.healthcare_tables
import billing.postgres.msp_tables
import billing.postgres.tables
import billing.postgres.telecom_tables
import billing.postgres.usage_billing_tables
import billing.postgres.usage_tables  # noqa: F401
from ledger.postgres.tables import metadata

__all__ = ["metadata"]
