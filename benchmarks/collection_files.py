"""Collection files: pain.008 (sepaxml) and NACHA generation for N transactions.

Prints one JSON document: per format, transactions/s and peak traced memory
(tracemalloc), each with its ratio to the baseline measured in the same run —
the same rows written as CSV with the csv module. XSD validation of the
pain.008 file is timed separately (`--validate`; xmlschema is slow on large
files). No database: the writers are pure functions over plain dataclasses.

    .venv/bin/python -m benchmarks.collection_files [--transactions 100000] [--validate]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import time
import tracemalloc
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from adapters.collections.nacha import AchDebit, AchOriginator, write_nacha
from adapters.collections.sepa import SepaCreditor, SepaDebit, validate_pain008, write_pain008

CREDITOR = SepaCreditor("Active Billing GmbH", "DE89370400440532013000", "COBADEFFXXX",
                        "DE98ZZZ09999999999")  # fmt: skip
ORIGINATOR = AchOriginator("091000019", "WELLS FARGO", "Active Billing", "1234567890")
ROUTINGS = ("011401533", "091000019", "021000021")


def sepa_rows(n: int) -> list[SepaDebit]:
    return [
        SepaDebit(
            end_to_end_id=f"INV-{i:09d}",
            amount=Decimal(100 + i % 9000) / 100,
            mandate_id=f"MANDATE-{i:09d}",
            mandate_date=date(2025, 1, 1),
            sequence="RCUR" if i % 10 else "FRST",
            debtor_name=f"Debtor {i}",
            debtor_iban="DE02120300000000202051",
            debtor_bic="BYLADEM1001",
            remittance=f"Invoice INV-{i:09d}",
            collection_date=date(2026, 2, 5),
        )
        for i in range(n)
    ]


def ach_rows(n: int) -> list[AchDebit]:
    return [
        AchDebit(
            sec="PPD" if i % 4 else "CCD",
            routing=ROUTINGS[i % 3],
            account_number=f"{i:012d}",
            account_type="checking" if i % 2 else "savings",
            amount=Decimal(100 + i % 9000) / 100,
            name=f"Receiver {i}",
            id_number=f"INV-{i:09d}",
        )
        for i in range(n)
    ]


def csv_baseline(rows: list[Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    for r in rows:
        writer.writerow([getattr(r, f) for f in r.__slots__])
    return out.getvalue()


def measure(work: Callable[[], object], n: int) -> dict[str, float]:
    """Time one run untraced (tracemalloc slows allocation-heavy code several times),
    then the peak traced memory of a second run."""
    started = time.perf_counter()
    result = work()
    elapsed = time.perf_counter() - started
    size = len(result) if isinstance(result, bytes | str) else 0
    del result
    tracemalloc.start()
    work()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "seconds": round(elapsed, 3),
        "transactions_per_s": round(n / elapsed, 1),
        "peak_mib": round(peak / 2**20, 1),
        "bytes": size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=100_000)
    parser.add_argument("--validate", action="store_true", help="also time the XSD check")
    args = parser.parse_args()
    n = args.transactions
    sepa, ach = sepa_rows(n), ach_rows(n)
    created = datetime(2026, 2, 1, 9, 0)
    report: dict[str, Any] = {"transactions": n}
    xml = b""

    def pain008() -> bytes:
        nonlocal xml
        xml = write_pain008(CREDITOR, sepa, message_id="BENCH", created_at=created, validate=False)
        return xml

    for name, rows, work in (
        ("pain.008.001.02", sepa, pain008),
        (
            "nacha",
            ach,
            lambda: write_nacha(
                ORIGINATOR, ach, effective_date=date(2026, 2, 5), created_at=created
            ),
        ),
    ):
        base = measure(lambda rows=rows: csv_baseline(rows), n)
        ours = measure(work, n)
        report[name] = {
            **ours,
            "baseline_csv": base,
            "speed_ratio_to_csv": round(ours["transactions_per_s"] / base["transactions_per_s"], 3),
            "memory_ratio_to_csv": round(ours["peak_mib"] / max(base["peak_mib"], 0.1), 2),
        }
    if args.validate:
        started = time.perf_counter()
        validate_pain008(xml, "pain.008.001.02")
        report["pain.008.001.02"]["xsd_validation_seconds"] = round(
            time.perf_counter() - started, 3
        )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
