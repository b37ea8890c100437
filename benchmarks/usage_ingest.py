"""Usage event ingestion over HTTP against COPY of the same rows into the same table.

`POST /v1/usage-events` with batches of 10,000 events (customers named by
external id, one meter) from `--clients` concurrent clients against the
server (`activebilling serve --workers N`), then COPY of as many rows (the
same customers, metric, quantities and properties under other ids) into
`usage_events` in one connection, in the same run on the same server. The
figure is events/s for each, and their ratio (goal ≥ 0.5 of COPY; issue 9
also names 100,000 events/s over HTTP).

HTTP and COPY alternate in `--rounds` turns (each a share of the batches), so a
shared machine's drifting load weighs on both alike. The HTTP side's CPU per
batch (the server's processes, and its database backends, from /proc: a local
server only) is reported too: unlike events/s it hardly moves with the load.

    python -m benchmarks.usage_ingest [--batches 60] [--batch-size 10000] [--clients 2] [--rounds 4]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from benchmarks._common import (
    BenchDatabase,
    bench_database,
    cpu_seconds,
    create_bench_book,
    emit,
    http_server,
    ratio,
    server_pgid,
)

GOAL = 0.5


def _events(
    prefix: str, batch: int, size: int, customers: int, now: datetime
) -> list[dict[str, Any]]:
    # Each event its own millisecond, as a meter's events arrive: the route checks
    # each distinct timestamp once, so one shared timestamp would flatter it.
    return [
        {
            "id": f"{prefix}-{batch}-{n}",
            "customer": f"c{n % customers}",
            "metric": "api_calls",
            "quantity": str(1 + n % 7),
            "timestamp": (now - timedelta(milliseconds=batch * size + n)).isoformat(),
            "properties": {"region": "eu" if n % 2 else "us", "endpoint": f"/v{n % 5}"},
        }
        for n in range(size)
    ]


def setup(db: BenchDatabase, customers: int) -> tuple[uuid.UUID, str, dict[str, uuid.UUID]]:
    from billing.postgres.customers import CustomerSpec, upsert_customer
    from billing.postgres.usage import create_meter

    book, key = create_bench_book(db)
    ids: dict[str, uuid.UUID] = {}
    with db.connect(app_role=True) as conn:
        for n in range(customers):
            created, _ = upsert_customer(
                conn, book.id, CustomerSpec(f"Customer {n}", "USD", external_id=f"c{n}")
            )
            ids[f"c{n}"] = created.id
        create_meter(conn, book.id, "api_calls", "sum")
        conn.commit()
    return book.id, key, ids


def run_http(base: str, key: str, bodies: list[bytes], clients: int) -> dict[str, Any]:
    import httpx

    todo = list(range(len(bodies)))
    lock = threading.Lock()
    accepted: list[int] = []
    errors: list[str] = []

    def client() -> None:
        with httpx.Client(
            base_url=base,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            timeout=300,
        ) as http:
            while True:
                with lock:
                    if not todo:
                        return
                    i = todo.pop()
                response = http.post("/v1/usage-events", content=bodies[i])
                if response.status_code != 200:
                    errors.append(f"{response.status_code}: {response.text[:200]}")
                    continue
                accepted.append(int(response.json()["accepted"]))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    total = sum(accepted)
    return {
        "batches": len(bodies),
        "events_accepted": total,
        "errors": errors[:5],
        "seconds": round(elapsed, 3),
        "events_per_s": round(total / elapsed, 1) if elapsed else None,
    }


def run_copy(
    db: BenchDatabase,
    book_id: uuid.UUID,
    customers: dict[str, uuid.UUID],
    batches: list[list[dict[str, Any]]],
) -> dict[str, Any]:
    rows = [
        (
            book_id,
            "copy-" + e["id"],
            customers[e["customer"]],
            e["metric"],
            e["quantity"],
            e["timestamp"],
            json.dumps(e["properties"]),
        )
        for batch in batches
        for e in batch
    ]
    with db.connect(app_role=True) as conn:
        start = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy(
                "copy usage_events (book_id, id, customer_id, metric, quantity, occurred_at,"
                " properties) from stdin"
            ) as copy,
        ):
            for row in rows:
                copy.write_row(row)
        conn.commit()
        elapsed = time.perf_counter() - start
    return _rate(len(rows), elapsed)


def _backends(conn: Any) -> list[int]:
    """The server's connections to the bench database (its pool: opened before a round)."""
    rows = conn.execute(
        "select pid from pg_stat_activity where datname = current_database()"
        " and backend_type = 'client backend' and pid <> pg_backend_pid()"
    ).fetchall()
    return [row[0] for row in rows]


def _rate(events: int, elapsed: float) -> dict[str, Any]:
    return {
        "events": events,
        "seconds": round(elapsed, 3),
        "events_per_s": round(events / elapsed, 1) if elapsed else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # 60: HTTP's share of the run lasts ~6 s at 100,000 events/s, steady enough on a
    # shared machine (20 batches, ~2 s, moved by ±15% from run to run).
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=2, help="concurrent HTTP clients")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument(
        "--rounds", type=int, default=4, help="HTTP and COPY alternate, each a share of the batches"
    )
    args = parser.parse_args(argv)

    now = datetime.now(UTC).replace(microsecond=0)

    def batch(b: int) -> list[dict[str, Any]]:
        return _events("http", b, args.batch_size, args.customers, now)

    # Only the bodies are kept; COPY's rows are made again per round (60 batches of
    # dicts would hold ~1 GB).
    bodies = [json.dumps(batch(b)).encode() for b in range(args.batches)]
    rounds = max(1, min(args.rounds, args.batches))
    with bench_database("ab_bench_usage") as db:
        book_id, key, customers = setup(db, args.customers)
        # HTTP and COPY take turns, `rounds` times, each with its share of the batches:
        # on a shared machine the load drifts, and both should see the same drift.
        parts: list[dict[str, Any]] = []
        copies: list[dict[str, Any]] = []
        server_cpu = backend_cpu = 0.0
        with http_server(db, workers=args.workers) as base, db.connect() as watch:
            pgid = server_pgid(base)
            for r in range(rounds):
                share = range(r, args.batches, rounds)
                backends = _backends(watch)
                server_before, backends_before = cpu_seconds(pgid=pgid), cpu_seconds(backends)
                parts.append(run_http(base, key, [bodies[i] for i in share], args.clients))
                server_cpu += cpu_seconds(pgid=pgid) - server_before
                backend_cpu += cpu_seconds(backends) - backends_before
                copies.append(run_copy(db, book_id, customers, [batch(i) for i in share]))
        http = {
            "batches": sum(p["batches"] for p in parts),
            "events_accepted": sum(p["events_accepted"] for p in parts),
            "errors": [e for p in parts for e in p["errors"]][:5],
            **_rate(sum(p["events_accepted"] for p in parts), sum(p["seconds"] for p in parts)),
            "rounds_events_per_s": [p["events_per_s"] for p in parts],
            "cpu_ms_per_batch": {
                "server_processes": round(1000 * server_cpu / args.batches, 1),
                "database_backends": round(1000 * backend_cpu / args.batches, 1),
            },
        }
        copy = {
            **_rate(sum(c["events"] for c in copies), sum(c["seconds"] for c in copies)),
            "rounds_events_per_s": [c["events_per_s"] for c in copies],
        }
        with db.connect() as conn:
            row = conn.execute(
                "select count(*) filter (where id like 'http-%%'),"
                " count(*) filter (where id like 'copy-%%') from usage_events where book_id = %s",
                (book_id,),
            ).fetchone()
        info = db.server_info()
    expected = args.batches * args.batch_size
    correct = {
        "http_rows_stored": row is not None and row[0] == expected,
        "copy_rows_stored": row is not None and row[1] == expected,
        "no_http_errors": not http["errors"],
    }
    value = ratio(http["events_per_s"], copy["events_per_s"])
    emit(
        {
            "benchmark": "usage_ingest",
            "command": "python -m benchmarks.usage_ingest "
            + " ".join(sys.argv[1:] if argv is None else argv),
            "setup": {
                "server": f"activebilling serve --workers {args.workers}",
                "clients": args.clients,
                "events": f"{args.batches} batches of {args.batch_size}, {args.customers}"
                " customers by external id, 2 properties each",
                **info,
            },
            "http": http,
            "copy": copy,
            "correctness": correct,
            "ratio_http_to_copy": value,
            "goal": f"ratio >= {GOAL}",
            "goal_met": value is not None and value >= GOAL,
        }
    )
    return 0 if all(correct.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
