"""Projections of the ledger for auditors, ERPs and accountants: the Beancount
export, the ERP journal feed and the financial statements."""
