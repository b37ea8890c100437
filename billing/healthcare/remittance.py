"""An 835 remittance as the rules see it: its balancing and what each claim posts.

ACCOUNTING.md, Healthcare: the file must balance before anything posts —
line: charge − adjustments = paid; claim: charge − all adjustments (claim and
line level) = paid; file: Σ claims paid − provider adjustments (PLB) = the
BPR payment total. Adjustments post by (group code, CARC), never by CARC
alone: CO is a write-off to Contractual-Adjustments (Denials for the denial
CARCs), PR moves from payer AR to patient AR, OA and PI follow
`AdjustmentRules` (default: written off to Contractual-Adjustments, as the
payer reduced what it owes under its contract or a prior payer's
adjudication). PLB adjustments post by reason (`plb_account`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from ledger.errors import LedgerError

RECEIVABLE_PAYER = "Assets:Receivable:Payer"
RECEIVABLE_PATIENT = "Assets:Receivable:Patient"
CONTRACTUAL = "Income:Contra:Contractual-Adjustments"
DENIALS = "Income:Contra:Denials"
# PLB (provider-level adjustments) never touch a claim's AR; each kind posts to its
# own account (`plb_account`). Interest the payer adds (L6) is income; a forward
# balance (FB) is what the payer carries from one remittance to a later one, so it
# sits in a liability that nets to zero when the payer takes (or releases) it;
# levies, recoupments and the rest are provider adjustments.
PAYER_INTEREST = "Income:Payer-Interest"
FORWARD_BALANCES = "Liabilities:Payer-Forward-Balances"
PROVIDER_ADJUSTMENTS = "Income:Contra:Provider-Adjustments"
PLB_ACCOUNTS = {"L6": PAYER_INTEREST, "FB": FORWARD_BALANCES}
REMITTANCE_CASH = "Assets:Bank:Operating"

GROUPS = ("CO", "PR", "OA", "PI", "CR")
# CARCs that say the service was not covered or not payable at all: a CO
# write-off for one of these is a denial, not a contractual allowance.
DENIAL_CARCS = frozenset(
    {
        "4",
        "5",
        "6",
        "7",
        "8",
        "9",
        "11",
        "16",
        "18",
        "26",
        "27",
        "29",
        "31",
        "50",
        "96",
        "97",
        "109",
        "119",
        "151",
        "167",
        "197",
        "204",
        "236",
        "251",
    }
)

REVERSAL_STATUS = "22"


class UnbalancedRemittance(LedgerError):
    """The 835 does not add up at one level: refused whole, nothing written."""

    code = "unbalanced_remittance"
    status = 422


class InvalidRemittance(LedgerError):
    code = "invalid_remittance"
    status = 422


@dataclass(frozen=True, slots=True)
class Adjustment:
    group: str  # CAS01: CO, PR, OA, PI (CR in 4010 files)
    reason: str  # CAS02: the CARC
    amount: Decimal


@dataclass(frozen=True, slots=True)
class ServiceLine:
    code: str
    modifiers: tuple[str, ...]
    charge: Decimal
    paid: Decimal
    units: Decimal | None
    adjustments: tuple[Adjustment, ...] = ()


@dataclass(frozen=True, slots=True)
class ClaimPayment:
    control_number: str  # CLP01: our claim's patient control number (CLM01)
    status: str  # CLP02
    charge: Decimal
    paid: Decimal
    patient_responsibility: Decimal | None
    payer_claim_number: str
    adjustments: tuple[Adjustment, ...] = ()  # claim level
    lines: tuple[ServiceLine, ...] = ()

    def all_adjustments(self) -> list[Adjustment]:
        return [*self.adjustments, *(a for line in self.lines for a in line.adjustments)]

    def adjusted(self, *groups: str) -> Decimal:
        return sum((a.amount for a in self.all_adjustments() if a.group in groups), Decimal(0))


@dataclass(frozen=True, slots=True)
class ProviderAdjustment:
    reason: str  # PLB03-1, e.g. L6 interest, WO overpayment recovery, FB forward balance
    reference: str
    amount: Decimal  # positive reduces the payment, negative adds to it


@dataclass(frozen=True, slots=True)
class Remittance:
    trace_number: str  # TRN02: the check or EFT trace
    originator: str  # TRN03: the payer's identifier
    payment_total: Decimal  # BPR02
    method: str  # BPR04: ACH, CHK, NON, …
    paid_on: date | None  # BPR16
    payer_name: str
    claims: tuple[ClaimPayment, ...]
    provider_adjustments: tuple[ProviderAdjustment, ...] = ()

    def claims_paid(self) -> Decimal:
        return sum((c.paid for c in self.claims), Decimal(0))

    def provider_adjusted(self) -> Decimal:
        return sum((p.amount for p in self.provider_adjustments), Decimal(0))


def plb_account(reason: str) -> str:
    """Where a PLB of this reason code (PLB03-1) posts: interest (L6), forward
    balance (FB), else provider adjustments (levies LE, recoupments WO, …)."""
    return PLB_ACCOUNTS.get(reason, PROVIDER_ADJUSTMENTS)


def _sum(adjustments: Sequence[Adjustment]) -> Decimal:
    return sum((a.amount for a in adjustments), Decimal(0))


def adjudication(claim: ClaimPayment, payer_id: str, on: date) -> dict[str, object]:
    """What a payer decided, as the next payer's claim (837 loops 2320/2430) says it."""

    def cas(adjustments: Sequence[Adjustment]) -> list[list[str]]:
        return [[a.group, a.reason, str(a.amount)] for a in adjustments]

    return {
        "payer_id": payer_id,
        "date": on.isoformat(),
        "paid": str(claim.paid),
        "adjustments": cas(claim.adjustments),
        "lines": [
            {
                "code": line.code,
                "modifiers": list(line.modifiers),
                "paid": str(line.paid),
                "units": str(line.units or 1),
                "adjustments": cas(line.adjustments),
            }
            for line in claim.lines
        ],
    }


def check_balance(remittance: Remittance) -> None:
    """Raise UnbalancedRemittance naming the first level (line, claim, file) that fails."""
    for claim in remittance.claims:
        for n, line in enumerate(claim.lines, 1):
            adjusted = _sum(line.adjustments)
            if line.charge - adjusted != line.paid:
                raise UnbalancedRemittance(
                    f"claim {claim.control_number!r} service line {n} ({line.code}) does not"
                    f" balance: charge {line.charge} − adjustments {adjusted}"
                    f" = {line.charge - adjusted}, but paid {line.paid}",
                    level="line",
                    claim=claim.control_number,
                    line=n,
                    charge=str(line.charge),
                    adjusted=str(adjusted),
                    paid=str(line.paid),
                )
        adjusted = _sum(claim.all_adjustments())
        if claim.charge - adjusted != claim.paid:
            raise UnbalancedRemittance(
                f"claim {claim.control_number!r} does not balance: charge {claim.charge}"
                f" − adjustments {adjusted} = {claim.charge - adjusted}, but paid {claim.paid}",
                level="claim",
                claim=claim.control_number,
                charge=str(claim.charge),
                adjusted=str(adjusted),
                paid=str(claim.paid),
            )
    paid, plb = remittance.claims_paid(), remittance.provider_adjusted()
    if paid - plb != remittance.payment_total:
        raise UnbalancedRemittance(
            f"the file does not balance: claims paid {paid} − provider adjustments {plb}"
            f" = {paid - plb}, but the payment total (BPR02) is {remittance.payment_total}",
            level="file",
            claims_paid=str(paid),
            provider_adjustments=str(plb),
            payment_total=str(remittance.payment_total),
        )


@dataclass(frozen=True, slots=True)
class AdjustmentRules:
    """Where each (group, CARC) posts. `overrides` keys are `GROUP-CARC` or a bare
    `GROUP` (every CARC of that group); the most specific wins. PR always goes to
    the patient: it is what the patient owes, not a choice of the book."""

    other: str = CONTRACTUAL  # OA and PI unless overridden
    overrides: Mapping[str, str] = field(default_factory=dict)

    def account(self, group: str, reason: str) -> str:
        if group == "PR":
            return RECEIVABLE_PATIENT
        specific = self.overrides.get(f"{group}-{reason}") or self.overrides.get(group)
        if specific:
            return specific
        if group == "CO":
            return DENIALS if reason in DENIAL_CARCS else CONTRACTUAL
        if group in ("OA", "PI", "CR"):
            return self.other
        raise InvalidRemittance(f"unknown claim adjustment group code {group!r}")


@dataclass(frozen=True, slots=True)
class PostingLine:
    """One debit of a claim's remittance against Receivable:Payer (or its reverse)."""

    account: str
    amount: Decimal
    group: str | None  # None for the payer's payment
    reason: str | None


# OA-23, "the impact of prior payer(s) adjudication": on a secondary or tertiary
# claim it is what the earlier payers already settled (and posted), so it moves nothing.
PRIOR_PAYER = ("OA", "23")


def claim_postings(
    claim: ClaimPayment, rules: AdjustmentRules, *, secondary: bool = False
) -> list[PostingLine]:
    """Per (group, CARC) in the file's order, summed over claim and line level; then
    the payment. Each line is debited to its account and credited to the payer's AR.
    A reversal (CLP02 = 22) carries negated amounts, so the same rule reverses.
    On a secondary claim the prior payers' share (OA-23) posts nothing."""
    sums: dict[tuple[str, str], Decimal] = {}
    for adjustment in claim.all_adjustments():
        key = (adjustment.group, adjustment.reason)
        if secondary and key == PRIOR_PAYER:
            continue
        sums[key] = sums.get(key, Decimal(0)) + adjustment.amount
    lines = [
        PostingLine(rules.account(group, reason), amount, group, reason)
        for (group, reason), amount in sums.items()
        if amount != 0
    ]
    if claim.paid != 0:
        lines.append(PostingLine(REMITTANCE_CASH, claim.paid, None, None))
    return lines
