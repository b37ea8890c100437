"""PostgreSQL persistence of the ledger: tables, the posting store, the sealer."""
