"""Importing bank statements into a book: parse, check, de-duplicate, store.

A file (or every file of a ZIP) is parsed and checked in full before a
database connection is taken; the statement rows and their lines are then
inserted in the caller's transaction, so a bad file leaves nothing behind.
Lines are de-duplicated per book, ledger account and bank account by the
bank's own reference (AcctSvcrRef, FITID, MT940 //reference, a CSV reference
column, or the parser's deterministic content hash); no two lines of one
statement share a reference, so de-duplication never drops a line of the
file itself. Each statement lists its stored lines (`line_ids`, shared ones
included) and PostgreSQL checks at commit that they lead from its opening to
its closing balance. A statement uploaded again is recognized by its content
fingerprint.

Rules the import states:
- a statement is in a currency its ledger account holds; an account without
  a currency list holds the book's currency only;
- a statement with no entries is accepted when its balances agree;
- date-times with an offset are booked on their day in the bank account's time
  zone: the upload's `time_zone`, else the account's metadata `time_zone`,
  else UTC;
- a ZIP is imported all or nothing (at most 100 files, 64 MiB unpacked).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, date, tzinfo
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from adapters.bank_statements import (
    CsvMapping,
    Statement,
    StatementError,
    StatementLine,
    parse_statement,
)
from adapters.bank_statements.archive import is_zip, unpack
from billing.postgres.events import record_events
from ledger.accounts import AccountType
from ledger.errors import LedgerError, NotFound
from ledger.postgres.books import Account, get_account, get_book

# Files that cannot be read at all are a bad request; readable files whose
# content is wrong (or does not add up) are unprocessable.
_UNREADABLE = frozenset(
    {"malformed_xml", "unsafe_xml", "malformed_ofx", "malformed_csv", "malformed_mt940",
     "truncated_file", "unknown_format", "too_deeply_nested", "bad_archive"}
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
    # A card or a credit line is a liability; its statement's signs are ours
    # too (a purchase is money out, negative, and raises what is owed).
    if account.type not in (AccountType.ASSET, AccountType.LIABILITY):
        raise ReconciliationError(
            422,
            "not_a_bank_account",
            f"{account.name} is an {account.type.value} account; statements belong to an "
            "asset account such as Assets:Bank:Operating or a clearing account, or to a "
            "liability such as Liabilities:CreditCard.",
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


@dataclass(frozen=True, slots=True)
class ParsedStatement:
    """A statement read from an upload, before any database work."""

    statement: Statement
    filename: str | None
    file_sha256: str


def account_time_zone(account: Account, given: str | None = None) -> tzinfo:
    """The bank account's time zone: the upload's, else the account's, else UTC.

    A ledger account keeps it in its metadata (`{"time_zone": "Europe/Zurich"}`,
    an IANA name), set when the account is created; statement date-times with
    an offset are booked on their calendar day in that zone.
    """
    name = given or account.metadata.get("time_zone") or "UTC"
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        raise ReconciliationError(
            422,
            "invalid_time_zone",
            f"{name!r} is not an IANA time zone such as Europe/Zurich or America/New_York",
        ) from None


def upload_account(conn: psycopg.Connection, book_id: uuid.UUID, account_ref: str) -> Account:
    """The ledger account a statement is uploaded to, if it can take one."""
    account = get_account(conn, book_id, account_ref)
    bank_account_of(account)
    if account.closed_at is not None:
        raise ReconciliationError(422, "account_closed", f"{account.name} is closed")
    return account


def parse_upload(
    data: bytes,
    *,
    format: str | None = None,
    csv_mapping: CsvMapping | None = None,
    time_zone: tzinfo = UTC,
    filename: str | None = None,
) -> list[ParsedStatement]:
    """Every statement of an uploaded file, or of each file in an uploaded ZIP.

    Pure and bounded (no database): callers parse before taking a connection.
    A ZIP is all or nothing: the first member that cannot be imported refuses
    the whole upload, naming the member.
    """
    if not data.strip():
        raise ReconciliationError(400, "empty_file", "the uploaded file is empty")
    try:
        if not is_zip(data):
            digest = hashlib.sha256(data).hexdigest()
            statements = parse_statement(data, format, csv_mapping, time_zone)
            return [ParsedStatement(s, filename, digest) for s in statements]
        parsed: list[ParsedStatement] = []
        for name, content in unpack(data):
            try:
                statements = parse_statement(content, format, csv_mapping, time_zone)
            except StatementError as exc:
                raise StatementError(exc.code, f"{name} (in the ZIP): {exc.message}") from exc
            digest = hashlib.sha256(content).hexdigest()
            member = f"{filename}:{name}" if filename else name
            parsed += [ParsedStatement(s, member, digest) for s in statements]
        return parsed
    except StatementError as exc:
        raise statement_problem(exc) from exc


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
    time_zone: str | None = None,
) -> list[ImportedStatement]:
    """Parse and store in one call (the HTTP API and CLI parse first, then store)."""
    account = upload_account(conn, book_id, account_ref)
    parsed = parse_upload(
        data,
        format=format,
        csv_mapping=csv_mapping,
        time_zone=account_time_zone(account, time_zone),
        filename=filename,
    )
    return store_statements(
        conn, book_id, account_ref=account_ref, parsed=parsed, bank_account=bank_account
    )


def store_statements(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    *,
    account_ref: str,
    parsed: list[ParsedStatement],
    bank_account: str | None = None,
) -> list[ImportedStatement]:
    """Store parsed statements (those of `bank_account` when it names one)."""
    account = upload_account(conn, book_id, account_ref)
    parsed = _select_bank_account(parsed, bank_account)
    currencies = {p.statement.currency for p in parsed}
    known = {
        r[0]
        for r in conn.execute(
            "select code from currencies where code = any(%s)", (sorted(currencies),)
        ).fetchall()
    }
    # One rule for every format: a statement is in a currency its ledger
    # account holds. A bank account holds one currency, so an account without
    # a currency list takes statements in the book's currency only; a foreign
    # currency account names its currency when it is created.
    allowed = account.currencies or (get_book(conn, book_id).base_currency,)
    for currency in sorted(currencies):
        if currency not in known:
            raise ReconciliationError(
                422,
                "unknown_currency",
                f"the statement is in {currency}, which is not an ISO 4217 currency this "
                "service knows (a withdrawn one such as DEM?); it cannot be imported.",
            )
        if currency not in allowed:
            raise ReconciliationError(
                422,
                "currency_not_allowed",
                f"the statement is in {currency} but {account.name} holds only "
                f"{', '.join(allowed)}; upload it to the account of that currency (an "
                "account without a currency list holds the book's currency).",
            )
    # One importer per account at a time: de-duplication reads, then writes.
    conn.execute(
        "select pg_advisory_xact_lock(hashtextextended('ab_statements:' || %s::text, 0))",
        (f"{book_id}:{account.id}",),
    )
    stored = [_store(conn, book_id, account.id, item) for item in parsed]
    new = [{"object": "statement", "account": account.name, **asdict(s)} for s in stored]
    record_events(conn, book_id, "statement.imported", [s for s in new if s["created"]])
    return stored


def _select_bank_account(
    parsed: list[ParsedStatement], wanted: str | None
) -> list[ParsedStatement]:
    if wanted:
        chosen = [p for p in parsed if _compact(p.statement.account) == _compact(wanted)]
        if not chosen:
            found = sorted({p.statement.account or "(none)" for p in parsed})
            raise ReconciliationError(
                422,
                "bank_account_not_in_file",
                f"the file holds no statement for bank account {wanted!r} "
                f"(it has: {', '.join(found)}).",
            )
        return chosen
    accounts = {_compact(p.statement.account) for p in parsed}
    if len(accounts) > 1:
        found = sorted({p.statement.account or "(none)" for p in parsed})
        raise ReconciliationError(
            422,
            "several_bank_accounts",
            f"the file holds statements of several bank accounts ({', '.join(found)}); "
            "name the one for this ledger account in `bank_account`.",
        )
    return parsed


def _store(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    account_id: uuid.UUID,
    parsed: ParsedStatement,
) -> ImportedStatement:
    statement = parsed.statement
    print_ = fingerprint(statement)
    existing = conn.execute(
        "select id from bank_statements where book_id = %s and account_id = %s"
        " and fingerprint = %s",
        (book_id, account_id, print_),
    ).fetchone()
    if existing is not None:
        return ImportedStatement(existing[0], False, 0, len(statement.lines))
    # A line's identity: ledger account, bank account and the bank's reference
    # (parsers make references distinct within a statement, so no line of one
    # file is ever taken for another). A line an earlier overlapping statement
    # stored is listed by this statement, not stored again.
    bank = _compact(statement.account) or ""
    known = {
        r[0]: (r[1], r[2])
        for r in conn.execute(
            "select bank_reference, id, amount from bank_statement_lines where book_id = %s"
            " and account_id = %s and bank_account = %s and bank_reference = any(%s)",
            (book_id, account_id, bank, [x.bank_reference for x in statement.lines]),
        ).fetchall()
    }
    line_ids: list[uuid.UUID] = []
    fresh: list[tuple[uuid.UUID, int, StatementLine]] = []
    for number, line in enumerate(statement.lines, start=1):
        hit = known.get(line.bank_reference)
        if hit is None:
            fresh.append((uuid.uuid4(), number, line))
            line_ids.append(fresh[-1][0])
        elif hit[1] != line.amount:
            raise ReconciliationError(
                422,
                "reference_reused",
                f"line {number} carries the bank reference {line.bank_reference!r} of a line "
                f"already imported with amount {hit[1]}, but its amount is {line.amount}; "
                "the bank reused a reference, so the file cannot be de-duplicated safely.",
                bank_reference=line.bank_reference,
            )
        else:
            line_ids.append(hit[0])
    statement_id = uuid.uuid4()
    conn.execute(
        "insert into bank_statements (book_id, id, account_id, format, bank_statement_id,"
        " bank_account, currency, opening_balance, closing_balance, opening_date, closing_date,"
        " line_count, new_line_count, fingerprint, file_sha256, filename, line_ids)"
        " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (book_id, statement_id, account_id, statement.format, statement.statement_id,
         statement.account, statement.currency, statement.opening_balance,
         statement.closing_balance, statement.opening_date, statement.closing_date,
         len(statement.lines), len(fresh), print_, parsed.file_sha256, parsed.filename,
         line_ids),
    )  # fmt: skip
    if fresh:
        columns = list(zip(*[
            (line_id, number, x.bank_reference, x.booking_date, x.value_date, x.amount,
             x.currency, x.end_to_end_id, x.counterparty_name, x.counterparty_account,
             x.remittance_info, x.bank_transaction_code)
            for line_id, number, x in fresh
        ], strict=True))  # fmt: skip
        conn.execute(
            "insert into bank_statement_lines (book_id, statement_id, account_id, bank_account,"
            " id, line_no, bank_reference, booking_date, value_date, amount, currency,"
            " end_to_end_id, counterparty_name, counterparty_account, remittance_info,"
            " bank_transaction_code)"
            " select %s, %s, %s, %s, t.* from unnest(%s::uuid[], %s::int[], %s::text[],"
            " %s::date[], %s::date[], %s::numeric[], %s::text[], %s::text[], %s::text[],"
            " %s::text[], %s::text[], %s::text[]) t",
            (book_id, statement_id, account_id, bank, *map(list, columns)),
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
