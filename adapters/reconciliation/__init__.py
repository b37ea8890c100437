"""Bank statements in the ledger: import, matching, reconciliation reports."""
