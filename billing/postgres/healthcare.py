"""Healthcare persistence: parties, fee schedules, encounters and their charges,
claims and their 837P export, patient payments, AR by payer, the PHI log.

Remittance (835) import is in healthcare_remittances.py. Rows come back as
dicts (column → value); the HTTP and CLI adapters shape them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from billing.errors import DocumentState, InvalidBillingRequest
from billing.healthcare import codes
from billing.healthcare.entries import (
    PATIENT_PAYMENT_ACCOUNTS,
    Charge,
    charge_entry,
    may_move,
    patient_payment_entry,
    patient_to_payer_entry,
)
from billing.healthcare.remittance import RECEIVABLE_PATIENT, RECEIVABLE_PAYER
from billing.postgres.ids import parse_id
from billing.postgres.posting import post_entry
from ledger.errors import NotFound
from ledger.money import Money, parse_amount
from ledger.postgres.books import get_book

Row = dict[str, Any]
GENDERS = ("M", "F", "U")


def _one(
    conn: psycopg.Connection, sql: str, params: Sequence[Any] | Mapping[str, Any]
) -> Row | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, params).fetchone()


def _all(
    conn: psycopg.Connection, sql: str, params: Sequence[Any] | Mapping[str, Any]
) -> list[Row]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, params).fetchall()


def _get(conn: psycopg.Connection, book_id: uuid.UUID, table: str, ref: str, what: str) -> Row:
    row = _one(
        conn,
        f"select * from {table} where book_id = %s and id = %s",
        (book_id, parse_id(ref, what)),
    )
    if row is None:
        raise NotFound(f"{what} {ref!r} does not exist in this book")
    return row


# --- parties -------------------------------------------------------------------------


def _address(value: Mapping[str, Any] | None, what: str, required: bool = True) -> dict[str, Any]:
    address = dict(value or {})
    if required or address:
        missing = [k for k in ("line1", "city", "state", "postal_code") if not address.get(k)]
        if missing:
            raise InvalidBillingRequest(f"{what} address needs {', '.join(missing)}")
    return address


def create_patient(conn: psycopg.Connection, book_id: uuid.UUID, body: Mapping[str, Any]) -> Row:
    if body["gender"] not in GENDERS:
        raise InvalidBillingRequest(f"gender {body['gender']!r}: use M, F or U")
    for field in ("first_name", "last_name"):
        if not str(body[field]).strip():
            raise InvalidBillingRequest(f"{field} is empty")
    row = _one(
        conn,
        "insert into patients (book_id, id, first_name, last_name, date_of_birth, gender,"
        " address, guarantor) values (%s, %s, %s, %s, %s, %s, %s, %s) returning *",
        (
            book_id,
            uuid.uuid4(),
            body["first_name"].strip(),
            body["last_name"].strip(),
            body["date_of_birth"],
            body["gender"],
            Jsonb(_address(body.get("address"), "the patient's")),
            Jsonb(body["guarantor"]) if body.get("guarantor") else None,
        ),
    )
    assert row is not None
    return row


def get_patient(conn: psycopg.Connection, book_id: uuid.UUID, ref: str) -> Row:
    return _get(conn, book_id, "patients", ref, "patient")


def create_payer(conn: psycopg.Connection, book_id: uuid.UUID, body: Mapping[str, Any]) -> Row:
    if not body["name"].strip() or not body["payer_id"].strip():
        raise InvalidBillingRequest("a payer needs a name and a payer_id")
    if conn.execute(
        "select 1 from payers where book_id = %s and payer_id = %s", (book_id, body["payer_id"])
    ).fetchone():
        raise DocumentState(f"payer_id {body['payer_id']!r} already exists in this book")
    row = _one(
        conn,
        "insert into payers (book_id, id, name, payer_id, claim_filing_indicator)"
        " values (%s, %s, %s, %s, %s) returning *",
        (
            book_id,
            uuid.uuid4(),
            body["name"].strip(),
            body["payer_id"].strip(),
            body.get("claim_filing_indicator") or "CI",
        ),
    )
    assert row is not None
    return row


def get_payer(conn: psycopg.Connection, book_id: uuid.UUID, ref: str) -> Row:
    row = _one(conn, "select * from payers where book_id = %s and payer_id = %s", (book_id, ref))
    return row if row is not None else _get(conn, book_id, "payers", ref, "payer")


def create_coverage(conn: psycopg.Connection, book_id: uuid.UUID, body: Mapping[str, Any]) -> Row:
    patient = get_patient(conn, book_id, body["patient"])
    payer = get_payer(conn, book_id, body["payer"])
    priority = codes.priority(body.get("priority") or "primary")
    start, end = body.get("effective_from"), body.get("effective_to")
    if start and end and end < start:
        raise InvalidBillingRequest("effective_to is before effective_from")
    if not str(body["member_id"]).strip():
        raise InvalidBillingRequest("member_id is empty")
    row = _one(
        conn,
        "insert into coverages (book_id, id, patient_id, payer_id, member_id, group_number,"
        " priority, effective_from, effective_to) values (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " returning *",
        (
            book_id,
            uuid.uuid4(),
            patient["id"],
            payer["id"],
            body["member_id"].strip(),
            body.get("group_number"),
            priority,
            start,
            end,
        ),
    )
    assert row is not None
    return row


def coverage_on(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    patient_id: uuid.UUID,
    on: date,
    priority: str = "primary",
    payer_id: uuid.UUID | None = None,
) -> Row | None:
    """The patient's coverage of that priority (or with that payer) in force on the day."""
    where = "c.payer_id = %(payer)s" if payer_id is not None else "c.priority = %(priority)s"
    return _one(
        conn,
        "select c.*, p.name as payer_name, p.payer_id as payer_code, p.claim_filing_indicator"
        " from coverages c join payers p on p.book_id = c.book_id and p.id = c.payer_id"
        f" where c.book_id = %(book)s and c.patient_id = %(patient)s and {where}"
        " and (c.effective_from is null or c.effective_from <= %(on)s)"
        " and (c.effective_to is null or c.effective_to >= %(on)s)"
        " order by c.created_at desc limit 1",
        {"book": book_id, "patient": patient_id, "priority": priority, "payer": payer_id, "on": on},
    )


def create_provider(conn: psycopg.Connection, book_id: uuid.UUID, body: Mapping[str, Any]) -> Row:
    npi = codes.npi(body["npi"])
    if conn.execute(
        "select 1 from providers where book_id = %s and npi = %s", (book_id, npi)
    ).fetchone():
        raise DocumentState(f"a provider with NPI {npi} already exists in this book")
    row = _one(
        conn,
        "insert into providers (book_id, id, name, first_name, npi, tax_id, taxonomy, address)"
        " values (%s, %s, %s, %s, %s, %s, %s, %s) returning *",
        (
            book_id,
            uuid.uuid4(),
            body["name"].strip(),
            body.get("first_name"),
            npi,
            codes.tax_id(body.get("tax_id")),
            codes.taxonomy(body.get("taxonomy")),
            Jsonb(_address(body.get("address"), "the provider's", required=False)),
        ),
    )
    assert row is not None
    return row


def get_provider(conn: psycopg.Connection, book_id: uuid.UUID, ref: str) -> Row:
    return _get(conn, book_id, "providers", ref, "provider")


# --- fee schedules -----------------------------------------------------------------------


def _modifier_key(modifiers: Sequence[str]) -> str:
    return ":".join(modifiers)


def create_fee_schedule(
    conn: psycopg.Connection, book_id: uuid.UUID, body: Mapping[str, Any]
) -> Row:
    currency = body.get("currency") or get_book(conn, book_id).base_currency
    items = []
    allowed: list[tuple[uuid.UUID, str, str, Decimal]] = []
    seen = set()
    for item in body["items"]:
        code = codes.procedure(item["code"])
        modifiers = codes.modifiers(item.get("modifiers") or [])
        amount = Money.exact(item["amount"], currency).amount
        if amount < 0:
            raise InvalidBillingRequest(f"fee for {code} is negative")
        key = (code, _modifier_key(modifiers))
        if key in seen:
            raise InvalidBillingRequest(f"{code} {'-'.join(modifiers)} is listed twice")
        seen.add(key)
        items.append((code, key[1], amount))
        for payer_ref, value in (item.get("allowed") or {}).items():
            # The payer's contracted amount: expected payments only, never posted.
            payer = get_payer(conn, book_id, payer_ref)
            allowed_amount = Money.exact(value, currency).amount
            if allowed_amount < 0:
                raise InvalidBillingRequest(f"allowed amount for {code} is negative")
            allowed.append((payer["id"], code, key[1], allowed_amount))
    if not items:
        raise InvalidBillingRequest("a fee schedule needs at least one item")
    if conn.execute(
        "select 1 from fee_schedules where book_id = %s and name = %s", (book_id, body["name"])
    ).fetchone():
        raise DocumentState(f"fee schedule {body['name']!r} already exists in this book")
    schedule_id = uuid.uuid4()
    row = _one(
        conn,
        "insert into fee_schedules (book_id, id, name, currency) values (%s, %s, %s, %s)"
        " returning *",
        (book_id, schedule_id, body["name"], currency),
    )
    with conn.cursor() as cur:
        cur.executemany(
            "insert into fee_schedule_items (book_id, fee_schedule_id, code, modifiers, amount)"
            " values (%s, %s, %s, %s, %s)",
            [(book_id, schedule_id, c, m, a) for c, m, a in items],
        )
        cur.executemany(
            "insert into fee_schedule_allowed (book_id, fee_schedule_id, payer_id, code,"
            " modifiers, amount) values (%s, %s, %s, %s, %s, %s)",
            [(book_id, schedule_id, p, c, m, a) for p, c, m, a in allowed],
        )
    assert row is not None
    return {**row, "items": fee_items(conn, book_id, schedule_id)}


def fee_items(conn: psycopg.Connection, book_id: uuid.UUID, schedule_id: uuid.UUID) -> list[Row]:
    """The schedule's items, each with `allowed`: payer id → contracted amount."""
    return _all(
        conn,
        "select i.code, i.modifiers, i.amount, coalesce((select jsonb_object_agg("
        " a.payer_id::text, a.amount::text) from fee_schedule_allowed a"
        " where a.book_id = i.book_id and a.fee_schedule_id = i.fee_schedule_id"
        " and a.code = i.code and a.modifiers = i.modifiers), '{}') as allowed"
        " from fee_schedule_items i"
        " where i.book_id = %s and i.fee_schedule_id = %s order by i.code, i.modifiers",
        (book_id, schedule_id),
    )


def _fee_schedule(conn: psycopg.Connection, book_id: uuid.UUID, ref: str | None) -> Row:
    if ref is not None:
        row = _one(
            conn, "select * from fee_schedules where book_id = %s and name = %s", (book_id, ref)
        )
        return row if row is not None else _get(conn, book_id, "fee_schedules", ref, "fee schedule")
    rows = _all(
        conn, "select * from fee_schedules where book_id = %s order by created_at", (book_id,)
    )
    if len(rows) != 1:
        raise InvalidBillingRequest(
            "name the encounter's `fee_schedule`" if rows else "create a fee schedule first"
        )
    return rows[0]


# --- encounters --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChargeIn:
    code: str
    modifiers: Sequence[str]
    units: Decimal
    pointers: Sequence[int]


def create_encounter(conn: psycopg.Connection, book_id: uuid.UUID, body: Mapping[str, Any]) -> Row:
    """Charges priced from the fee schedule; posted to the primary payer's AR on the
    date of service, or to the patient's when no primary coverage is in force."""
    patient = get_patient(conn, book_id, body["patient"])
    provider = get_provider(conn, book_id, body["provider"])
    # The rendering provider is kept only when someone else performed the service.
    rendering = (
        get_provider(conn, book_id, body["rendering_provider"])
        if body.get("rendering_provider")
        else None
    )
    rendering_id = rendering["id"] if rendering and rendering["id"] != provider["id"] else None
    schedule = _fee_schedule(conn, book_id, body.get("fee_schedule"))
    on: date = body["date_of_service"]
    pos = codes.place_of_service(body.get("place_of_service") or "11")
    diagnoses = codes.diagnoses(body["diagnoses"])
    if not body["charges"]:
        raise InvalidBillingRequest("an encounter needs at least one charge")
    if len(body["charges"]) > 50:
        raise InvalidBillingRequest("an 837P claim carries at most 50 service lines")
    currency = schedule["currency"]
    prices = {
        (r["code"], r["modifiers"]): r["amount"] for r in fee_items(conn, book_id, schedule["id"])
    }
    lines = []
    for n, charge in enumerate(body["charges"], 1):
        code = codes.procedure(charge["code"])
        modifiers = codes.modifiers(charge.get("modifiers") or [])
        units = parse_amount(charge.get("units") or "1")
        if units <= 0:
            raise InvalidBillingRequest(f"charge {n}: units must be positive")
        pointers = codes.pointers(charge.get("diagnosis_pointers") or [1], len(diagnoses))
        price = prices.get((code, _modifier_key(modifiers)))
        if price is None:
            price = prices.get((code, ""))
        if price is None:
            raise InvalidBillingRequest(
                f"charge {n}: {code} {'-'.join(modifiers)} is not in fee schedule"
                f" {schedule['name']!r}"
            )
        amount = Money(price * units, currency)
        if not amount.fits_minor_unit():
            raise InvalidBillingRequest(f"charge {n}: {price} × {units} is not a whole amount")
        lines.append((n, code, modifiers, units, pointers, amount))
    coverage = coverage_on(conn, book_id, patient["id"], on)
    payer_id = coverage["payer_id"] if coverage else None
    encounter_id = uuid.uuid4()
    total = sum((line[5].amount for line in lines), Decimal(0))
    entry = charge_entry(
        encounter_id, patient["id"], payer_id, on, [Charge(n, a) for n, *_, a in lines]
    )
    entry_id = post_entry(conn, book_id, entry).id if entry else None
    _one(
        conn,
        "insert into encounters (book_id, id, patient_id, provider_id, fee_schedule_id, payer_id,"
        " date_of_service, place_of_service, diagnoses, total, entry_id, rendering_provider_id)"
        " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) returning id",
        (
            book_id,
            encounter_id,
            patient["id"],
            provider["id"],
            schedule["id"],
            payer_id,
            on,
            pos,
            Jsonb(diagnoses),
            total,
            entry_id,
            rendering_id,
        ),
    )
    with conn.cursor() as cur:
        cur.executemany(
            "insert into encounter_charges (book_id, encounter_id, line_no, code, modifiers,"
            " units, diagnosis_pointers, amount) values (%s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (book_id, encounter_id, n, c, Jsonb(m), u, Jsonb(p), a.amount)
                for n, c, m, u, p, a in lines
            ],
        )
    return get_encounter(conn, book_id, str(encounter_id))


def get_encounter(conn: psycopg.Connection, book_id: uuid.UUID, ref: str) -> Row:
    row = _get(conn, book_id, "encounters", ref, "encounter")
    row["charges"] = _all(
        conn,
        "select line_no, code, modifiers, units, diagnosis_pointers, amount from encounter_charges"
        " where book_id = %s and encounter_id = %s order by line_no",
        (book_id, row["id"]),
    )
    row["currency"] = _one(
        conn,
        "select currency from fee_schedules where book_id = %s and id = %s",
        (book_id, row["fee_schedule_id"]),
    )["currency"]  # type: ignore[index]
    return row


# --- claims ------------------------------------------------------------------------------


def create_claim(conn: psycopg.Connection, book_id: uuid.UUID, body: Mapping[str, Any]) -> Row:
    """A draft claim for the encounter's charges, to its primary payer unless `payer`
    names another of the patient's coverages in force on the date of service."""
    encounter = get_encounter(conn, book_id, body["encounter"])
    payer_id = get_payer(conn, book_id, body["payer"])["id"] if body.get("payer") else None
    coverage = coverage_on(
        conn, book_id, encounter["patient_id"], encounter["date_of_service"], payer_id=payer_id
    )
    if coverage is None:
        raise InvalidBillingRequest(
            "the patient has no coverage with that payer on the date of service"
            if payer_id
            else "the patient has no primary coverage on the date of service (self-pay)"
        )
    open_claim = conn.execute(
        "select control_number from claims where book_id = %s and encounter_id = %s"
        " and coverage_id = %s and status not in ('rejected', 'closed')",
        (book_id, encounter["id"], coverage["id"]),
    ).fetchone()
    if open_claim is not None:
        # The same charges billed twice to one payer would be paid twice.
        raise DocumentState(
            f"claim {open_claim[0]} already bills this encounter to this payer;"
            " close or reject it first"
        )
    claim_id = uuid.uuid4()
    prior = None
    if coverage["priority"] != "primary":
        prior = prior_claim(conn, book_id, encounter["id"], coverage["priority"])
        if prior is None:
            raise InvalidBillingRequest(
                f"a {coverage['priority']} claim follows the earlier payer's adjudication:"
                " import its 835 first"
            )
    control = body.get("control_number") or claim_id.hex[:20].upper()
    if len(control) > 20 or not control.isprintable() or any(c in control for c in "*:~^"):
        raise InvalidBillingRequest("control_number: at most 20 characters, no X12 delimiters")
    if conn.execute(
        "select 1 from claims where book_id = %s and control_number = %s", (book_id, control)
    ).fetchone():
        raise DocumentState(f"a claim with control number {control!r} already exists")
    _one(
        conn,
        "insert into claims (book_id, id, control_number, encounter_id, payer_id, coverage_id,"
        " billed, currency) values (%s, %s, %s, %s, %s, %s, %s, %s) returning id",
        (
            book_id,
            claim_id,
            control,
            encounter["id"],
            coverage["payer_id"],
            coverage["id"],
            encounter["total"],
            encounter["currency"],
        ),
    )
    if prior is not None:
        owed = Decimal(prior["patient_responsibility"])
        entry = patient_to_payer_entry(
            claim_id,
            encounter["id"],
            encounter["patient_id"],
            coverage["payer_id"],
            Money(owed, encounter["currency"]),
            encounter["date_of_service"],
        )
        if entry is not None:
            post_entry(conn, book_id, entry)
    return get_claim(conn, book_id, str(claim_id))


_EARLIER = {"secondary": "primary", "tertiary": "secondary"}


def prior_claim(
    conn: psycopg.Connection, book_id: uuid.UUID, encounter_id: uuid.UUID, priority: str
) -> Row | None:
    """The encounter's adjudicated claim to the payer one priority earlier."""
    row = _one(
        conn,
        "select c.id from claims c join coverages v on v.book_id = c.book_id"
        " and v.id = c.coverage_id where c.book_id = %s and c.encounter_id = %s"
        " and v.priority = %s and c.adjudication is not null"
        " order by c.created_at desc limit 1",
        (book_id, encounter_id, _EARLIER[priority]),
    )
    return get_claim(conn, book_id, str(row["id"])) if row else None


_CLAIM_FIGURES = """
select coalesce(sum(p.amount) filter (where a.name = %(payer)s), 0) as payer_postings,
       coalesce(sum(p.amount) filter (where a.name = 'Assets:Clearing:Remittances'), 0) as paid,
       coalesce(sum(p.amount) filter (where p.dimensions->>'group' in ('CO', 'OA', 'PI', 'CR')
                                        and a.name <> %(payer)s), 0) as adjusted,
       coalesce(sum(p.amount) filter (where p.dimensions->>'group' = 'PR'
                                        and a.name = %(patient)s), 0) as patient_responsibility
  from postings p join accounts a on a.id = p.account_id
 where p.book_id = %(book)s and p.document = %(doc)s
"""


def get_claim(conn: psycopg.Connection, book_id: uuid.UUID, ref: str) -> Row:
    row = _get(conn, book_id, "claims", ref, "claim")
    figures = _one(
        conn,
        _CLAIM_FIGURES,
        {
            "book": book_id,
            "doc": f"claim:{row['id']}",
            "payer": RECEIVABLE_PAYER,
            "patient": RECEIVABLE_PATIENT,
        },
    )
    assert figures is not None
    encounter = _one(
        conn,
        "select patient_id, diagnoses, date_of_service from encounters"
        " where book_id = %s and id = %s",
        (book_id, row["encounter_id"]),
    )
    assert encounter is not None
    coverage = _one(
        conn,
        "select member_id, priority from coverages where book_id = %s and id = %s",
        (book_id, row["coverage_id"]),
    )
    assert coverage is not None
    return {**row, **figures, **encounter, **coverage}


def set_claim_status(conn: psycopg.Connection, book_id: uuid.UUID, ref: str, status: str) -> Row:
    claim = _get(conn, book_id, "claims", ref, "claim")
    conn.execute(
        "select 1 from claims where book_id = %s and id = %s for update", (book_id, claim["id"])
    )
    if not may_move(claim["status"], status):
        raise DocumentState(f"a {claim['status']} claim cannot become {status}")
    conn.execute(
        "update claims set status = %s, submitted_at = case when %s = 'submitted' then now()"
        " else submitted_at end where book_id = %s and id = %s",
        (status, status, book_id, claim["id"]),
    )
    return get_claim(conn, book_id, ref)


def next_control_number(conn: psycopg.Connection, book_id: uuid.UUID) -> int:
    """The book's next interchange control number: under the row's lock, so two
    exports never share one; a rolled-back export leaves no gap worth keeping."""
    row = conn.execute(
        "insert into x12_control_numbers (book_id, last_number) values (%s, 1)"
        " on conflict (book_id) do update set last_number = x12_control_numbers.last_number + 1"
        " returning last_number",
        (book_id,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def claim_837_data(conn: psycopg.Connection, book_id: uuid.UUID, ref: str) -> Row:
    """Everything an 837P of the claim says, read in one place."""
    claim = get_claim(conn, book_id, ref)
    encounter = get_encounter(conn, book_id, str(claim["encounter_id"]))
    return {
        "claim": claim,
        "encounter": encounter,
        "patient": get_patient(conn, book_id, str(encounter["patient_id"])),
        "provider": get_provider(conn, book_id, str(encounter["provider_id"])),
        "rendering": (
            get_provider(conn, book_id, str(encounter["rendering_provider_id"]))
            if encounter["rendering_provider_id"]
            else None
        ),
        "payer": _get(conn, book_id, "payers", str(claim["payer_id"]), "payer"),
        "coverage": _get(conn, book_id, "coverages", str(claim["coverage_id"]), "coverage"),
    }


def prior_payer_data(conn: psycopg.Connection, book_id: uuid.UUID, claim: Row) -> Row | None:
    """For a secondary (or tertiary) claim: the earlier claim, its payer and coverage."""
    if claim["priority"] == "primary":
        return None
    prior = prior_claim(conn, book_id, claim["encounter_id"], claim["priority"])
    if prior is None:
        return None
    return {
        "claim": prior,
        "payer": _get(conn, book_id, "payers", str(prior["payer_id"]), "payer"),
        "coverage": _get(conn, book_id, "coverages", str(prior["coverage_id"]), "coverage"),
    }


# --- patients' side ----------------------------------------------------------------------


def patient_balance(conn: psycopg.Connection, book_id: uuid.UUID, patient_id: uuid.UUID) -> Decimal:
    row = conn.execute(
        "select coalesce(sum(p.amount), 0) from postings p join accounts a on a.id = p.account_id"
        " where p.book_id = %s and a.book_id = %s and a.name = %s"
        " and p.dimensions->>'patient' = %s",
        (book_id, book_id, RECEIVABLE_PATIENT, str(patient_id)),
    ).fetchone()
    assert row is not None
    return Decimal(row[0])


def create_patient_payment(
    conn: psycopg.Connection, book_id: uuid.UUID, ref: str, body: Mapping[str, Any], today: date
) -> Row:
    patient = get_patient(conn, book_id, ref)
    currency = body.get("currency") or get_book(conn, book_id).base_currency
    amount = Money.exact(body["amount"], currency)
    if amount.amount <= 0:
        raise InvalidBillingRequest("amount must be positive")
    method = body.get("method") or "card"
    if method not in PATIENT_PAYMENT_ACCOUNTS:
        raise InvalidBillingRequest(
            f"method {method!r}: use one of {', '.join(PATIENT_PAYMENT_ACCOUNTS)}"
        )
    # Serialise a patient's payments: each applies against what the last left owed.
    conn.execute(
        "select 1 from patients where book_id = %s and id = %s for update", (book_id, patient["id"])
    )
    owed = Money(patient_balance(conn, book_id, patient["id"]), currency)
    payment_id = uuid.uuid4()
    on = body.get("received_on") or today
    entry = patient_payment_entry(
        payment_id, patient["id"], amount, owed, PATIENT_PAYMENT_ACCOUNTS[method], on
    )
    posted = post_entry(conn, book_id, entry)
    # A payment counts toward the patient's active payment plan; paid in full, it completes.
    plan = _one(
        conn,
        "select id, total from payment_plans where book_id = %s and patient_id = %s"
        " and status = 'active' order by created_at desc limit 1",
        (book_id, patient["id"]),
    )
    row = _one(
        conn,
        "insert into patient_payments (book_id, id, patient_id, amount, currency, method,"
        " received_on, entry_id, plan_id) values (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " returning *",
        (
            book_id,
            payment_id,
            patient["id"],
            amount.amount,
            currency,
            method,
            on,
            posted.id,
            plan["id"] if plan else None,
        ),
    )
    assert row is not None
    if plan is not None:
        conn.execute(
            "update payment_plans set status = 'completed' where book_id = %(b)s and id = %(p)s"
            " and total <= (select sum(amount) from patient_payments where book_id = %(b)s"
            " and plan_id = %(p)s)",
            {"b": book_id, "p": plan["id"]},
        )
    return {**row, "balance": patient_balance(conn, book_id, patient["id"])}


# --- reports ----------------------------------------------------------------------------

AGING_BUCKETS = (
    ("0-30", 0, 30),
    ("31-60", 31, 60),
    ("61-90", 61, 90),
    ("91-120", 91, 120),
    ("over_120", 121, None),
)

_AR_BY_PAYER = """
select p.dimensions->>'payer' as payer, p.dimensions->>'encounter' as encounter,
       a.name as account, p.currency, sum(p.amount) as balance
  from postings p join accounts a on a.id = p.account_id
 where p.book_id = %(book)s and a.book_id = %(book)s and a.name = any(%(accounts)s)
   and p.effective_date <= %(as_of)s
 group by 1, 2, 3, 4
having sum(p.amount) <> 0
"""


AR_BASES = ("date_of_service", "submission")


def ar_by_payer(
    conn: psycopg.Connection, book_id: uuid.UUID, as_of: date, basis: str = "date_of_service"
) -> list[Row]:
    """Open payer AR per payer (patient AR as one row), aged from each encounter's date
    of service, or from its first claim's submission (`not_submitted` until then)."""
    if basis not in AR_BASES:
        raise InvalidBillingRequest(f"basis {basis!r}: use one of {', '.join(AR_BASES)}")
    rows = _all(
        conn,
        _AR_BY_PAYER,
        {"book": book_id, "as_of": as_of, "accounts": [RECEIVABLE_PAYER, RECEIVABLE_PATIENT]},
    )
    encounter_ids = sorted({r["encounter"] for r in rows if r["encounter"]})
    dates_sql = (
        "select id::text, date_of_service from encounters where book_id = %s and id = any(%s)"
        if basis == "date_of_service"
        else "select encounter_id::text, min(submitted_at)::date from claims where book_id = %s"
        " and encounter_id = any(%s) and submitted_at is not null group by 1"
    )
    dates: dict[str, date] = dict(
        conn.execute(dates_sql, (book_id, [uuid.UUID(e) for e in encounter_ids])).fetchall()
    )
    payers: dict[str, str] = dict(
        conn.execute("select id::text, name from payers where book_id = %s", (book_id,)).fetchall()
    )
    out: dict[tuple[str, str], Row] = {}
    for r in rows:
        patient_side = r["account"] == RECEIVABLE_PATIENT
        key = ("patient" if patient_side else r["payer"] or "", r["currency"])
        report = out.setdefault(
            key,
            {
                "payer": None if patient_side else key[0],
                "name": "Patients" if patient_side else payers.get(key[0], key[0]),
                "currency": r["currency"],
                "total": Decimal(0),
                "buckets": {name: Decimal(0) for name, _, _ in AGING_BUCKETS},
            },
        )
        served = dates.get(r["encounter"] or "")
        if served is None and basis == "submission" and not patient_side:
            bucket = "not_submitted"
            report["buckets"].setdefault(bucket, Decimal(0))
        else:
            age = (as_of - (served or as_of)).days
            bucket = next(
                (n for n, lo, hi in AGING_BUCKETS if age >= lo and (hi is None or age <= hi)),
                "0-30",  # dated after as_of
            )
        report["buckets"][bucket] += r["balance"]
        report["total"] += r["balance"]
    open_rows = [r for r in out.values() if r["total"] != 0]
    return sorted(open_rows, key=lambda x: (x["payer"] is None, x["name"]))


# --- PHI access log ----------------------------------------------------------------------


def log_phi(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    key_id: uuid.UUID | None,
    actor: str,
    patient_ids: Sequence[uuid.UUID],
    action: str,
    endpoint: str,
) -> None:
    """Append who saw (or changed) which patients' PHI, through which endpoint."""
    with conn.cursor() as cur:
        cur.executemany(
            "insert into phi_access_log (book_id, key_id, actor, patient_id, action, endpoint)"
            " values (%s, %s, %s, %s, %s, %s)",
            [(book_id, key_id, actor, p, action, endpoint) for p in dict.fromkeys(patient_ids)],
        )


def phi_log(conn: psycopg.Connection, book_id: uuid.UUID, patient_id: uuid.UUID) -> list[Row]:
    return _all(
        conn,
        "select at, key_id, actor, patient_id, action, endpoint from phi_access_log"
        " where book_id = %s and patient_id = %s order by id",
        (book_id, patient_id),
    )
