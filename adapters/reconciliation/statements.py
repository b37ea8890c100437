"""Importing bank statements into a book: parse, check, de-duplicate, store.

A file is parsed and checked in full before anything is written; the
statement rows and their lines are then inserted in the caller's transaction,
so a bad file leaves nothing behind. Lines are de-duplicated per book and
ledger account by the bank's own reference (AcctSvcrRef, FITID, a CSV
reference column, or the parser's deterministic content hash), and a
statement uploaded again is recognized by its content fingerprint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import msgspec
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from adapters.bank_statements import CsvMapping, Statement, StatementError, parse_statement
from ledger.accounts import AccountType
from ledger.errors import LedgerError, NotFound
from ledger.postgres.books import Account, get_account

# Files that cannot be read at all are a bad request; readable files whose
# content is wrong (or does not add up) are unprocessable.
_UNREADABLE = frozenset(
    {"malformed_xml", "unsafe_xml", "malformed_ofx", "malformed_csv", "truncated_file",
     "unknown_format"}
)  # fmt: skip


class ReconciliationError(LedgerError):
    """An error with its own status and stable code (problem type)."""

    def __init__(self, status: int, code: str, message: str, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.status = status
        self.code = code


def statement_problem(exc: StatementError) -> ReconciliationError:
    status = 400 if exc.code in _UNREADABLE else 422
    return ReconciliationError(status, exc.code, exc.message)


def bank_account_of(account: Account) -> None:
    if account.type is not AccountType.ASSET:
        raise ReconciliationError(
            422,
            "not_a_bank_account",
            f"{account.name} is an {account.type.value} account; statements belong to an "
            "asset account such as Assets:Bank:Operating or a clearing account.",
            account=account.name,
        )


# --- CSV mappings ---------------------------------------------------------------------

_MAPPING_FIELDS = {f.name for f in dataclasses.fields(CsvMapping)}


def csv_mapping_from_json(raw: Any) -> CsvMapping:
    if not isinstance(raw, dict):
        raise ReconciliationError(
            422, "bad_mapping", "csv_mapping must be a JSON object or a saved mapping id."
        )
    unknown = sorted(set(raw) - _MAPPING_FIELDS)
    if unknown:
        raise ReconciliationError(
            422,
            "bad_mapping",
            f"unknown CSV mapping field(s) {', '.join(unknown)}; known fields: "
            f"{', '.join(sorted(_MAPPING_FIELDS))}.",
        )
    try:
        return msgspec.convert(raw, CsvMapping)
    except StatementError as exc:
        raise statement_problem(exc) from exc
    except msgspec.ValidationError as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, StatementError):
            raise statement_problem(cause) from exc
        raise ReconciliationError(422, "bad_mapping", f"CSV mapping: {exc}") from exc


def csv_mapping_json(mapping: CsvMapping) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(mapping).items() if v is not None}


def save_csv_mapping(
    conn: psycopg.Connection, book_id: uuid.UUID, name: str, mapping: CsvMapping
) -> dict[str, Any]:
    if not name.strip():
        raise ReconciliationError(422, "invalid_name", "a saved CSV mapping needs a name")
    mapping_id = uuid.uuid4()
    row = conn.execute(
        "insert into csv_mappings (book_id, id, name, mapping) values (%s, %s, %s, %s)"
        " on conflict (book_id, name) do nothing returning created_at",
        (book_id, mapping_id, name, Jsonb(csv_mapping_json(mapping))),
    ).fetchone()
    if row is None:
        raise ReconciliationError(
            409, "mapping_exists", f"a CSV mapping named {name!r} already exists in this book"
        )
    return {"id": str(mapping_id), "name": name, "mapping": csv_mapping_json(mapping),
            "created_at": row[0].isoformat()}  # fmt: skip


def list_csv_mappings(conn: psycopg.Connection, book_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = conn.execute(
        "select id, name, mapping, created_at from csv_mappings where book_id = %s order by name",
        (book_id,),
    ).fetchall()
    return [
        {"id": str(r[0]), "name": r[1], "mapping": r[2], "created_at": r[3].isoformat()}
        for r in rows
    ]


def load_csv_mapping(conn: psycopg.Connection, book_id: uuid.UUID, ref: str) -> CsvMapping:
    try:
        mapping_id = uuid.UUID(ref)
        row = conn.execute(
            "select mapping from csv_mappings where book_id = %s and id = %s", (book_id, mapping_id)
        ).fetchone()
    except ValueError:
        row = conn.execute(
            "select mapping from csv_mappings where book_id = %s and name = %s", (book_id, ref)
        ).fetchone()
    if row is None:
        raise NotFound(f"CSV mapping {ref!r} does not exist in this book")
    return csv_mapping_from_json(row[0])


# --- import ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImportedStatement:
    id: uuid.UUID
    created: bool
    new_lines: int
    duplicate_lines: int


def _compact(text: str | None) -> str | None:
    return "".join(text.split()).upper() if text else None


def fingerprint(statement: Statement) -> str:
    def amount(value: Decimal | None) -> str | None:
        return None if value is None else format(value.normalize(), "f")

    document = [
        statement.format,
        statement.statement_id,
        statement.account,
        statement.currency,
        amount(statement.opening_balance),
        amount(statement.closing_balance),
        str(statement.opening_date),
        str(statement.closing_date),
        [[x.bank_reference, amount(x.amount), str(x.booking_date)] for x in statement.lines],
    ]
    raw = json.dumps(document, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()


def import_statement(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    *,
    account_ref: str,
    data: bytes,
    format: str | None = None,
    csv_mapping: CsvMapping | None = None,
    bank_account: str | None = None,
    filename: str | None = None,
) -> list[ImportedStatement]:
    """Store the file's statements (those of `bank_account` when it names one)."""
    account = get_account(conn, book_id, account_ref)
    bank_account_of(account)
    if account.closed_at is not None:
        raise ReconciliationError(422, "account_closed", f"{account.name} is closed")
    if not data.strip():
        raise ReconciliationError(400, "empty_file", "the uploaded file is empty")
    try:
        statements = parse_statement(data, format, csv_mapping)
    except StatementError as exc:
        raise statement_problem(exc) from exc
    statements = _select_bank_account(statements, bank_account)
    for statement in statements:
        if account.currencies and statement.currency not in account.currencies:
            raise ReconciliationError(
                422,
                "currency_not_allowed",
                f"the statement is in {statement.currency} but {account.name} holds only "
                f"{', '.join(account.currencies)}; upload it to the account of that currency.",
            )
    # One importer per account at a time: de-duplication reads, then writes.
    conn.execute(
        "select pg_advisory_xact_lock(hashtextextended('ab_statements:' || %s::text, 0))",
        (f"{book_id}:{account.id}",),
    )
    file_hash = hashlib.sha256(data).hexdigest()
    return [
        _store(conn, book_id, account.id, statement, file_hash, filename)
        for statement in statements
    ]


def _select_bank_account(statements: list[Statement], wanted: str | None) -> list[Statement]:
    if wanted:
        chosen = [s for s in statements if _compact(s.account) == _compact(wanted)]
        if not chosen:
            found = sorted({s.account or "(none)" for s in statements})
            raise ReconciliationError(
                422,
                "bank_account_not_in_file",
                f"the file holds no statement for bank account {wanted!r} "
                f"(it has: {', '.join(found)}).",
            )
        return chosen
    accounts = {_compact(s.account) for s in statements}
    if len(accounts) > 1:
        found = sorted(s.account or "(none)" for s in statements)
        raise ReconciliationError(
            422,
            "several_bank_accounts",
            f"the file holds statements of several bank accounts ({', '.join(found)}); "
            "name the one for this ledger account in `bank_account`.",
        )
    return statements


def _store(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    account_id: uuid.UUID,
    statement: Statement,
    file_hash: str,
    filename: str | None,
) -> ImportedStatement:
    print_ = fingerprint(statement)
    existing = conn.execute(
        "select id from bank_statements where book_id = %s and account_id = %s"
        " and fingerprint = %s",
        (book_id, account_id, print_),
    ).fetchone()
    if existing is not None:
        return ImportedStatement(existing[0], False, 0, len(statement.lines))
    references = [x.bank_reference for x in statement.lines]
    known = {
        r[0]
        for r in conn.execute(
            "select bank_reference from bank_statement_lines where book_id = %s"
            " and account_id = %s and bank_reference = any(%s)",
            (book_id, account_id, references),
        ).fetchall()
    }
    fresh: list[tuple[int, Any]] = []
    for number, line in enumerate(statement.lines, start=1):
        if line.bank_reference not in known:
            known.add(line.bank_reference)
            fresh.append((number, line))
    statement_id = uuid.uuid4()
    conn.execute(
        "insert into bank_statements (book_id, id, account_id, format, bank_statement_id,"
        " bank_account, currency, opening_balance, closing_balance, opening_date, closing_date,"
        " line_count, new_line_count, fingerprint, file_sha256, filename)"
        " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (book_id, statement_id, account_id, statement.format, statement.statement_id,
         statement.account, statement.currency, statement.opening_balance,
         statement.closing_balance, statement.opening_date, statement.closing_date,
         len(statement.lines), len(fresh), print_, file_hash, filename),
    )  # fmt: skip
    if fresh:
        columns = list(zip(*[
            (uuid.uuid4(), number, x.bank_reference, x.booking_date, x.value_date, x.amount,
             x.currency, x.end_to_end_id, x.counterparty_name, x.counterparty_account,
             x.remittance_info, x.bank_transaction_code)
            for number, x in fresh
        ], strict=True))  # fmt: skip
        conn.execute(
            "insert into bank_statement_lines (book_id, statement_id, account_id, id, line_no,"
            " bank_reference, booking_date, value_date, amount, currency, end_to_end_id,"
            " counterparty_name, counterparty_account, remittance_info, bank_transaction_code)"
            " select %s, %s, %s, t.* from unnest(%s::uuid[], %s::int[], %s::text[], %s::date[],"
            " %s::date[], %s::numeric[], %s::text[], %s::text[], %s::text[], %s::text[],"
            " %s::text[], %s::text[]) t",
            (book_id, statement_id, account_id, *map(list, columns)),
        )
    return ImportedStatement(statement_id, True, len(fresh), len(statement.lines) - len(fresh))


# --- reading --------------------------------------------------------------------------

_STATEMENT_COLUMNS = (
    "s.id, s.account_id, a.name as account, s.format, s.bank_statement_id, s.bank_account,"
    " s.currency, s.opening_balance, s.closing_balance, s.opening_date, s.closing_date,"
    " s.line_count, s.new_line_count, s.filename, s.created_at"
)


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value is not None else None


def _money(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def statement_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "account": row["account"],
        "account_id": str(row["account_id"]),
        "format": row["format"],
        "bank_statement_id": row["bank_statement_id"],
        "bank_account": row["bank_account"],
        "currency": row["currency"],
        "opening_balance": _money(row["opening_balance"]),
        "closing_balance": _money(row["closing_balance"]),
        "opening_date": _iso(row["opening_date"]),
        "closing_date": _iso(row["closing_date"]),
        "line_count": row["line_count"],
        "new_lines": row["new_line_count"],
        "duplicate_lines": row["line_count"] - row["new_line_count"],
        "filename": row["filename"],
        "created_at": row["created_at"].isoformat(),
    }


def line_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "statement_id": str(row["statement_id"]),
        "line_no": row["line_no"],
        "bank_reference": row["bank_reference"],
        "booking_date": row["booking_date"].isoformat(),
        "value_date": _iso(row["value_date"]),
        "amount": str(row["amount"]),
        "currency": row["currency"],
        "end_to_end_id": row["end_to_end_id"],
        "counterparty_name": row["counterparty_name"],
        "counterparty_account": row["counterparty_account"],
        "remittance_info": row["remittance_info"],
        "bank_transaction_code": row["bank_transaction_code"],
        "match_id": str(row["match_id"]) if row["match_id"] else None,
        "status": "matched" if row["match_id"] else "unmatched",
    }


LINE_SELECT = """
select l.*, x.match_id
  from bank_statement_lines l
  left join statement_match_lines x
    on x.book_id = l.book_id and x.line_id = l.id and x.released_at is null
 where l.book_id = %s
"""


def statement_lines(
    conn: psycopg.Connection, book_id: uuid.UUID, statement_id: uuid.UUID
) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            LINE_SELECT + " and l.statement_id = %s order by l.line_no", (book_id, statement_id)
        ).fetchall()
    return [line_json(r) for r in rows]


def parse_id(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"{what} {value!r} does not exist") from None


def get_statement(
    conn: psycopg.Connection, book_id: uuid.UUID, statement_id: str, *, with_lines: bool = True
) -> dict[str, Any]:
    parsed = parse_id(statement_id, "bank statement")
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"select {_STATEMENT_COLUMNS} from bank_statements s join accounts a"
            " on a.book_id = s.book_id and a.id = s.account_id"
            " where s.book_id = %s and s.id = %s",
            (book_id, parsed),
        ).fetchone()
    if row is None:
        raise NotFound(f"bank statement {statement_id} does not exist in this book")
    document = statement_json(row)
    if with_lines:
        document["lines"] = statement_lines(conn, book_id, parsed)
        document["matched_lines"] = sum(1 for x in document["lines"] if x["match_id"])
    return document


def list_statements(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    *,
    account_id: uuid.UUID | None = None,
    after: tuple[Any, uuid.UUID] | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    clauses = ["s.book_id = %(book)s"]
    params: dict[str, Any] = {"book": book_id, "limit": limit}
    if account_id is not None:
        clauses.append("s.account_id = %(account)s")
        params["account"] = account_id
    if after is not None:
        clauses.append("(s.created_at, s.id) > (%(at)s, %(id)s)")
        params["at"], params["id"] = after
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"select {_STATEMENT_COLUMNS} from bank_statements s join accounts a"
            " on a.book_id = s.book_id and a.id = s.account_id"
            f" where {' and '.join(clauses)} order by s.created_at, s.id limit %(limit)s",
            params,
        ).fetchall()
    return [statement_json(r) for r in rows]
