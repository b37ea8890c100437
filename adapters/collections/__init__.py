"""Collection files: SEPA Direct Debit (pain.008 out; pain.002 and camt.054 back) and
NACHA ACH (PPD/CCD out; returns back), as pure functions over plain dataclasses."""
