"""An X12 835 (005010X221A1) as a payer writes it: the demo's simulated payer and
the remittance benchmark use it. Amounts balance by construction at line, claim
and file level (charge − adjustments = paid), the rule the importer checks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

__all__ = ["ClaimPayment", "ServicePayment", "remittance_835"]


@dataclass(frozen=True)
class ServicePayment:
    code: str
    charge: Decimal
    paid: Decimal
    adjustments: Sequence[tuple[str, str, Decimal]]  # (group code, CARC, amount)


@dataclass(frozen=True)
class ClaimPayment:
    control_number: str  # CLP01, the patient control number the 837 carried
    status: str  # CLP02: 1 processed as primary, 4 denied, 22 reversal
    lines: Sequence[ServicePayment]


def _money(value: Decimal) -> str:
    return f"{value:.2f}"


def _cas(adjustments: Sequence[tuple[str, str, Decimal]]) -> list[str]:
    by_group: dict[str, list[str]] = {}
    for group, reason, amount in adjustments:
        if amount:
            by_group.setdefault(group, []).extend([reason, _money(amount), ""])
    return [f"CAS*{g}*" + "*".join(parts).rstrip("*") for g, parts in by_group.items()]


def remittance_835(
    claims: Sequence[ClaimPayment],
    *,
    trace: str,
    paid_on: date,
    payer: str,
    payee: str,
    npi: str,
    control: int = 1,
) -> str:
    total = sum((line.paid for c in claims for line in c.lines), Decimal(0))
    day = paid_on.strftime("%Y%m%d")
    segs = [
        f"BPR*I*{_money(total)}*C*ACH*CCP*01*999999999*DA*123456*1512345678**01*999988880*DA"
        f"*98765*{day}",
        f"TRN*1*{trace}*1512345678",
        f"N1*PR*{payer}",
        f"N1*PE*{payee}*XX*{npi}",
    ]
    for n, claim in enumerate(claims, 1):
        charge = sum((line.charge for line in claim.lines), Decimal(0))
        paid = sum((line.paid for line in claim.lines), Decimal(0))
        patient = sum(
            (a for line in claim.lines for g, _, a in line.adjustments if g == "PR"), Decimal(0)
        )
        segs += [
            f"LX*{n}",
            f"CLP*{claim.control_number}*{claim.status}*{_money(charge)}*{_money(paid)}"
            f"*{_money(patient)}*12*PAYER{claim.control_number}",
        ]
        for line in claim.lines:
            segs.append(f"SVC*HC:{line.code}*{_money(line.charge)}*{_money(line.paid)}**1")
            segs += _cas(line.adjustments)
    body = [f"ST*835*{control:04d}", *segs]
    body.append(f"SE*{len(body) + 1}*{control:04d}")
    isa = (
        "ISA*00*          *00*          *ZZ*PAYER          *ZZ*PROVIDER       "
        f"*{paid_on.strftime('%y%m%d')}*1200*^*00501*{control:09d}*0*P*:"
    )
    gs = f"GS*HP*PAYER*PROVIDER*{day}*1200*{control}*X*005010X221A1"
    return "~\n".join([isa, gs, *body, f"GE*1*{control}", f"IEA*1*{control:09d}"]) + "~\n"
