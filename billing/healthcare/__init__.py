"""Healthcare revenue cycle (US): the pure rules.

Codes and their forms (`codes`), what charges, remittances and patient payments
post (`entries`), and the 835's balancing and adjustment rules (`remittance`).
Persistence is in billing/postgres/healthcare*.py; X12 in adapters/x12.
"""
