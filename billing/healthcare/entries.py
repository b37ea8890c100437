"""What healthcare events post (ACCOUNTING.md, Healthcare), as pure entry builders.

Conventions: no posting or memo carries PHI. Postings name opaque ids only —
`document` is `encounter:<id>` (charges), `claim:<id>` (a remittance's
adjudication of a claim), `remittance:<id>` (the payer's payment and PLB) or
`patient_payment:<id>`; `dimensions` carry `patient`, `payer`, `encounter`,
`claim`, and on adjustments the `group` and `carc` they post by. A claim's
paid, adjusted and patient-responsibility figures are sums over postings with
`dimensions->>'claim'`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from billing.healthcare.remittance import (
    RECEIVABLE_PATIENT,
    RECEIVABLE_PAYER,
    PostingLine,
    ProviderAdjustment,
    plb_account,
)
from billing.postings import BANK
from ledger.entries import JournalEntry, Posting, build_entry
from ledger.money import Money

PATIENT_SERVICES = "Income:Patient-Services"
REMITTANCE_CLEARING = "Assets:Clearing:Remittances"
REFUNDS_PAYABLE = "Liabilities:Refunds-Payable"  # patient credit balances

PATIENT_PAYMENT_ACCOUNTS = {
    "bank_transfer": BANK,
    "check": BANK,
    "cash": BANK,
    "card": "Assets:Clearing:Manual",
}


@dataclass(frozen=True, slots=True)
class Charge:
    line_no: int
    amount: Money


def charge_entry(
    encounter_id: object,
    patient_id: object,
    payer_id: object | None,
    date_of_service: date,
    charges: Sequence[Charge],
) -> JournalEntry | None:
    """Receivable:Payer (self-pay: Receivable:Patient) / Income:Patient-Services per line."""
    doc = f"encounter:{encounter_id}"
    base = {"patient": str(patient_id), "encounter": str(encounter_id)}
    if payer_id is not None:
        base["payer"] = str(payer_id)
    postings = [
        Posting(PATIENT_SERVICES, -c.amount, None, doc, {**base, "line": str(c.line_no)})
        for c in charges
        if not c.amount.is_zero()
    ]
    if not postings:
        return None
    total = sum((c.amount for c in charges), Money.zero(charges[0].amount.currency))
    receivable = RECEIVABLE_PAYER if payer_id is not None else RECEIVABLE_PATIENT
    postings.insert(0, Posting(receivable, total, None, doc, base))
    return build_entry(
        date_of_service,
        f"Charges, encounter {encounter_id}",
        postings,
        metadata={"kind": "encounter", "encounter": str(encounter_id)},
        idempotency_key=f"encounter:{encounter_id}:charges",
    )


def patient_to_payer_entry(
    claim_id: object,
    encounter_id: object,
    patient_id: object,
    payer_id: object,
    amount: Money,
    on: date,
) -> JournalEntry | None:
    """A secondary claim takes over what the earlier payer left to the patient:
    Receivable:Payer (the secondary) / Receivable:Patient."""
    if amount.is_zero():
        return None
    doc = f"claim:{claim_id}"
    dims = {
        "patient": str(patient_id),
        "payer": str(payer_id),
        "encounter": str(encounter_id),
        "claim": str(claim_id),
    }
    return build_entry(
        on,
        f"Claim {claim_id} to the next payer",
        [
            Posting(RECEIVABLE_PAYER, amount, None, doc, dims),
            Posting(RECEIVABLE_PATIENT, -amount, None, doc, dims),
        ],
        metadata={"kind": "claim_transfer", "claim": str(claim_id)},
        idempotency_key=f"claim:{claim_id}:transfer",
    )


@dataclass(frozen=True, slots=True)
class ClaimRef:
    claim_id: str
    control_number: str
    encounter_id: str
    patient_id: str
    payer_id: str


def claim_remittance_entry(
    remittance_id: object,
    index: int,
    claim: ClaimRef,
    lines: Sequence[PostingLine],
    currency: str,
    on: date,
    status: str,
) -> JournalEntry | None:
    """Each line debited to its account, credited to the payer's AR for this claim.
    The payer's payment lands in the remittance clearing account, which the
    remittance's own entry empties into the bank."""
    doc = f"claim:{claim.claim_id}"
    base = {
        "patient": claim.patient_id,
        "payer": claim.payer_id,
        "encounter": claim.encounter_id,
        "claim": claim.claim_id,
        "via": f"remittance:{remittance_id}",
    }
    postings: list[Posting] = []
    for line in lines:
        amount = Money(line.amount, currency)
        dims = dict(base)
        if line.group is not None and line.reason is not None:
            dims.update(group=line.group, carc=line.reason)
        account = REMITTANCE_CLEARING if line.group is None else line.account
        postings.append(Posting(account, amount, None, doc, dims))
        postings.append(Posting(RECEIVABLE_PAYER, -amount, None, doc, dims))
    if not postings:
        return None
    return build_entry(
        on,
        f"Remittance {remittance_id}, claim {claim.control_number}",
        postings,
        metadata={
            "kind": "claim_remittance",
            "claim": claim.claim_id,
            "remittance": str(remittance_id),
            "claim_status": status,
        },
        idempotency_key=f"remittance:{remittance_id}:claim:{index}",
    )


def remittance_payment_entry(
    remittance_id: object,
    trace_number: str,
    claims_paid: Decimal,
    payment_total: Decimal,
    provider_adjustments: Sequence[ProviderAdjustment],
    currency: str,
    on: date,
    cash_account: str = BANK,
) -> JournalEntry | None:
    """Bank (the BPR payment) and PLB adjustments / the clearing account (Σ claims paid).

    A positive PLB (a recoupment, a levy, a forward balance taken) kept part of
    the payment: it is debited to its reason's account (`plb_account`); a
    negative one (interest, a forward balance released) is credited there.
    What unmatched claims were paid stays in the clearing account as unapplied
    remittance cash until their claims are found.
    """
    doc = f"remittance:{remittance_id}"
    postings: list[Posting] = []
    if payment_total != 0:
        postings.append(
            Posting(
                cash_account, Money(payment_total, currency), None, doc, {"trace": trace_number}
            )
        )
    for plb in provider_adjustments:
        if plb.amount != 0:
            dims = {"plb": plb.reason, "reference": plb.reference}
            postings.append(
                Posting(plb_account(plb.reason), Money(plb.amount, currency), None, doc, dims)
            )
    if claims_paid != 0:
        postings.append(Posting(REMITTANCE_CLEARING, Money(-claims_paid, currency), None, doc, {}))
    if not postings:
        return None
    return build_entry(
        on,
        f"Remittance {remittance_id}, trace {trace_number}",
        postings,
        metadata={
            "kind": "remittance",
            "remittance": str(remittance_id),
            "bank_reference": trace_number,
        },
        idempotency_key=f"remittance:{remittance_id}:payment",
    )


def patient_payment_entry(
    payment_id: object,
    patient_id: object,
    amount: Money,
    owed: Money,
    cash_account: str,
    on: date,
) -> JournalEntry:
    """Cash / Receivable:Patient up to what the patient owes; the rest is a patient
    credit balance, held in Refunds-Payable (ACCOUNTING.md)."""
    doc = f"patient_payment:{payment_id}"
    dims = {"patient": str(patient_id), "via": f"patient_payment:{payment_id}"}
    applied = min(amount.amount, max(owed.amount, Decimal(0)))
    postings = [Posting(cash_account, amount, None, doc, dims)]
    if applied:
        postings.append(
            Posting(RECEIVABLE_PATIENT, Money(-applied, amount.currency), None, doc, dims)
        )
    if amount.amount - applied:
        left = Money(-(amount.amount - applied), amount.currency)
        postings.append(Posting(REFUNDS_PAYABLE, left, None, doc, dims))
    return build_entry(
        on,
        f"Patient payment {payment_id}",
        postings,
        metadata={"kind": "patient_payment", "patient_payment": str(payment_id)},
        idempotency_key=f"patient_payment:{payment_id}",
    )


CLAIM_TRANSITIONS: dict[str, frozenset[str]] = {
    "draft": frozenset({"submitted"}),
    "submitted": frozenset({"accepted", "rejected"}),
    "accepted": frozenset({"paid", "partially_paid", "denied"}),
    "rejected": frozenset({"submitted", "closed"}),
    "paid": frozenset({"closed", "appealed"}),
    "partially_paid": frozenset({"appealed", "closed"}),
    "denied": frozenset({"appealed", "closed"}),
    "appealed": frozenset({"paid", "partially_paid", "denied", "closed"}),
    "closed": frozenset(),
}


def may_move(current: str, new: str) -> bool:
    return new in CLAIM_TRANSITIONS.get(current, frozenset())


# An 835 adjudicating a claim proves the payer received and accepted it: a draft,
# rejected or submitted claim passes through these steps first, each one a move
# CLAIM_TRANSITIONS allows. A reversal (CLP02 22) is the payer's undo of its own
# adjudication: an adjudicated (or appealed) claim returns to accepted, awaiting
# the correction. No other move is implied.
IMPLIED_BY_REMITTANCE = ("submitted", "accepted")
REVERSIBLE = frozenset({"paid", "partially_paid", "denied", "appealed"})


def remittance_moves(current: str, new: str, *, reversal: bool = False) -> list[str] | None:
    """The statuses an 835 moves a claim through, in order, to `new` ([] when it
    stays where it is), or None when it may not get there: the file is refused."""
    if current == new:
        return []
    if reversal:
        return [new] if current in REVERSIBLE and new == "accepted" else None
    path: list[str] = []
    state = current
    for step in IMPLIED_BY_REMITTANCE:
        if may_move(state, new):
            break
        if may_move(state, step):
            path.append(step)
            state = step
    return [*path, new] if may_move(state, new) else None


def adjudicated_status(
    clp_status: str, paid: Decimal, patient_part: Decimal, denied: Decimal
) -> str:
    """The claim's status after an 835 (CLP02 4 is a denial; 22 a reversal)."""
    if clp_status == "22":
        return "accepted"  # reversed: waiting for the corrected adjudication
    if clp_status == "4" or (paid == 0 and patient_part == 0):
        return "denied"
    return "partially_paid" if denied != 0 else "paid"
