"""Services (MSP) expenses: recorded against a contract with receipt metadata
and a markup, approved like time (draft → approved → invoiced; an approved
expense changes only by an adjusting expense), and billed by the contract
billing run as one line per expense at cost × (1 + markup), rounded half-up.

A billed expense is revenue in `Income:Services` (line kind `expense`, so it
can be told apart from hours): the cost itself is booked by accounts payable,
outside this service, so the invoice posts AR / Income:Services only.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from billing.errors import DocumentState, InvalidBillingRequest
from billing.msp import expense_billable_amount
from billing.postgres.ids import parse_id
from billing.postgres.invoices import LineSpec
from ledger.errors import NotFound
from ledger.money import Money, check_currency
from ledger.postgres.books import book_window

RECEIPT_FIELDS = ("file_name", "content_type", "sha256", "vendor")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class ExpenseSpec:
    contract: str
    person: str
    date: date
    description: str
    amount: str  # the cost; for an adjustment, the signed change of the cost
    currency: str | None = None
    markup_percent: str | None = None
    billable_amount: str | None = None  # instead of a markup: what to bill, as given
    billable: bool = True
    receipt: Mapping[str, str] | None = None
    external_id: str | None = None
    adjusts: str | None = None


@dataclass(frozen=True, slots=True)
class Expense:
    id: uuid.UUID
    contract_id: uuid.UUID
    customer_id: uuid.UUID
    person: str
    date: date
    description: str
    currency: str
    cost: Decimal
    markup_percent: Decimal | None
    billable_amount: Decimal
    billable: bool
    receipt: dict[str, str] | None
    status: str
    invoice_id: uuid.UUID | None
    invoice_line: int | None
    external_id: str | None
    adjusts: uuid.UUID | None


_COLUMNS = ", ".join(Expense.__slots__)


def _number(text: str | None, name: str, *, signed: bool = False) -> Decimal | None:
    if text is None:
        return None
    try:
        value = Decimal(str(text))
    except InvalidOperation:
        value = Decimal("NaN")
    if isinstance(text, bool) or not value.is_finite() or (value < 0 and not signed):
        kind = "a decimal string" if signed else "a non-negative decimal string"
        raise InvalidBillingRequest(f"{name} must be {kind}", field=name)
    return value


def _receipt(raw: Mapping[str, str] | None) -> dict[str, str] | None:
    if raw is None:
        return None
    unknown = set(raw) - set(RECEIPT_FIELDS)
    if unknown:
        raise InvalidBillingRequest(
            f"receipt takes {', '.join(RECEIPT_FIELDS)}, not {', '.join(sorted(unknown))}",
            field="receipt",
        )
    receipt = {k: str(v).strip() for k, v in raw.items() if v is not None and str(v).strip()}
    sha = receipt.get("sha256")
    if sha is not None:
        receipt["sha256"] = sha.lower()
        if not _SHA256.match(receipt["sha256"]):
            raise InvalidBillingRequest(
                "receipt.sha256 must be 64 hexadecimal digits", field="receipt.sha256"
            )
    return receipt or None


def _amounts(
    cost: Decimal, markup: Decimal | None, given: Decimal | None, currency: str
) -> Decimal:
    if markup is not None and given is not None:
        raise InvalidBillingRequest(
            "give markup_percent or billable_amount, not both", field="billable_amount"
        )
    if given is not None:
        return Money(given, currency).quantized().amount
    return expense_billable_amount(cost, markup, currency)


def create_expense(conn: psycopg.Connection, book_id: uuid.UUID, spec: ExpenseSpec) -> Expense:
    """A draft expense on an open contract, in the contract's currency, its
    billable amount fixed now (cost × (1 + markup ÷ 100), half-up to the minor unit)."""
    from billing.postgres.msp import get_contract

    if spec.adjusts is not None:
        return _adjusting_expense(conn, book_id, spec)
    if not spec.person.strip():
        raise InvalidBillingRequest("person must not be empty", field="person")
    if not spec.description.strip():
        raise InvalidBillingRequest("description must not be empty", field="description")
    contract = get_contract(conn, book_id, spec.contract)
    currency = check_currency(spec.currency or contract.currency)
    if currency != contract.currency:
        raise InvalidBillingRequest(
            f"the contract bills in {contract.currency}, not {currency}", field="currency"
        )
    if not contract.open_on(spec.date):
        raise DocumentState(
            f"contract {contract.id} is {contract.status} or not in force on {spec.date}:"
            " no expense can be recorded",
            contract=str(contract.id),
        )
    book_window(conn, book_id).check_optional("date", spec.date)
    cost = _number(spec.amount, "amount")
    assert cost is not None
    cost = Money(cost, currency).quantized().amount
    markup = _number(spec.markup_percent, "markup_percent")
    billable_amount = _amounts(
        cost, markup, _number(spec.billable_amount, "billable_amount"), currency
    )
    expense_id = uuid.uuid4()
    conn.execute(
        "insert into expenses (book_id, id, contract_id, customer_id, person, date, description,"
        " currency, cost, markup_percent, billable_amount, billable, receipt, external_id)"
        " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            book_id,
            expense_id,
            contract.id,
            contract.customer_id,
            spec.person.strip(),
            spec.date,
            spec.description.strip(),
            currency,
            cost,
            markup,
            billable_amount,
            spec.billable,
            Jsonb(r) if (r := _receipt(spec.receipt)) else None,
            spec.external_id,
        ),
    )
    return get_expense(conn, book_id, str(expense_id))


def _adjusting_expense(conn: psycopg.Connection, book_id: uuid.UUID, spec: ExpenseSpec) -> Expense:
    """A correction of an approved (or invoiced) expense: `amount` is the signed
    change of the cost; the billable change is that at the original markup (or
    `billable_amount`, signed, when given). It bills on the next invoice."""
    from billing.postgres.msp import get_contract

    assert spec.adjusts is not None
    original = get_expense(conn, book_id, spec.adjusts, lock=True)
    if original.adjusts is not None:
        raise InvalidBillingRequest(
            "adjust the original expense, not an adjustment", field="adjusts"
        )
    if original.status == "draft":
        raise DocumentState(f"expense {original.id} is a draft: change it or approve it first")
    change = _number(spec.amount, "amount", signed=True)
    assert change is not None
    change = Money(change, original.currency).quantized().amount
    given = _number(spec.billable_amount, "billable_amount", signed=True)
    row = conn.execute(
        "select coalesce(sum(cost), 0), coalesce(sum(billable_amount), 0) from expenses"
        " where book_id = %s and (id = %s or adjusts = %s)",
        (book_id, original.id, original.id),
    ).fetchone()
    assert row is not None
    if Decimal(row[0]) + change < 0:
        raise InvalidBillingRequest(
            f"the expense costs {row[0]}: it cannot lose {-change}", field="amount"
        )
    if given is not None:
        billable_change = Money(given, original.currency).quantized().amount
    else:
        sign = Decimal(-1) if change < 0 else Decimal(1)
        billable_change = sign * expense_billable_amount(
            abs(change), original.markup_percent, original.currency
        )
    if billable_change < 0 and original.status == "invoiced":
        raise DocumentState(
            f"expense {original.id} is invoiced: bill less for it with a credit note on"
            f" invoice {original.invoice_id}, not a negative adjustment",
            expense=str(original.id),
        )
    if Decimal(row[1]) + billable_change < 0:
        raise InvalidBillingRequest(
            f"the expense bills {row[1]}: it cannot lose {-billable_change}",
            field="billable_amount",
        )
    contract = get_contract(conn, book_id, str(original.contract_id))
    if not contract.open_on(spec.date):
        raise DocumentState(f"contract {contract.id} is not open on {spec.date}")
    book_window(conn, book_id).check_optional("date", spec.date)
    expense_id = uuid.uuid4()
    conn.execute(
        "insert into expenses (book_id, id, contract_id, customer_id, person, date, description,"
        " currency, cost, markup_percent, billable_amount, billable, receipt, external_id,"
        " adjusts) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            book_id,
            expense_id,
            original.contract_id,
            original.customer_id,
            original.person,
            spec.date,
            spec.description.strip() or f"Adjusts {original.description}",
            original.currency,
            change,
            original.markup_percent,
            billable_change,
            original.billable,
            Jsonb(r) if (r := _receipt(spec.receipt)) else None,
            spec.external_id,
            original.id,
        ),
    )
    return get_expense(conn, book_id, str(expense_id))


def get_expense(
    conn: psycopg.Connection, book_id: uuid.UUID, ref: str, *, lock: bool = False
) -> Expense:
    expense_id = parse_id(ref, "expense")
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"select {_COLUMNS} from expenses where book_id = %s and id = %s"
            + (" for update" if lock else ""),
            (book_id, expense_id),
        ).fetchone()
    if row is None:
        raise NotFound(f"expense {ref!r} does not exist in this book", expense=ref)
    return Expense(**row)


def list_expenses(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    *,
    contract_ref: str | None = None,
    invoice_id: uuid.UUID | None = None,
) -> list[Expense]:
    contract_id = parse_id(contract_ref, "contract") if contract_ref else None
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"select {_COLUMNS} from expenses where book_id = %s"
            " and (%s::uuid is null or contract_id = %s) and (%s::uuid is null or invoice_id = %s)"
            " order by date, created_at, id",
            (book_id, contract_id, contract_id, invoice_id, invoice_id),
        ).fetchall()
    return [Expense(**r) for r in rows]


def approve_expense(conn: psycopg.Connection, book_id: uuid.UUID, ref: str) -> Expense:
    """draft → approved: from now on it changes only by an adjusting expense."""
    expense = get_expense(conn, book_id, ref, lock=True)
    if expense.status != "draft":
        raise DocumentState(f"expense {expense.id} is already {expense.status}")
    if expense.adjusts is not None and expense.billable_amount < 0:
        original = get_expense(conn, book_id, str(expense.adjusts))
        if original.status == "invoiced":
            # Alone on an invoice it would make a negative one: credits are credit notes.
            raise DocumentState(
                f"expense {original.id} was invoiced meanwhile: bill less for it with a"
                f" credit note on invoice {original.invoice_id}",
                expense=str(original.id),
            )
    conn.execute(
        "update expenses set status = 'approved' where book_id = %s and id = %s",
        (book_id, expense.id),
    )
    return get_expense(conn, book_id, ref)


def update_expense(
    conn: psycopg.Connection, book_id: uuid.UUID, ref: str, description: str | None
) -> Expense:
    """A draft's description; approved and invoiced expenses are immutable."""
    expense = get_expense(conn, book_id, ref, lock=True)
    if expense.status != "draft":
        raise DocumentState(
            f"expense {expense.id} is {expense.status}: it cannot be edited (record an"
            " adjusting expense instead)",
            expense=str(expense.id),
        )
    if description is not None and not description.strip():
        raise InvalidBillingRequest("description must not be empty", field="description")
    conn.execute(
        "update expenses set description = coalesce(%s, description) where book_id = %s"
        " and id = %s",
        (description.strip() if description else None, book_id, expense.id),
    )
    return get_expense(conn, book_id, ref)


def billable_expenses(
    conn: psycopg.Connection, book_id: uuid.UUID, as_of: date
) -> dict[uuid.UUID, list[tuple[LineSpec, uuid.UUID]]]:
    """The run's expense lines per contract (one query for the whole run): each
    approved billable expense dated on or before `as_of`, one line each (its id
    traced on the line)."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            # A (negative) adjustment of an expense not yet invoiced bills with it,
            # whatever its own date, so it never stands alone on an invoice.
            "select e.contract_id, e.id, e.date, e.description, e.billable_amount, e.receipt"
            " from expenses e left join expenses o on o.book_id = e.book_id and o.id = e.adjusts"
            " where e.book_id = %s and e.status = 'approved' and e.billable"
            " and (e.date <= %s or (e.billable_amount < 0 and o.date <= %s"
            " and o.status = 'approved')) order by e.date, e.created_at, e.id for update of e",
            (book_id, as_of, as_of),
        ).fetchall()
    lines: dict[uuid.UUID, list[tuple[LineSpec, uuid.UUID]]] = {}
    for r in rows:
        vendor = (r["receipt"] or {}).get("vendor")
        text = f"Expense {r['date']}: {r['description']}" + (f" ({vendor})" if vendor else "")
        line = LineSpec(text, Decimal(1), Decimal(r["billable_amount"]), kind="expense")
        lines.setdefault(r["contract_id"], []).append((line, r["id"]))
    return lines


def mark_invoiced(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    invoice_id: uuid.UUID,
    lines: list[tuple[int, uuid.UUID]],
) -> None:
    for line_no, expense_id in lines:
        conn.execute(
            "update expenses set status = 'invoiced', invoice_id = %s, invoice_line = %s"
            " where book_id = %s and id = %s",
            (invoice_id, line_no, book_id, expense_id),
        )


EXPENSE_COLUMNS = ("date", "person", "description", "vendor", "amount")


def expense_statement(
    conn: psycopg.Connection, book_id: uuid.UUID, invoice_id: uuid.UUID
) -> list[dict[str, str]]:
    """The invoice's expenses as the client reads them: what each billed."""
    return [
        {
            "date": e.date.isoformat(),
            "person": e.person,
            "description": e.description,
            "vendor": (e.receipt or {}).get("vendor", ""),
            "amount": str(Money(e.billable_amount, e.currency).quantized().amount),
        }
        for e in list_expenses(conn, book_id, invoice_id=invoice_id)
    ]
