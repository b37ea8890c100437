"""X12 health-care transactions: 837P claims written, 835 remittances read."""
