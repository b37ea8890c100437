"""PostgreSQL persistence of the billing domain."""
