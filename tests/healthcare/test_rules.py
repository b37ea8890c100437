"""Healthcare's pure rules: code forms, the 835's balancing and what each
(group, CARC) posts, the 835 reader on the shared fixtures, the 837P writer
validated by pyx12."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from adapters.x12 import x837
from adapters.x12.x835 import parse_835
from billing.errors import InvalidBillingRequest
from billing.healthcare import codes
from billing.healthcare.remittance import (
    CONTRACTUAL,
    DENIALS,
    RECEIVABLE_PATIENT,
    REMITTANCE_CASH,
    AdjustmentRules,
    InvalidRemittance,
    UnbalancedRemittance,
    check_balance,
    claim_postings,
)
from tests.healthcare.x12_samples import fixture_835s, fixture_837s, worked_claim_835

D = Decimal


def test_npi_check_digit() -> None:
    assert codes.npi("1234567893") == "1234567893"
    for bad in ("1234567890", "123456789", "12345678931", "abcdefghij"):
        with pytest.raises(InvalidBillingRequest):
            codes.npi(bad)


@pytest.mark.parametrize("code", ["J02.9", "j029", "S72.001A", "Z00.00", "E11.65"])
def test_icd10_forms_accepted(code: str) -> None:
    assert "." not in codes.diagnosis(code)


@pytest.mark.parametrize("code", ["U07", "J0", "123.4", "J02.99999", "99213", ""])
def test_icd10_forms_refused(code: str) -> None:
    with pytest.raises(InvalidBillingRequest):
        codes.diagnosis(code)


def test_diagnoses_at_most_twelve_and_pointers_in_range() -> None:
    twelve = [f"Z00.{n:02d}" for n in range(12)]
    assert len(codes.diagnoses(twelve)) == 12
    with pytest.raises(InvalidBillingRequest, match="at most 12"):
        codes.diagnoses([*twelve, "J02.9"])
    assert codes.pointers([1, 3], 3) == [1, 3]
    for bad in ([0], [4], [], [1, 2, 3, 1, 2]):
        with pytest.raises(InvalidBillingRequest):
            codes.pointers(bad, 3)


def test_procedure_and_modifier_forms() -> None:
    assert codes.procedure("99213") == "99213"
    assert codes.procedure("j3490") == "J3490"
    assert codes.procedure("0001F") == "0001F"
    for bad in ("9921", "992133", "Z1234", "ABCDE"):
        with pytest.raises(InvalidBillingRequest):
            codes.procedure(bad)
    assert codes.modifiers(["25", "lt"]) == ["25", "LT"]
    with pytest.raises(InvalidBillingRequest):
        codes.modifiers(["2"])


def test_worked_claim_posts_by_group_and_carc() -> None:
    (remittance,) = parse_835(worked_claim_835("C1"))
    check_balance(remittance)
    lines = [
        (p.account, p.amount, p.group, p.reason)
        for p in claim_postings(remittance.claims[0], AdjustmentRules())
    ]
    assert lines == [
        (CONTRACTUAL, D("80.00"), "CO", "45"),
        (RECEIVABLE_PATIENT, D("40.00"), "PR", "1"),
        (RECEIVABLE_PATIENT, D("24.00"), "PR", "2"),
        (REMITTANCE_CASH, D("56.00"), None, None),
    ]


def test_group_code_decides_not_the_carc() -> None:
    rules = AdjustmentRules()
    assert rules.account("CO", "45") == CONTRACTUAL
    assert rules.account("PR", "45") == RECEIVABLE_PATIENT
    assert rules.account("CO", "29") == DENIALS  # timely filing: a denial
    assert rules.account("OA", "23") == CONTRACTUAL  # the stated default
    custom = AdjustmentRules(overrides={"OA-23": "Income:Other", "PI": "Income:Payer"})
    assert custom.account("OA", "23") == "Income:Other"
    assert custom.account("OA", "94") == CONTRACTUAL
    assert custom.account("PI", "1") == "Income:Payer"
    with pytest.raises(InvalidRemittance):
        rules.account("XX", "1")


def test_each_level_that_does_not_balance_is_named() -> None:
    (ok,) = parse_835(worked_claim_835("C1"))
    claim = ok.claims[0]
    bad_line = dataclasses.replace(
        claim, lines=(dataclasses.replace(claim.lines[0], paid=D("37.00")), claim.lines[1])
    )
    with pytest.raises(UnbalancedRemittance) as line:
        check_balance(dataclasses.replace(ok, claims=(bad_line,)))
    assert line.value.fields["level"] == "line" and line.value.fields["paid"] == "37.00"
    with pytest.raises(UnbalancedRemittance) as whole:
        check_balance(dataclasses.replace(ok, claims=(dataclasses.replace(claim, paid=D(57)),)))
    assert whole.value.fields["level"] == "claim"
    with pytest.raises(UnbalancedRemittance) as file:
        check_balance(dataclasses.replace(ok, payment_total=D("55.00")))
    assert file.value.fields == {
        "level": "file",
        "claims_paid": "56.00",
        "provider_adjustments": "0",
        "payment_total": "55.00",
    }


# What each shared 835 says (read by hand from the files): claims, paid, CO/OA/PI, PR, PLB.
FIXTURE_TALLIES = {
    "edi-835-parser__blue_cross_nc_sample.txt": (1, "1922.86", "34.6", "142.54", "0"),
    "edi-835-parser__emedny_sample.txt": (3, "45.75", "56.75", "0", "0"),
    "linuxforhealth__cob-contractural-adjustment.835": (1, "34.00", "507.00", "0", "0"),
    "linuxforhealth__managed-care.835": (2, "945.00", "155.00", "900.00", "0"),
    "linuxforhealth__medicare-part-a.835": (2, "149998.73", "76368.24", "0", "-1.27"),
    "linuxforhealth__secondary-payment.835": (2, "1222.00", "9633.14", "220.00", "0"),
    "stupidedi__era-sample.edi": (1, "132", "94", "0", "0"),
}


@pytest.mark.parametrize("path", fixture_835s(), ids=lambda p: p.name)
def test_every_shared_835_parses_balances_and_tallies(path: Path) -> None:
    (remittance,) = parse_835(path.read_text(encoding="latin-1"))
    check_balance(remittance)
    count, paid, adjusted, patient, plb = FIXTURE_TALLIES[path.name]
    claims = remittance.claims
    assert len(claims) == count
    assert remittance.claims_paid() == D(paid)
    assert sum((c.adjusted("CO", "OA", "PI") for c in claims), D(0)) == D(adjusted)
    assert sum((c.adjusted("PR") for c in claims), D(0)) == D(patient)
    assert remittance.provider_adjusted() == D(plb)
    assert remittance.claims_paid() - remittance.provider_adjusted() == remittance.payment_total


def test_svc_composites_split_on_either_separator() -> None:
    text = (Path(fixture_835s()[0].parent) / "linuxforhealth__secondary-payment.835").read_text()
    (remittance,) = parse_835(text)
    line = remittance.claims[1].lines[0]
    assert (line.code, line.modifiers) == ("12345", ("26",))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no 835"),
        ("ST*837*0001~SE*1*0001~", "not an 835"),
        ("ST*835*1~TRN*1*X*Y~SE*3*1~", "no BPR"),
        ("ST*835*1~BPR*I*x*C*CHK~TRN*1*X*Y~SE*4*1~", "not an amount"),
        ("ST*835*1~BPR*I*1*C*CHK~TRN*1*X*Y~CLP*A*1*1*1~", "no SE"),
    ],
)
def test_malformed_835s_give_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(InvalidRemittance, match=message):
        parse_835(text)


ADDRESS = x837.Address("1 Main St", "Springfield", "IL", "627011234")


def sample_claim(control: str = "C000001", diagnoses: int = 2) -> x837.Claim837:
    return x837.Claim837(
        control_number=control,
        billing=x837.Party(
            "Good Health Clinic",
            npi="1234567893",
            tax_id="123456789",
            taxonomy="207Q00000X",
            address=ADDRESS,
        ),
        rendering=x837.Party("Smith", "Jane", npi="1245319599"),
        payer_name="Acme Health",
        payer_id="ACME1",
        claim_filing_indicator="CI",
        priority="primary",
        member_id="M123",
        group_number="G9",
        patient_last="Doe",
        patient_first="John",
        patient_dob=date(1980, 1, 2),
        patient_gender="M",
        patient_address=ADDRESS,
        place_of_service="11",
        diagnoses=["J029", "R509", *[f"Z00{n:02d}" for n in range(diagnoses - 2)]],
        lines=[
            x837.ServiceLine("99213", ["25"], D("120.00"), D(1), [1, 2], date(2026, 1, 5)),
            x837.ServiceLine("87880", [], D("80.00"), D(1), [1], date(2026, 1, 5)),
        ],
        total=D("200.00"),
    )


def pyx12_errors(text: str, tmp_path: Path) -> list[str]:
    """Validate with pyx12 against the 5010 implementation guide; its error lines."""
    import logging

    import pyx12.error_handler
    import pyx12.params
    import pyx12.x12n_document

    src = tmp_path / "claim.837"
    src.write_text(text)
    errh = pyx12.error_handler.errh_null()
    param = pyx12.params.params()
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.ERROR:
                records.append(record.getMessage())

    handler = Collect()
    logging.getLogger("pyx12").addHandler(handler)
    try:
        with src.open() as fd:
            ok = pyx12.x12n_document.x12n_document(param, fd, None, None, None, None, None)
    finally:
        logging.getLogger("pyx12").removeHandler(handler)
    errors = list(records)
    if not ok and not errors:
        errors.append(f"pyx12 refused the file ({errh.get_error_count()} errors)")
    return errors


def test_generated_837p_passes_pyx12(tmp_path: Path) -> None:
    text = x837.interchange(
        sample_claim(diagnoses=12), 42, datetime(2026, 1, 6, 10, 30), "1234567893", "ACME1"
    )
    assert pyx12_errors(text, tmp_path) == []
    segments = [s for s in text.split("~\n") if s]
    st = next(i for i, s in enumerate(segments) if s.startswith("ST*"))
    se = next(i for i, s in enumerate(segments) if s.startswith("SE*"))
    assert segments[se] == f"SE*{se - st + 1}*0001"
    assert segments[0].split("*")[13] == "000000042"
    assert segments[-2:] == ["GE*1*42", "IEA*1*000000042"]


def test_pyx12_catches_a_wrong_segment_count(tmp_path: Path) -> None:
    """The validator is not a rubber stamp: the same file with SE off by one fails."""
    text = x837.interchange(sample_claim(), 42, datetime(2026, 1, 6, 10, 30), "1234567893", "A")
    broken = text.replace("SE*28*0001", "SE*27*0001")
    assert broken != text
    assert pyx12_errors(broken, tmp_path) != []


def test_an_835_moves_a_claim_only_along_its_states() -> None:
    from billing.healthcare.entries import remittance_moves

    # Adjudication proves the payer received and accepted the claim: implied steps.
    assert remittance_moves("draft", "paid") == ["submitted", "accepted", "paid"]
    assert remittance_moves("submitted", "denied") == ["accepted", "denied"]
    assert remittance_moves("rejected", "partially_paid") == [
        "submitted",
        "accepted",
        "partially_paid",
    ]
    assert remittance_moves("accepted", "paid") == ["paid"]
    assert remittance_moves("appealed", "paid") == ["paid"]
    assert remittance_moves("paid", "paid") == []  # a further payment: it stays
    # A payer changing its decision reverses it first; a closed claim moves no more.
    assert remittance_moves("paid", "denied") is None
    assert remittance_moves("denied", "paid") is None
    assert remittance_moves("closed", "paid") is None
    assert remittance_moves("paid", "accepted", reversal=True) == ["accepted"]
    assert remittance_moves("appealed", "accepted", reversal=True) == ["accepted"]
    assert remittance_moves("closed", "accepted", reversal=True) is None
    assert remittance_moves("submitted", "accepted", reversal=True) is None


# What each shared 837P says (its README, checked by hand): CLM01, CLM02, service lines,
# and pyx12's verdict. pyx12 carries the 005010X222A1 guide only: the two
# LinuxForHealth files declare the X222A2 errata, which it refuses to read (no map);
# read against X222A1 instead, the drug claim is clean and the ambulance claim lacks
# CLM05-2, the facility code qualifier its CLM05 (41::1) leaves out.
FIXTURES_837P = {
    "linuxforhealth__demo.ambulance.example5.837": (
        "051068",
        "766.50",
        4,
        "Map not found",
        ['Mandatory data element "Facility Code Qualifier" (CLM05-02) is missing'],
    ),
    "linuxforhealth__demo.drug.example10.2.837": ("CLMNO12345", "2232.93", 6, "Map not found", []),
    "stupidedi__commercial-health-insurance.edi": ("26463774", "100", 4, None, []),
    "stupidedi__medicare-secondary-payer-COB.edi": ("101KEN6055", "120", 1, None, []),
}


@pytest.mark.parametrize("path", fixture_837s(), ids=lambda p: p.name)
def test_every_shared_837p_parses_and_validates_or_is_refused_with_its_reason(
    path: Path, tmp_path: Path
) -> None:
    import pyx12.errors

    from adapters.x12.x835 import segments

    control, total, line_count, refusal, as_a1 = FIXTURES_837P[path.name]
    text = path.read_text(encoding="latin-1")
    segs, component = segments(text)  # the ISA's own separators
    (clm,) = [s for s in segs if s[0] == "CLM"]
    lines = [s for s in segs if s[0] == "SV1"]
    assert (clm[1], clm[2], len(lines)) == (control, total, line_count)
    assert sum(D(s[2]) for s in lines) == D(total)  # the claim is the sum of its lines
    assert all(s[1].split(component)[0] == "HC" for s in lines)
    (st,) = [s for s in segs if s[0] == "ST"]
    (se,) = [s for s in segs if s[0] == "SE"]
    assert int(se[1]) == segs.index(se) - segs.index(st) + 1  # SE counts ST..SE
    if refusal is None:
        assert pyx12_errors(text, tmp_path) == []
        return
    with pytest.raises(pyx12.errors.EngineError, match=refusal):
        pyx12_errors(text, tmp_path)
    errors = pyx12_errors(text.replace("005010X222A2", "005010X222A1"), tmp_path)
    assert [e.split(" - ", 1)[-1] for e in errors] == as_a1
