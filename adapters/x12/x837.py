"""Writing X12 837P (005010X222A1) professional claims.

One interchange per claim: ISA/GS envelopes whose control number (ISA13, GS06)
the caller draws from the book's sequence, one ST..SE transaction. The
patient is the subscriber (SBR02 = 18); the billing provider is an
organisation identified by NPI and EIN; the rendering provider (2310B) is
written only when it differs from the billing provider.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

ELEMENT, COMPONENT, REPETITION, TERMINATOR = "*", ":", "^", "~"
VERSION = "005010X222A1"
SBR_PAYER_RESPONSIBILITY = {"primary": "P", "secondary": "S", "tertiary": "T"}


@dataclass(frozen=True, slots=True)
class Address:
    line1: str
    city: str
    state: str
    postal_code: str


@dataclass(frozen=True, slots=True)
class Party:
    name: str  # organisation name, or a person's last name
    first_name: str | None = None  # set for a person
    npi: str | None = None
    tax_id: str | None = None
    taxonomy: str | None = None
    address: Address | None = None


@dataclass(frozen=True, slots=True)
class ServiceLine:
    code: str
    modifiers: Sequence[str]
    amount: Decimal
    units: Decimal
    pointers: Sequence[int]
    date_of_service: date


@dataclass(frozen=True, slots=True)
class LineAdjudication:
    paid: Decimal
    units: Decimal
    adjustments: Sequence[tuple[str, str, Decimal]]  # (group, CARC, amount)


@dataclass(frozen=True, slots=True)
class PriorPayer:
    """An earlier payer's adjudication, carried by a secondary claim (loops 2320/2430)."""

    priority: str
    payer_name: str
    payer_id: str
    claim_filing_indicator: str
    member_id: str
    group_number: str | None
    paid: Decimal
    adjudicated_on: date
    adjustments: Sequence[tuple[str, str, Decimal]]  # claim level
    lines: Sequence[LineAdjudication]  # one per service line, or none


@dataclass(frozen=True, slots=True)
class Claim837:
    control_number: str  # CLM01, echoed back as CLP01 in the 835
    billing: Party
    rendering: Party | None
    payer_name: str
    payer_id: str
    claim_filing_indicator: str  # SBR09: CI commercial, MB Medicare B, MC Medicaid …
    priority: str  # primary / secondary / tertiary
    member_id: str
    group_number: str | None
    patient_last: str
    patient_first: str
    patient_dob: date
    patient_gender: str  # M, F, U
    patient_address: Address
    place_of_service: str
    diagnoses: Sequence[str]  # ICD-10-CM without dots
    lines: Sequence[ServiceLine]
    total: Decimal
    prior: PriorPayer | None = None


def _clean(value: str) -> str:
    """Delimiters cannot appear in data; X12 basic character set in upper case."""
    text = value.upper()
    for ch in (ELEMENT, COMPONENT, REPETITION, TERMINATOR, "\r", "\n"):
        text = text.replace(ch, " ")
    return text.strip()


def _amount(value: Decimal) -> str:
    text = f"{value.quantize(Decimal('0.01')):f}"
    return text[:-3] if text.endswith(".00") else text.rstrip("0")


def _units(value: Decimal) -> str:
    text = f"{value.normalize():f}"
    return text


def _seg(*elements: str) -> str:
    parts = list(elements)
    while parts and parts[-1] == "":
        parts.pop()
    return ELEMENT.join(parts) + TERMINATOR


def _address(address: Address) -> list[str]:
    return [
        _seg("N3", _clean(address.line1)),
        _seg(
            "N4", _clean(address.city), _clean(address.state), address.postal_code.replace("-", "")
        ),
    ]


def _name(qualifier: str, party: Party, id_qualifier: str, identifier: str) -> str:
    if party.first_name is None:
        return _seg(
            "NM1", qualifier, "2", _clean(party.name), "", "", "", "", id_qualifier, identifier
        )
    return _seg(
        "NM1",
        qualifier,
        "1",
        _clean(party.name),
        _clean(party.first_name),
        "",
        "",
        "",
        id_qualifier,
        identifier,
    )


def _cas(adjustments: Sequence[tuple[str, str, Decimal]]) -> list[str]:
    """CAS segments: one per group code, at most six (reason, amount) pairs each."""
    groups: dict[str, list[tuple[str, Decimal]]] = {}
    for group, reason, amount in adjustments:
        groups.setdefault(group, []).append((reason, amount))
    segs = []
    for group, pairs in groups.items():
        for start in range(0, len(pairs), 6):
            elements = [group]
            for reason, amount in pairs[start : start + 6]:
                elements += [reason, _amount(amount), ""]
            segs.append(_seg("CAS", *elements))
    return segs


def _other_payer(claim: Claim837, prior: PriorPayer) -> list[str]:
    """Loop 2320 (other subscriber: the prior payer's adjudication) with 2330A/2330B."""
    line_level = len(prior.lines) == len(claim.lines)
    adjustments = list(prior.adjustments)
    if not line_level:
        adjustments += [a for line in prior.lines for a in line.adjustments]
    return [
        _seg(
            "SBR",
            SBR_PAYER_RESPONSIBILITY[prior.priority],
            "18",
            _clean(prior.group_number or ""),
            "",
            "",
            "",
            "",
            "",
            prior.claim_filing_indicator,
        ),
        *_cas(adjustments),
        _seg("AMT", "D", _amount(prior.paid)),
        _seg("OI", "", "", "Y", "", "", "Y"),
        _seg(
            "NM1",
            "IL",
            "1",
            _clean(claim.patient_last),
            _clean(claim.patient_first),
            "",
            "",
            "",
            "MI",
            _clean(prior.member_id),
        ),
        _seg("NM1", "PR", "2", _clean(prior.payer_name), "", "", "", "", "PI", prior.payer_id),
    ]


def _line_adjudication(prior: PriorPayer, line: ServiceLine, n: int) -> list[str]:
    """Loop 2430: what the prior payer paid and adjusted on this line."""
    decided = prior.lines[n]
    procedure = COMPONENT.join(("HC", line.code, *line.modifiers))
    return [
        _seg("SVD", prior.payer_id, _amount(decided.paid), procedure, "", _units(decided.units)),
        *_cas(decided.adjustments),
        _seg("DTP", "573", "D8", prior.adjudicated_on.strftime("%Y%m%d")),
    ]


def transaction(claim: Claim837, created: datetime) -> list[str]:
    """The ST..SE segments of one claim (SE's count included)."""
    billing = claim.billing
    if billing.address is None or billing.npi is None or billing.tax_id is None:
        raise ValueError("the billing provider needs an NPI, a tax id and an address")
    segs = [
        _seg("ST", "837", "0001", VERSION),
        _seg(
            "BHT",
            "0019",
            "00",
            _clean(claim.control_number),
            created.strftime("%Y%m%d"),
            created.strftime("%H%M"),
            "CH",
        ),
        # 1000A submitter and 1000B receiver: the practice submits straight to the payer.
        _seg("NM1", "41", "2", _clean(billing.name), "", "", "", "", "46", billing.tax_id),
        _seg("PER", "IC", _clean(billing.name), "TE", "0000000000"),
        _seg("NM1", "40", "2", _clean(claim.payer_name), "", "", "", "", "46", claim.payer_id),
        # 2000A billing provider
        _seg("HL", "1", "", "20", "1"),
    ]
    if billing.taxonomy:
        segs.append(_seg("PRV", "BI", "PXC", billing.taxonomy))
    segs.append(_name("85", billing, "XX", billing.npi))
    segs += _address(billing.address)
    segs.append(_seg("REF", "EI", billing.tax_id))
    # 2000B subscriber (the patient), 2010BA, 2010BB payer
    segs += [
        _seg("HL", "2", "1", "22", "0"),
        _seg(
            "SBR",
            SBR_PAYER_RESPONSIBILITY[claim.priority],
            "18",
            _clean(claim.group_number or ""),
            "",
            "",
            "",
            "",
            "",
            claim.claim_filing_indicator,
        ),
        _seg(
            "NM1",
            "IL",
            "1",
            _clean(claim.patient_last),
            _clean(claim.patient_first),
            "",
            "",
            "",
            "MI",
            _clean(claim.member_id),
        ),
        *_address(claim.patient_address),
        _seg("DMG", "D8", claim.patient_dob.strftime("%Y%m%d"), claim.patient_gender),
        _seg("NM1", "PR", "2", _clean(claim.payer_name), "", "", "", "", "PI", claim.payer_id),
        # 2300 claim
        _seg(
            "CLM",
            _clean(claim.control_number),
            _amount(claim.total),
            "",
            "",
            COMPONENT.join((claim.place_of_service, "B", "1")),
            "Y",
            "A",
            "Y",
            "Y",
        ),
        _seg(
            "HI",
            *(
                COMPONENT.join(("ABK" if i == 0 else "ABF", code))
                for i, code in enumerate(claim.diagnoses)
            ),
        ),
    ]
    rendering = claim.rendering
    if rendering is not None and rendering.npi and rendering.npi != billing.npi:
        segs.append(_name("82", rendering, "XX", rendering.npi))
        if rendering.taxonomy:
            segs.append(_seg("PRV", "PE", "PXC", rendering.taxonomy))
    prior = claim.prior
    if prior is not None:
        segs += _other_payer(claim, prior)
    for n, line in enumerate(claim.lines, 1):
        procedure = COMPONENT.join(("HC", line.code, *line.modifiers))
        segs += [
            _seg("LX", str(n)),
            _seg(
                "SV1",
                procedure,
                _amount(line.amount),
                "UN",
                _units(line.units),
                "",
                "",
                COMPONENT.join(str(p) for p in line.pointers),
            ),
            _seg("DTP", "472", "D8", line.date_of_service.strftime("%Y%m%d")),
        ]
        if prior is not None and len(prior.lines) == len(claim.lines):
            segs += _line_adjudication(prior, line, n - 1)
    segs.append(_seg("SE", str(len(segs) + 1), "0001"))
    return segs


def interchange(
    claim: Claim837,
    control: int,
    created: datetime,
    sender_id: str,
    receiver_id: str,
    usage: str = "P",
) -> str:
    """ISA/GS/ST…SE/GE/IEA; `control` (1..999999999) is ISA13 and GS06."""
    if not 1 <= control <= 999_999_999:
        raise ValueError("an interchange control number has nine digits")
    isa = _seg(
        "ISA",
        "00",
        " " * 10,
        "00",
        " " * 10,
        "ZZ",
        f"{_clean(sender_id)[:15]:<15}",
        "ZZ",
        f"{_clean(receiver_id)[:15]:<15}",
        created.strftime("%y%m%d"),
        created.strftime("%H%M"),
        REPETITION,
        "00501",
        f"{control:09d}",
        "0",
        usage,
        COMPONENT,
    )
    gs = _seg(
        "GS",
        "HC",
        _clean(sender_id),
        _clean(receiver_id),
        created.strftime("%Y%m%d"),
        created.strftime("%H%M"),
        str(control),
        "X",
        VERSION,
    )
    body = transaction(claim, created)
    tail = [_seg("GE", "1", str(control)), _seg("IEA", "1", f"{control:09d}")]
    return "\n".join([isa, gs, *body, *tail]) + "\n"
