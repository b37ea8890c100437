"""Billing errors: the ledger's error tree, plus the states of documents.

LedgerError (ledger/errors.py)
├── InvalidBillingRequest   a request that cannot describe a billing fact (422)
├── DocumentState           the document is not in a state that allows this (409)
└── ExceedsAvailable        more than is paid, due or left to credit or refund (422)
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
