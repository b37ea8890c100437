"""X12 files for the tests: the shared 835 and 837P fixtures, ACCOUNTING.md's
worked claim and its variants."""

from __future__ import annotations

from pathlib import Path

FIXTURES_835 = Path("/work/shared/fixtures/third_party/x12-835")
FIXTURES_837 = Path("/work/shared/fixtures/third_party/x12-837p")


def fixture_835s() -> list[Path]:
    return sorted(
        p for p in FIXTURES_835.iterdir() if not p.name.startswith("LICENSE") and p.suffix != ".md"
    )


def fixture_837s() -> list[Path]:
    return sorted(
        p for p in FIXTURES_837.iterdir() if not p.name.startswith("LICENSE") and p.suffix != ".md"
    )


def envelope_835(body: list[str], control: int = 1) -> str:
    """ISA/GS/ST…SE/GE/IEA around the given segments (without ST/SE)."""
    segs = [f"ST*835*{control:04d}", *body]
    segs.append(f"SE*{len(segs) + 1}*{control:04d}")
    isa = (
        "ISA*00*          *00*          *ZZ*PAYER          *ZZ*PROVIDER       "
        f"*260301*1200*^*00501*{control:09d}*0*P*:"
    )
    gs = f"GS*HP*PAYER*PROVIDER*20260301*1200*{control}*X*005010X221A1"
    return "~\n".join([isa, gs, *segs, f"GE*1*{control}", f"IEA*1*{control:09d}"]) + "~\n"


def worked_claim_835(
    pcn: str,
    trace: str = "TRACE001",
    *,
    paid: str = "56.00",
    total: str = "56.00",
    status: str = "1",
    sign: str = "",
    line1_paid: str = "36.00",
    extra: tuple[str, ...] = (),
) -> str:
    """Billed 200.00 (99213 120.00 + 87880 80.00), allowed 120.00, paid 56.00:
    CO-45 80.00, PR-1 40.00 (deductible), PR-2 24.00 (coinsurance)."""
    s = sign
    return envelope_835(
        [
            f"BPR*I*{total}*C*ACH*CCP*01*999999999*DA*123456*1512345678**01*999988880*DA*98765*20260301",
            f"TRN*1*{trace}*1512345678",
            "N1*PR*ACME HEALTH",
            "N1*PE*GOOD HEALTH CLINIC*XX*1234567893",
            "LX*1",
            f"CLP*{pcn}*{status}*{s}200.00*{s}{paid}*{s}64.00*12*PAYERCLM1",
            "NM1*QC*1*DOE*JOHN****MI*M123",
            f"SVC*HC:99213*{s}120.00*{s}{line1_paid}**1",
            f"CAS*CO*45*{s}50.00",
            f"CAS*PR*1*{s}20.00**2*{s}14.00",
            f"SVC*HC:87880*{s}80.00*{s}20.00**1",
            f"CAS*CO*45*{s}30.00",
            f"CAS*PR*1*{s}20.00**2*{s}10.00",
            *extra,  # PLB segments close the transaction
        ]
    )
