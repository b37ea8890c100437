"""Reading X12 835 (005010X221A1) health care claim payment/advice files.

Separators come from the ISA header when there is one (element separator at
byte 3, component separator ISA16, segment terminator after it); a bare
ST..SE transaction uses `*`, `:` and `~`. Payers write SVC composites with
`>` while declaring `:` (two of the shared fixtures do), so SVC01 is split on
either. Only what posting needs is read: BPR, TRN, the payer's N1, CLP, CAS,
SVC and PLB.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from billing.healthcare.remittance import (
    Adjustment,
    ClaimPayment,
    InvalidRemittance,
    ProviderAdjustment,
    Remittance,
    ServiceLine,
)


def segments(text: str) -> tuple[list[list[str]], str]:
    """The file's segments split into elements, and its component separator."""
    body = text.lstrip("\ufeff \r\n\t")
    element, component, terminator = "*", ":", "~"
    if body.startswith("ISA"):
        if len(body) < 106:
            raise InvalidRemittance("the ISA header is shorter than its fixed 106 characters")
        element, component, terminator = body[3], body[104], body[105]
    out: list[list[str]] = []
    for raw in body.split(terminator):
        seg = raw.strip("\r\n\t ")
        if seg:
            out.append(seg.split(element))
    return out, component


def _amount(value: str, what: str) -> Decimal:
    if value == "":
        return Decimal(0)
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise InvalidRemittance(f"{what} {value!r} is not an amount") from None
    if not amount.is_finite():
        raise InvalidRemittance(f"{what} {value!r} is not an amount")
    return amount


def _at(seg: list[str], i: int) -> str:
    return seg[i].strip() if len(seg) > i else ""


def _date(value: str) -> date | None:
    try:
        return datetime.strptime(value, "%Y%m%d").date() if value else None
    except ValueError:
        return None


def _cas(seg: list[str]) -> list[Adjustment]:
    group = _at(seg, 1)
    found = []
    for i in range(2, 20, 3):  # up to six (reason, amount, quantity) triplets
        reason = _at(seg, i)
        if reason:
            found.append(
                Adjustment(group, reason, _amount(_at(seg, i + 1), f"CAS {group}-{reason}"))
            )
    return found


class _Claim:
    def __init__(self, seg: list[str]) -> None:
        self.seg = seg
        self.adjustments: list[Adjustment] = []
        self.lines: list[tuple[list[str], list[Adjustment]]] = []

    def build(self, component: str) -> ClaimPayment:
        s = self.seg
        pr = _at(s, 5)
        lines = []
        for svc, adjustments in self.lines:
            parts = re.split(rf"[{re.escape(component)}:>]", _at(svc, 1))
            units = _at(svc, 5)
            lines.append(
                ServiceLine(
                    code=parts[1] if len(parts) > 1 else parts[0],
                    modifiers=tuple(p for p in parts[2:] if p),
                    charge=_amount(_at(svc, 2), "SVC02"),
                    paid=_amount(_at(svc, 3), "SVC03"),
                    units=_amount(units, "SVC05") if units else None,
                    adjustments=tuple(adjustments),
                )
            )
        if not _at(s, 1):
            raise InvalidRemittance("a CLP segment has no patient control number (CLP01)")
        return ClaimPayment(
            control_number=_at(s, 1),
            status=_at(s, 2),
            charge=_amount(_at(s, 3), "CLP03"),
            paid=_amount(_at(s, 4), "CLP04"),
            patient_responsibility=_amount(pr, "CLP05") if pr else None,
            payer_claim_number=_at(s, 7),
            adjustments=tuple(self.adjustments),
            lines=tuple(lines),
        )


def parse_835(text: str) -> list[Remittance]:
    """Every 835 transaction (ST..SE) of the file, in order."""
    segs, component = segments(text)
    found: list[Remittance] = []
    current: dict[str, object] | None = None
    claims: list[_Claim] = []
    plbs: list[ProviderAdjustment] = []

    def close() -> None:
        assert current is not None
        if "total" not in current:
            raise InvalidRemittance("an 835 transaction has no BPR segment")
        if "trace" not in current:
            raise InvalidRemittance("an 835 transaction has no TRN reassociation trace")
        found.append(
            Remittance(
                trace_number=str(current["trace"]),
                originator=str(current.get("originator", "")),
                payment_total=current["total"],  # type: ignore[arg-type]
                method=str(current.get("method", "")),
                paid_on=current.get("paid_on"),  # type: ignore[arg-type]
                payer_name=str(current.get("payer", "")),
                claims=tuple(c.build(component) for c in claims),
                provider_adjustments=tuple(plbs),
            )
        )

    for seg in segs:
        tag = seg[0].strip()
        if tag == "ST":
            if _at(seg, 1) != "835":
                raise InvalidRemittance(f"transaction set {_at(seg, 1)!r} is not an 835")
            current, claims, plbs = {}, [], []
            continue
        if current is None:
            if tag in ("ISA", "GS", "GE", "IEA"):
                continue
            raise InvalidRemittance(f"segment {tag} outside an ST..SE transaction")
        if tag == "BPR":
            current["total"] = _amount(_at(seg, 2), "BPR02")
            current["method"] = _at(seg, 4)
            current["paid_on"] = _date(_at(seg, 16))
        elif tag == "TRN":
            current["trace"] = _at(seg, 2)
            current["originator"] = _at(seg, 3)
        elif tag == "N1" and _at(seg, 1) == "PR":
            current["payer"] = _at(seg, 2)
        elif tag == "CLP":
            claims.append(_Claim(seg))
        elif tag == "CAS":
            if not claims:
                raise InvalidRemittance("a CAS segment comes before any CLP claim")
            claim = claims[-1]
            target = claim.lines[-1][1] if claim.lines else claim.adjustments
            target.extend(_cas(seg))
        elif tag == "SVC":
            if not claims:
                raise InvalidRemittance("an SVC segment comes before any CLP claim")
            claims[-1].lines.append((seg, []))
        elif tag == "PLB":
            for i in range(3, 15, 2):
                composite = _at(seg, i)
                if composite:
                    parts = re.split(rf"[{re.escape(component)}:>]", composite)
                    reason, reference = parts[0], (parts[1] if len(parts) > 1 else "")
                    plbs.append(
                        ProviderAdjustment(reason, reference, _amount(_at(seg, i + 1), "PLB"))
                    )
        elif tag == "SE":
            close()
            current = None
    if current is not None:
        raise InvalidRemittance("the file ends inside an 835 transaction (no SE)")
    if not found:
        raise InvalidRemittance("the file holds no 835 transaction")
    return found
