"""CDR import and rating: N CDRs imported, rated and summarized, CDRs/s.

    .venv/bin/python -m benchmarks.cdr_rating [--cdrs 1000000] [--subscribers 1000]

A book in GBP gets one rate plan (three zones, peak/off-peak bands, voice at
60/60 and 60/1, SMS, data per started MB, a 300-second monthly allowance) and
`--subscribers` postpaid subscribers. N CDRs (70% voice, 20% SMS, 10% data,
spread over March 2026) are imported through `billing.postgres.telecom.
import_cdrs` 10,000 per call and transaction (parse, dedupe, insert), then one
rating (`rate_in_parts`: `--parts` runs side by side, one per share of the
subscribers, each its own transaction) rates them all in event-time order per
subscriber and posts the summarized entries. Client CPU (all threads) and the
server backends' CPU (/proc, when the server is on this machine) are reported
with the CDRs/s they would allow on an idle 2-core machine. Baseline in the same
run: COPY of the same rows into an unconstrained table. Goal: rating ≥ 50,000 CDRs/s.

Correctness: every CDR is rated, and verify's tie (rated CDRs = Income:Usage
postings of the run) holds.
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg

from benchmarks._common import (
    BenchDatabase,
    analyze,
    backend_cpu_seconds,
    bench_database,
    emit,
    ratio,
)
from billing.postgres import telecom as store
from billing.postgres.verify import verify_cdr_ratings

GOAL = 50_000
PLAN: dict[str, Any] = {
    "name": "Bench",
    "effective_from": "2026-01-01",
    "currency": "GBP",
    "time_zone": "Europe/London",
    "bands": [
        {"name": "peak", "days": [1, 2, 3, 4, 5], "from": "08:00", "to": "18:00"},
        {"name": "off_peak", "days": [1, 2, 3, 4, 5, 6, 7], "from": "00:00", "to": "24:00"},
    ],
    "zones": [
        {"name": "uk", "prefix": "+44"},
        {"name": "london", "prefix": "+4420"},
        {"name": "france", "prefix": "+33"},
    ],
    "rates": [
        {"zone": "uk", "event_type": "voice", "band": "peak", "unit_amount": "0.60"},
        {"zone": "uk", "event_type": "voice", "band": "off_peak", "unit_amount": "0.30"},
        {"zone": "london", "event_type": "voice", "unit_amount": "0.12", "increment": "60/1"},
        {"zone": "france", "event_type": "voice", "unit_amount": "1.20", "increment": "30/6"},
        {"event_type": "sms", "unit_amount": "0.05"},
        {"event_type": "data", "unit_amount": "2.00", "increment": "1000000/1000000"},
    ],
    "allowances": [{"event_type": "voice", "quantity": "300"}],
}
DESTINATIONS = ("+447700900123", "+442079460000", "+33123456789")
START = datetime(2026, 3, 1, tzinfo=UTC)


def _setup(db: BenchDatabase, subscribers: int) -> uuid.UUID:
    from adapters.services import create_book_with_chart

    with db.connect(app_role=True) as conn:
        book, _ = create_book_with_chart(conn, "bench cdrs", "GBP", date(2026, 4, 2))
        store.create_rate_plan(conn, book.id, PLAN)
        customer = uuid.uuid4()
        conn.execute(
            "insert into customers (book_id, id, name, currency) values (%s, %s, 'Bench', 'GBP')",
            (book.id, customer),
        )
        conn.execute(
            "insert into telecom_subscribers (book_id, subscriber, customer_id, rate_plan)"
            " select %s, '+4477' || lpad(n::text, 8, '0'), %s, 'Bench'"
            " from generate_series(1, %s) n",
            (book.id, customer, subscribers),
        )
        conn.commit()
    return book.id


def _rows(count: int, subscribers: int) -> list[tuple[int, dict[str, Any]]]:
    rng = random.Random(1)
    rows = []
    for n in range(count):
        kind = rng.random()
        row: dict[str, Any] = {
            "id": f"cdr-{n}",
            "subscriber": f"+4477{rng.randint(1, subscribers):08d}",
            "start": (START + timedelta(seconds=rng.randint(0, 30 * 86400))).isoformat(),
            "destination": rng.choice(DESTINATIONS),
            "roaming": rng.random() < 0.05,
        }
        if kind < 0.7:
            row["event_type"], row["duration_seconds"] = "voice", str(rng.randint(1, 900))
        elif kind < 0.9:
            row["event_type"], row["count"] = "sms", "1"
        else:
            row["event_type"], row["bytes"] = "data", str(rng.randint(1, 50_000_000))
        rows.append((n, row))
    return rows


def _copy_baseline(db: BenchDatabase, rows: list[tuple[int, dict[str, Any]]]) -> float:
    with db.connect() as conn:
        conn.execute(
            "create unlogged table bench_cdrs (id text, subscriber text, event_type text,"
            " start timestamptz, quantity numeric, destination text, roaming boolean)"
        )
        began = time.perf_counter()
        with conn.cursor().copy("copy bench_cdrs from stdin") as copy:
            for _, r in rows:
                quantity = r.get("duration_seconds") or r.get("count") or r.get("bytes")
                copy.write_row(
                    (
                        r["id"],
                        r["subscriber"],
                        r["event_type"],
                        r["start"],
                        quantity,
                        r["destination"],
                        r["roaming"],
                    )
                )
        conn.commit()
        return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cdrs", type=int, default=1_000_000)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument(
        "--parts", type=int, default=1, help="rate in this many parts side by side (1, 2, 4, 8)"
    )
    args = parser.parse_args()
    rows = _rows(args.cdrs, args.subscribers)
    with bench_database() as db:
        book_id = _setup(db, args.subscribers)
        began = time.perf_counter()
        with db.connect(app_role=True) as conn:
            for i in range(0, len(rows), store.MAX_BATCH):
                result = store.import_cdrs(conn, book_id, rows[i : i + store.MAX_BATCH])
                assert not result.rejected, result.rejected[:3]
                conn.commit()
        imported = time.perf_counter() - began
        analyze(db)
        backends: list[float | None] = []

        @contextmanager
        def connect() -> Iterator[psycopg.Connection]:
            """A connection whose backend's CPU seconds are added to `backends`."""
            with db.connect(app_role=True) as conn:
                found = conn.execute("select pg_backend_pid()").fetchone()
                pid = found[0] if found else 0
                before = backend_cpu_seconds([pid])
                yield conn
                after = backend_cpu_seconds([pid])
                backends.append(None if before is None or after is None else after - before)

        began = time.perf_counter()
        cpu = time.process_time()  # all the client's threads
        runs = store.rate_in_parts(connect, book_id, date(2026, 4, 1), args.parts)
        rated = time.perf_counter() - began
        client_cpu = time.process_time() - cpu
        # None when a backend could not be read (a server on another machine).
        server_cpu = None if None in backends else sum(b or 0.0 for b in backends)
        run_rated = sum(r.rated for r in runs)
        amounts: dict[str, Decimal] = defaultdict(Decimal)
        for r in runs:
            for currency, amount in r.amounts.items():
                amounts[currency] += amount
        # A second run finds nothing: its cost is the queue's, not the book's history.
        began = time.perf_counter()
        with db.connect(app_role=True) as conn:
            again = store.rate_through(conn, book_id, date(2026, 4, 1))
            conn.commit()
        empty_run = time.perf_counter() - began
        assert again.rated == 0
        with db.connect(app_role=True) as conn:
            tie = verify_cdr_ratings(conn, book_id)
        copy_seconds = _copy_baseline(db, rows)
        rate = run_rated / rated if rated else None
        emit(
            {
                "benchmark": "cdr_rating",
                "server": db.server_info(),
                "cdrs": args.cdrs,
                "subscribers": args.subscribers,
                "import_seconds": round(imported, 3),
                "import_cdrs_per_s": round(args.cdrs / imported, 1),
                "rating_seconds": round(rated, 3),
                "rating_cdrs_per_s": None if rate is None else round(rate, 1),
                "rating_client_cpu_seconds": round(client_cpu, 3),
                "rating_server_cpu_seconds": None if server_cpu is None else round(server_cpu, 3),
                # What the CPU seconds allow on an idle 2-core box: both cores at most, the
                # client's threads one core (the GIL), each backend one core.
                "rating_cdrs_per_s_2_idle_cores_bound": round(
                    run_rated
                    / max(
                        (client_cpu + (server_cpu or 0.0)) / 2,
                        client_cpu,
                        (server_cpu or 0.0) / min(args.parts, 2),
                        1e-9,
                    ),
                    1,
                ),
                "empty_run_seconds": round(empty_run, 3),
                "parts": args.parts,
                "entries": sum(r.entries for r in runs),
                "rated": run_rated,
                "amounts": {c: str(a) for c, a in amounts.items()},
                "baseline_copy_seconds": round(copy_seconds, 3),
                "baseline_copy_rows_per_s": round(args.cdrs / copy_seconds, 1),
                "import_vs_copy": ratio(args.cdrs / imported, args.cdrs / copy_seconds),
                "goal_rating_cdrs_per_s": GOAL,
                "goal_met": rate is not None and rate >= GOAL,
                "all_rated": run_rated == args.cdrs,
                "verify_tie": "ok" if not tie else [d.detail for d in tie],
            }
        )


if __name__ == "__main__":
    main()
