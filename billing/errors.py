"""Billing errors: the ledger's error tree, plus the states of documents.

LedgerError (ledger/errors.py)
├── InvalidBillingRequest   a request that cannot describe a billing fact (422)
├── DocumentState           the document is not in a state that allows this (409)
├── ExceedsAvailable        more than is paid, due or left to credit or refund (422)
├── UnknownReference        a posting names a customer or document this book does not have (422)
├── BillingDocumentPosting  a manual entry names a billing document, which only billing posts (422)
└── InsufficientFunds       a wallet's available balance is short (402)
"""

from __future__ import annotations

from ledger.errors import LedgerError


class InvalidBillingRequest(LedgerError):
    code = "invalid_request"
    status = 422


class DocumentState(LedgerError):
    code = "invalid_state"
    status = 409


class ExceedsAvailable(LedgerError):
    code = "exceeds_available"
    status = 422


class UnknownReference(LedgerError):
    code = "unknown_reference"
    status = 422


class BillingDocumentPosting(LedgerError):
    code = "billing_document"
    status = 422


class InsufficientFunds(LedgerError):
    """A prepaid wallet's available balance is short of what was asked (402)."""

    code = "insufficient_funds"
    status = 402
