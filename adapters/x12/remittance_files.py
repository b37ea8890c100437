"""An 835 file refused whole is kept in quarantine (the HTTP route and the CLI share it).

The refusal (UnbalancedRemittance, InvalidRemittance) rolls back the import's
transaction, so nothing of the file is posted; on its way out, the file is
kept in a transaction of its own and the refusal goes on to the caller.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import psycopg

from billing.healthcare.remittance import InvalidRemittance, UnbalancedRemittance
from billing.postgres.healthcare_quarantine import quarantine_remittance
from ledger.postgres.unit_of_work import unit_of_work

REFUSALS = (UnbalancedRemittance, InvalidRemittance)


@contextmanager
def quarantine_on_refusal(
    connection: Callable[[], AbstractContextManager[psycopg.Connection]],
    book_id: uuid.UUID,
    file_name: str,
    content: bytes,
    file_sha256: str,
) -> Iterator[None]:
    try:
        yield
    except REFUSALS as refused:
        with unit_of_work(connection) as uow:
            row = quarantine_remittance(
                uow.conn,
                book_id,
                file_name,
                content,
                file_sha256,
                refused.code,
                refused.message,
                refused.fields,
            )
            uow.commit()
        refused.fields["quarantine"] = str(row["id"])
        raise


def quarantine_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "object": "quarantined_remittance",
        "received_at": row["received_at"].isoformat(),
        "file_name": row["file_name"],
        "file_sha256": row["file_sha256"],
        "size": row["size"],
        "code": row["code"],
        "level": row["level"],
        "reason": row["reason"],
        "details": row["details"],
    }
