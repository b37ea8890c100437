"""A stored claim as an X12 837P interchange (the HTTP route and the CLI share it)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import psycopg

from adapters.x12 import x837
from billing.errors import DocumentState, InvalidBillingRequest
from billing.postgres import healthcare as store


def _address(data: x837.Address | dict[str, Any]) -> x837.Address:
    if isinstance(data, x837.Address):
        return data
    return x837.Address(data["line1"], data["city"], data["state"], data["postal_code"])


def claim_837(conn: psycopg.Connection, book_id: uuid.UUID, ref: str, now: datetime) -> str:
    """The claim as a new 837P interchange with the book's next control number (no
    state change: `submit_claim` stores and submits it)."""
    return _interchange(conn, book_id, ref, now)[0]


def _interchange(
    conn: psycopg.Connection, book_id: uuid.UUID, ref: str, now: datetime
) -> tuple[str, int]:
    data = store.claim_837_data(conn, book_id, ref)
    claim, encounter, patient = data["claim"], data["encounter"], data["patient"]
    provider, payer, coverage = data["provider"], data["payer"], data["coverage"]
    if not provider["address"] or not provider["tax_id"]:
        raise InvalidBillingRequest(
            "the billing provider needs an address and a tax_id before a claim can be sent"
        )
    billing = x837.Party(
        provider["name"],
        provider["first_name"],
        provider["npi"],
        provider["tax_id"],
        provider["taxonomy"],
        _address(provider["address"]),
    )
    rendering = data["rendering"]
    document = x837.Claim837(
        control_number=claim["control_number"],
        billing=billing,
        rendering=(
            x837.Party(
                rendering["name"],
                rendering["first_name"],
                rendering["npi"],
                taxonomy=rendering["taxonomy"],
            )
            if rendering
            else None
        ),
        payer_name=payer["name"],
        payer_id=payer["payer_id"],
        claim_filing_indicator=payer["claim_filing_indicator"],
        priority=coverage["priority"],
        member_id=coverage["member_id"],
        group_number=coverage["group_number"],
        patient_last=patient["last_name"],
        patient_first=patient["first_name"],
        patient_dob=patient["date_of_birth"],
        patient_gender=patient["gender"],
        patient_address=_address(patient["address"]),
        place_of_service=encounter["place_of_service"],
        diagnoses=encounter["diagnoses"],
        lines=[
            x837.ServiceLine(
                c["code"],
                c["modifiers"],
                Decimal(c["amount"]),
                Decimal(c["units"]),
                c["diagnosis_pointers"],
                encounter["date_of_service"],
            )
            for c in encounter["charges"]
        ],
        total=Decimal(claim["billed"]),
        prior=_prior(store.prior_payer_data(conn, book_id, claim)),
    )
    control = store.next_control_number(conn, book_id)
    return x837.interchange(document, control, now, provider["npi"], payer["payer_id"]), control


SUBMITTABLE = ("draft", "rejected")


def submit_claim(
    conn: psycopg.Connection, book_id: uuid.UUID, ref: str, now: datetime
) -> dict[str, Any]:
    """Submit a draft (or resubmit a rejected) claim: its 837P interchange is generated
    with the book's next control number and kept, and the claim becomes submitted.
    A claim moved to submitted by hand, without an interchange, gets one here too."""
    claim = store.get_claim(conn, book_id, ref)
    conn.execute(
        "select 1 from claims where book_id = %s and id = %s for update", (book_id, claim["id"])
    )
    claim = store.get_claim(conn, book_id, ref)
    by_hand = claim["status"] == "submitted" and claim["interchange"] is None
    if claim["status"] not in SUBMITTABLE and not by_hand:
        raise DocumentState(
            f"a {claim['status']} claim cannot be submitted (only a draft or a rejected one)"
        )
    text, control = _interchange(conn, book_id, ref, now)
    if not by_hand:
        store.set_claim_status(conn, book_id, ref, "submitted")
    conn.execute(
        "update claims set interchange = %s, interchange_control = %s"
        " where book_id = %s and id = %s",
        (text, control, book_id, claim["id"]),
    )
    return store.get_claim(conn, book_id, ref)


def submitted_837(conn: psycopg.Connection, book_id: uuid.UUID, ref: str) -> str:
    """The interchange the claim's last submission generated, unchanged."""
    claim = store.get_claim(conn, book_id, ref)
    if claim["interchange"] is None:
        raise DocumentState(
            f"claim {claim['control_number']} ({claim['status']}) has no 837P yet:"
            " submit it first (POST /v1/claims/{id}/submit)"
        )
    return str(claim["interchange"])


def _cas(rows: list[list[str]]) -> list[tuple[str, str, Decimal]]:
    return [(g, r, Decimal(a)) for g, r, a in rows]


def _prior(data: dict[str, Any] | None) -> x837.PriorPayer | None:
    """The earlier payer's adjudication as its 835 stated it (stored at import)."""
    if data is None:
        return None
    decided = data["claim"]["adjudication"]
    payer, coverage = data["payer"], data["coverage"]
    return x837.PriorPayer(
        priority=coverage["priority"],
        payer_name=payer["name"],
        payer_id=payer["payer_id"],
        claim_filing_indicator=payer["claim_filing_indicator"],
        member_id=coverage["member_id"],
        group_number=coverage["group_number"],
        paid=Decimal(decided["paid"]),
        adjudicated_on=date.fromisoformat(decided["date"]),
        adjustments=_cas(decided["adjustments"]),
        lines=[
            x837.LineAdjudication(
                Decimal(li["paid"]), Decimal(li["units"]), _cas(li["adjustments"])
            )
            for li in decided["lines"]
        ],
    )
