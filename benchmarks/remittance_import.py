"""835 import: one file of N claims (default 10,000) parsed, balanced, matched
and posted in one transaction, against `post_entries` of the same entries.

    .venv/bin/python -m benchmarks.remittance_import [--claims 10000]

Setup (not timed): a patient with primary coverage, a provider, a fee
schedule, and N encounters with a submitted claim each, inserted set-based
(their charges are not posted: the benchmark is about the remittance). The
835 has one CLP per claim shaped like ACCOUNTING.md's worked claim (two
service lines, CO-45, PR-1, PR-2, paid 56.00). Timed: `parse_835` +
`import_remittances` + commit (claims/s). Baseline, same run: the claim
entries and the payment entry the import built, posted again with
`post_entries` (fresh idempotency keys) 1,000 per call, and a commit.
Also timed: 837P generation of N claims with `adapters.x12.x837.interchange`
(claims/s, pure: no database), against joining the same number of
same-length segment lists (the string building alone).
"""

from __future__ import annotations

import argparse
import hashlib
import time
import uuid
from datetime import date
from decimal import Decimal

from adapters.x12.x835_writer import ClaimPayment, ServicePayment, remittance_835
from benchmarks._common import bench_database, create_bench_book, emit, ratio
from billing.healthcare.entries import ClaimRef, claim_remittance_entry, remittance_payment_entry
from billing.healthcare.remittance import AdjustmentRules, claim_postings
from billing.postgres import healthcare as store
from billing.postgres.healthcare_remittances import import_remittances
from billing.postgres.posting import post_entries

WHEN = date(2026, 3, 1)


def make_835(numbers: list[str], trace: str) -> str:
    """ACCOUNTING.md's worked claim (billed 200.00, paid 56.00) once per control number."""
    d = Decimal
    lines = [
        ServicePayment(
            "99213",
            d("120.00"),
            d("36.00"),
            [("CO", "45", d("50.00")), ("PR", "1", d("20.00")), ("PR", "2", d("14.00"))],
        ),
        ServicePayment(
            "87880",
            d("80.00"),
            d("20.00"),
            [("CO", "45", d("30.00")), ("PR", "1", d("20.00")), ("PR", "2", d("10.00"))],
        ),
    ]
    claims = [ClaimPayment(pcn, "1", lines) for pcn in numbers]
    return remittance_835(
        claims,
        trace=trace,
        paid_on=WHEN,
        payer="BENCH PAYER",
        payee="BENCH CLINIC",
        npi="1234567893",
    )


def time_837(count: int) -> tuple[float, float]:
    from datetime import UTC, datetime

    from adapters.x12 import x837

    address = x837.Address("1 Main St", "Springfield", "IL", "627011234")
    billing = x837.Party("Clinic", npi="1234567893", tax_id="123456789", address=address)
    lines = [
        x837.ServiceLine("99213", ["25"], Decimal("120.00"), Decimal(1), [1, 2], WHEN),
        x837.ServiceLine("87880", [], Decimal("80.00"), Decimal(1), [1], WHEN),
    ]
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    claims = [
        x837.Claim837(
            f"B{n:012d}",
            billing,
            None,
            "Payer",
            "P1",
            "CI",
            "primary",
            f"M{n}",
            None,
            "Doe",
            "John",
            date(1980, 1, 2),
            "M",
            address,
            "11",
            ["J029", "R509"],
            lines,
            Decimal("200.00"),
        )
        for n in range(count)
    ]
    started = time.perf_counter()
    texts = [x837.interchange(c, n + 1, now, "1234567893", "P1") for n, c in enumerate(claims)]
    generated = time.perf_counter() - started
    shapes = [t.split("\n") for t in texts]
    started = time.perf_counter()
    for segments in shapes:
        "\n".join(segments)
    joined = time.perf_counter() - started
    return generated, joined


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=10_000, help="claims in the 835 (10,000)")
    args = parser.parse_args()
    with bench_database("ab_bench_835") as db:
        book, _ = create_bench_book(db)
        with db.connect(app_role=True) as conn:
            conn.execute("select set_config('activebilling.writer', 'billing', true)")
            address = {"line1": "1 Main", "city": "X", "state": "IL", "postal_code": "62701"}
            patient = store.create_patient(
                conn,
                book.id,
                {
                    "first_name": "Bench",
                    "last_name": "Patient",
                    "date_of_birth": date(1980, 1, 1),
                    "gender": "U",
                    "address": address,
                },
            )
            payer = store.create_payer(conn, book.id, {"name": "Bench", "payer_id": "BENCH"})
            coverage = store.create_coverage(
                conn,
                book.id,
                {"patient": str(patient["id"]), "payer": str(payer["id"]), "member_id": "M1"},
            )
            provider = store.create_provider(conn, book.id, {"name": "Clinic", "npi": "1234567893"})
            schedule = store.create_fee_schedule(
                conn, book.id, {"name": "S", "items": [{"code": "99213", "amount": "120.00"}]}
            )
            rows = conn.execute(
                """
                with e as (
                  insert into encounters (book_id, id, patient_id, provider_id, fee_schedule_id,
                    payer_id, date_of_service, place_of_service, diagnoses, total)
                  select %(b)s, gen_random_uuid(), %(pt)s, %(pv)s, %(fs)s, %(py)s, %(on)s, '11',
                         '["J029"]', 200.00 from generate_series(1, %(n)s)
                  returning id)
                insert into claims (book_id, id, control_number, encounter_id, payer_id,
                  coverage_id, status, billed, currency)
                select %(b)s, gen_random_uuid(), 'B' || lpad(row_number() over ()::text, 12, '0'),
                       e.id, %(py)s, %(cv)s, 'submitted', 200.00, 'USD' from e
                returning control_number, id, encounter_id
                """,
                {
                    "b": book.id,
                    "pt": patient["id"],
                    "pv": provider["id"],
                    "fs": schedule["id"],
                    "py": payer["id"],
                    "cv": coverage["id"],
                    "on": WHEN,
                    "n": args.claims,
                },
            ).fetchall()
            conn.commit()
        numbers = sorted(r[0] for r in rows)
        text = make_835(numbers, "BENCH-1")
        from adapters.x12.x835 import parse_835

        with db.connect(app_role=True) as conn:
            started = time.perf_counter()
            parsed = parse_835(text)
            result = import_remittances(
                conn, book.id, parsed, hashlib.sha256(text.encode()).hexdigest(), WHEN
            )
            conn.commit()
            import_s = time.perf_counter() - started
        assert len(result["claims"]) == args.claims and not result["unmatched"]
        # Baseline: the same entries, built the same way, posted with post_entries.
        remittance_id = uuid.uuid4()
        by_number = {r[0]: r for r in rows}
        rules = AdjustmentRules()
        entries = []
        for index, clp in enumerate(parsed[0].claims):
            _, claim_id, encounter_id = by_number[clp.control_number]
            ref = ClaimRef(
                str(claim_id),
                clp.control_number,
                str(encounter_id),
                str(patient["id"]),
                str(payer["id"]),
            )
            entry = claim_remittance_entry(
                remittance_id, index, ref, claim_postings(clp, rules), "USD", WHEN, "paid"
            )
            assert entry is not None
            entries.append(entry)
        payment = remittance_payment_entry(
            remittance_id,
            "BENCH-2",
            parsed[0].claims_paid(),
            parsed[0].payment_total,
            (),
            "USD",
            WHEN,
        )
        assert payment is not None
        entries.append(payment)
        with db.connect(app_role=True) as conn:
            started = time.perf_counter()
            conn.execute("select set_config('activebilling.writer', 'billing', true)")
            for start in range(0, len(entries), 1000):
                post_entries(conn, book.id, entries[start : start + 1000])
            conn.commit()
            baseline_s = time.perf_counter() - started
        gen_s, join_s = time_837(args.claims)
        emit(
            {
                "benchmark": "remittance_import",
                "claims": args.claims,
                "file_bytes": len(text),
                "import_seconds": round(import_s, 3),
                "claims_per_second": round(args.claims / import_s, 1),
                "baseline_post_entries_seconds": round(baseline_s, 3),
                "baseline_claims_per_second": round(args.claims / baseline_s, 1),
                "import_vs_post_entries": ratio(baseline_s, import_s),
                "generate_837_seconds": round(gen_s, 3),
                "generate_837_claims_per_second": round(args.claims / gen_s, 1),
                "generate_837_vs_plain_join": ratio(join_s, gen_s),
                "server": db.server_info(),
            }
        )


if __name__ == "__main__":
    main()
