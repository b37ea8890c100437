"""Turning the database's refusals into the ledger's errors.

The triggers raise SQLSTATE 23514 with a named constraint; this module is the
one place that knows those names.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import errors as pg

from ledger import errors

_BY_CONSTRAINT: dict[str, type[errors.LedgerError]] = {
    "journal_entries_balanced": errors.UnbalancedEntry,
    "journal_entries_open_period": errors.PeriodClosed,
    "journal_entries_accepted_dates": errors.DateNotAccepted,
    "postings_open_account": errors.AccountClosed,
    "postings_account_currency": errors.CurrencyNotAllowed,
    "postings_minor_unit": errors.TooPrecise,
    "postings_min_balance": errors.BalanceLimitExceeded,
    "postings_open_entry": errors.InvalidEntry,
    "postings_entry_date": errors.InvalidEntry,
    "postings_billing_document": errors.InvalidEntry,
    "journal_entries_txid": errors.InvalidEntry,
    "journal_entries_isolation": errors.InvalidEntry,
    "accounts_immutable": errors.Conflict,
    "uq_accounts_name_book_id": errors.Conflict,
    # an account's id follows from its name (books.account_id): the same name again
    # may hit the primary key first
    "pk_accounts": errors.Conflict,
    "uq_accounts_book_id_code": errors.Conflict,
    "uq_journal_entries_book_id_reverses_entry_id": errors.AlreadyReversed,
    "fk_postings_currency_currencies": errors.UnknownCurrency,
    "fk_postings_book_id_account_id_accounts": errors.NotFound,
    "fk_postings_book_id_entry_id_journal_entries": errors.NotFound,
    "fk_journal_entries_book_id_books": errors.NotFound,
    "fk_books_base_currency_currencies": errors.UnknownCurrency,
}

_MESSAGES: dict[str, str] = {
    "uq_accounts_name_book_id": "an account with that name already exists in this book",
    "pk_accounts": "an account with that name already exists in this book",
    "uq_accounts_book_id_code": "an account with that code already exists in this book",
    "uq_journal_entries_book_id_reverses_entry_id": "that entry has already been reversed",
    "fk_postings_currency_currencies": "unknown currency",
    "fk_books_base_currency_currencies": "unknown currency",
}

# The request field a constraint is about, where one field alone decides it.
_FIELDS: dict[str, str] = {"journal_entries_accepted_dates": "effective_date"}


@contextmanager
def translated() -> Iterator[None]:
    """Re-raise integrity errors from the database as LedgerErrors."""
    try:
        yield
    except (pg.CheckViolation, pg.UniqueViolation, pg.ForeignKeyViolation) as exc:
        name = exc.diag.constraint_name or ""
        kind = _BY_CONSTRAINT.get(name)
        if kind is None:
            raise
        message = _MESSAGES.get(name) or exc.diag.message_primary or str(exc)
        fields = {"field": _FIELDS[name]} if name in _FIELDS else {}
        raise kind(message, constraint=name, **fields) from exc


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, pg.SerializationFailure | pg.DeadlockDetected)


__all__ = ["is_retryable", "psycopg", "translated"]
