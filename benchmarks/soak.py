"""Soak: bounded mixed traffic against `activebilling serve --workers 2` for N minutes.

    .venv/bin/python -m benchmarks.soak [--minutes 10] [--clients 4]

Closed-loop client threads (loopback only, each waits for its answer before the
next request) mix posting (single entries on the one-statement hot path and
batches of 10, all with Idempotency-Keys), billing (a new subscription, then a
billing run), payments, reports (trial balance, AR aging, a balance) and exports
(journal feed page, Beancount). Each minute it samples the server's resident
memory (every process of its group), p99 latency (overall and per operation),
errors by route and status, the database's deadlock count and the server's
warning and error log lines; at the end the book is sealed and checked as
`activebilling verify` checks it (ledger and billing). Figures are ratios against
the first minute of the same run (memory flat = last ÷ first ≈ 1).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from adapters.services import verify_everything
from benchmarks._common import (
    BenchDatabase,
    bench_database,
    create_bench_book,
    emit,
    http_server,
    percentile,
    ratio,
    server_pgid,
)
from ledger.postgres.sealer import seal_pending

# Operation mix (weights): mostly posting and reads, as a finance team's day.
MIX = {
    "post": 46,
    "post_batch": 4,
    "report": 20,
    "payment": 10,
    "export": 8,
    "billing": 4,
    "customer": 8,
}
BATCH_ENTRIES = 10  # entries per POST /v1/journal-entries/batch


def group_rss_bytes(pgid: int) -> int:
    """Resident memory of every process in the server's process group (master + workers)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:  # field 5 of stat: the process group
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except (OSError, IndexError, ValueError):
            continue
    return total


class Traffic:
    def __init__(self, base: str, key: str, today: date) -> None:
        self.base = base
        self.headers = {"Authorization": f"Bearer {key}"}
        self.today = today.isoformat()
        self.lock = threading.Lock()
        self.samples: dict[int, list[float]] = defaultdict(list)  # minute -> ms
        self.op_samples: dict[tuple[int, str], list[float]] = defaultdict(list)
        self.errors: dict[int, int] = defaultdict(int)
        # minute -> "METHOD /path status" (or the client's exception) -> count
        self.error_routes: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.by_op: dict[str, int] = defaultdict(int)
        self.error_examples: list[str] = []
        self.customers: list[str] = []
        self.price = ""
        self.cursor: str | None = None  # the journal feed's position (shared by the clients)
        self.started = time.monotonic()

    def setup(self, client: httpx.Client) -> None:
        product = self._ok(client.post("/v1/products", json={"name": "Soak plan"}))
        self.price = self._ok(
            client.post(
                "/v1/prices",
                json={
                    "product": product["id"],
                    "currency": "USD",
                    "charge_model": "flat",
                    "unit_amount": "49.00",
                    "interval": "month",
                },
            )
        )["id"]
        for n in range(5):
            self.customers.append(self._new_customer(client, n))

    def _ok(self, r: httpx.Response) -> Any:
        if r.status_code >= 300:
            raise RuntimeError(f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text}")
        return r.json()

    def _new_customer(self, client: httpx.Client, n: int) -> str:
        r = client.post("/v1/customers", json={"name": f"Soak customer {n}", "currency": "USD"})
        return str(self._ok(r)["id"])

    def _entry(self, rng: random.Random) -> dict[str, Any]:
        cents = rng.randint(100, 99_999)
        amount = f"{cents // 100}.{cents % 100:02d}"
        return {
            "effective_date": self.today,
            "memo": "soak",
            "postings": [
                {"account": "Assets:Bank:Operating", "amount": amount, "currency": "USD"},
                {"account": "Income:Services", "amount": "-" + amount, "currency": "USD"},
            ],
        }

    def one(self, client: httpx.Client, op: str, rng: random.Random) -> tuple[str, httpx.Response]:
        """The operation's label (an export says which) and its answer."""
        if op == "export" and rng.random() >= 0.9:
            # The whole book as Beancount: grows with the book by design, so it has its
            # own label and its latency is not read as the feed's.
            return "export_beancount", client.get(
                "/v1/exports/beancount", params={"from": self.today}
            )
        return op, self._request(client, op, rng)

    def _request(self, client: httpx.Client, op: str, rng: random.Random) -> httpx.Response:
        if op == "post":
            return client.post(
                "/v1/journal-entries",
                json=self._entry(rng),
                headers={"Idempotency-Key": uuid.uuid4().hex},
            )
        if op == "post_batch":
            return client.post(
                "/v1/journal-entries/batch",
                json={"entries": [self._entry(rng) for _ in range(BATCH_ENTRIES)]},
                headers={"Idempotency-Key": uuid.uuid4().hex},
            )
        if op == "report":
            which = rng.randrange(3)
            if which == 0:
                return client.get("/v1/reports/trial-balance")
            if which == 1:
                return client.get("/v1/reports/ar-aging")
            return client.get("/v1/balances", params={"account": "Assets:Bank:Operating"})
        if op == "payment":
            return client.post(
                "/v1/payments",
                json={
                    "customer": rng.choice(self.customers),
                    "amount": f"{rng.randint(1, 500)}.00",
                    "currency": "USD",
                    "method": "bank_transfer",
                },
                headers={"Idempotency-Key": uuid.uuid4().hex},
            )
        if op == "export":
            # An ERP consumer follows the feed's cursor: each call fetches what is new.
            params: dict[str, Any] = {"limit": 500}
            if self.cursor is not None:
                params["since"] = self.cursor
            r = client.get("/v1/exports/journal", params=params)
            if r.status_code == 200:
                self.cursor = r.headers.get("Next-Cursor")
            return r
        if op == "customer":
            return client.post(
                "/v1/customers",
                json={"name": f"Soak {uuid.uuid4().hex[:8]}", "currency": "USD"},
            )
        # billing: one more subscription, then a billing run over everything due
        sub = client.post(
            "/v1/subscriptions",
            json={
                "customer": rng.choice(self.customers),
                "items": [{"price": self.price, "quantity": 1}],
                "start_date": self.today,
            },
        )
        if sub.status_code >= 300:
            return sub
        return client.post("/v1/billing-runs", json={"as_of": self.today})

    def worker(self, seed: int, stop: threading.Event) -> None:
        rng = random.Random(seed)
        ops, weights = zip(*MIX.items(), strict=True)
        with httpx.Client(base_url=self.base, headers=self.headers, timeout=60) as client:
            while not stop.is_set():
                op = rng.choices(ops, weights)[0]
                t0 = time.monotonic()
                try:
                    op, r = self.one(client, op, rng)
                    failed = r.status_code >= 400
                    route = f"{r.request.method} {r.request.url.path} {r.status_code}"
                    detail = f"{route} {r.text[:200]}"
                except httpx.HTTPError as exc:  # a timeout, a dropped connection
                    failed, route = True, f"{_sent(exc, op)} {type(exc).__name__}"
                    detail = f"{route}: {exc}"
                elapsed = (time.monotonic() - t0) * 1000
                minute = int((t0 - self.started) // 60)
                with self.lock:
                    self.samples[minute].append(elapsed)
                    self.op_samples[minute, op].append(elapsed)
                    self.by_op[op] += 1
                    if failed:
                        self.errors[minute] += 1
                        self.error_routes[minute][route] += 1
                        if len(self.error_examples) < 10:
                            self.error_examples.append(detail)


def _sent(exc: httpx.HTTPError, op: str) -> str:
    """The request an exception belongs to ("METHOD /path"), else the operation."""
    try:
        return f"{exc.request.method} {exc.request.url.path}"
    except RuntimeError:  # raised before a request was made
        return op


@contextmanager
def _server(db: BenchDatabase, workers: int, log_path: Path) -> Any:
    with http_server(db, workers=workers, log_path=log_path) as base:
        yield base


def deadlocks(conn: psycopg.Connection, name: str) -> int:
    """Deadlocks PostgreSQL has detected in the database since its statistics began."""
    row = conn.execute("select deadlocks from pg_stat_database where datname = %s", (name,))
    found = row.fetchone()
    return int(found[0]) if found else 0


def server_log(path: Path) -> tuple[dict[str, int], list[str]]:
    """The server log's lines at warning and above: count by level and logger, a few
    examples (the log is one JSON object a line, adapters.http.operations)."""
    counts: dict[str, int] = defaultdict(int)
    examples: list[str] = []
    for raw in path.read_text(errors="replace").splitlines():
        if raw.startswith("Active Billing listening on "):  # serve's banner, not a log line
            continue
        try:
            line = json.loads(raw)
            level, name, message = line["level"], line["logger"], line["message"]
        except (ValueError, KeyError, TypeError):
            level, name, message = "unparsed", "", raw
        if level in ("debug", "info"):
            continue
        counts[f"{level} {name}".strip()] += 1
        if len(examples) < 10:
            examples.append(f"{level} {name}: {str(message)[:300]}")
    return dict(counts), examples


def verify(db: BenchDatabase, book_id: uuid.UUID) -> dict[str, Any]:
    @contextmanager
    def connect() -> Any:
        with db.connect(app_role=True) as conn:
            yield conn

    seal_pending(connect, book_id, wait=True)
    with db.connect() as conn:
        t0 = time.monotonic()
        # what `activebilling verify` checks: the ledger, then billing's ties to it
        problems = verify_everything(conn, book_id)
        seconds = time.monotonic() - t0
        row = conn.execute(
            "select (select count(*) from journal_entries where book_id = %s),"
            " (select count(*) from postings where book_id = %s),"
            " (select count(*) from invoices where book_id = %s),"
            " (select count(*) from payments where book_id = %s)",
            (book_id, book_id, book_id, book_id),
        ).fetchone()
    entries, postings, invoices, payments = row if row else (None,) * 4
    return {
        "ok": not problems,
        "discrepancies": [str(p) for p in problems[:5]],
        "entries": entries,
        "postings": postings,
        "invoices": invoices,
        "payments": payments,
        "seconds": round(seconds, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=10.0, help="how long (10)")
    parser.add_argument("--clients", type=int, default=4, help="client threads (4)")
    parser.add_argument("--workers", type=int, default=2, help="server workers (2)")
    args = parser.parse_args(argv)
    with (
        bench_database("ab_soak") as db,
        tempfile.TemporaryDirectory(prefix="ab-soak-") as tmp,
        psycopg.connect(db.server_url, autocommit=True) as stats,
    ):
        book, key = create_bench_book(db)
        log_path = Path(tmp) / "server.log"
        with _server(db, args.workers, log_path) as base:
            pid = server_pgid(base)
            # the server's today (UTC): a later local date would bill ahead of the clock
            traffic = Traffic(base, key, datetime.now(UTC).date())
            with httpx.Client(base_url=base, headers=traffic.headers, timeout=60) as c:
                traffic.setup(c)
            stop = threading.Event()
            threads = [
                threading.Thread(target=traffic.worker, args=(n, stop), daemon=True)
                for n in range(args.clients)
            ]
            traffic.started = time.monotonic()
            for t in threads:
                t.start()
            memory: list[int] = []
            seconds: list[float] = []  # each interval's length (the last may be short)
            locked: list[int] = [deadlocks(stats, db.name)]
            end = traffic.started + args.minutes * 60
            minute = 0
            while time.monotonic() < end:
                until = min(traffic.started + (minute + 1) * 60, end)
                time.sleep(max(0.0, until - time.monotonic()))
                memory.append(group_rss_bytes(pid))
                locked.append(deadlocks(stats, db.name))
                seconds.append(until - (traffic.started + minute * 60))
                minute += 1
            stop.set()
            for t in threads:
                t.join(timeout=120)
        log_counts, log_examples = server_log(log_path)
        result = verify(db, book.id)
        info = db.server_info()
    per_minute = []
    for m in range(len(memory)):
        ms = traffic.samples.get(m, [])
        by_op = sorted((op, v) for (minute, op), v in traffic.op_samples.items() if minute == m)
        per_minute.append(
            {
                "minute": m + 1,
                "requests": len(ms),
                "requests_per_s": round(len(ms) / seconds[m], 1),
                "p99_ms": round(percentile(ms, 99), 1) if ms else None,
                "errors": traffic.errors.get(m, 0),
                "errors_by_route": dict(sorted(traffic.error_routes.get(m, {}).items())),
                "deadlocks": locked[m + 1] - locked[m],
                "server_rss_mb": round(memory[m] / 2**20, 1),
                # where the time goes, should p99 move: each operation's median and p99
                "median_ms_by_operation": {op: round(statistics.median(v), 1) for op, v in by_op},
                "p99_ms_by_operation": {op: round(percentile(v, 99), 1) for op, v in by_op},
            }
        )
    first, last = per_minute[0], per_minute[-1]
    errors_by_route: dict[str, int] = defaultdict(int)
    for routes in traffic.error_routes.values():
        for route, n in routes.items():
            errors_by_route[route] += n
    emit(
        {
            "benchmark": "soak",
            "minutes": args.minutes,
            "clients": args.clients,
            "server": f"activebilling serve --workers {args.workers}",
            "mix": MIX,
            "requests_by_operation": dict(traffic.by_op),
            "per_minute": per_minute,
            "errors_total": sum(traffic.errors.values()),
            "errors_by_route": dict(sorted(errors_by_route.items())),
            "error_examples": traffic.error_examples,
            "deadlocks_total": locked[-1] - locked[0],
            "server_log_warnings_and_errors": log_counts,
            "server_log_examples": log_examples,
            "rss_last_over_first": ratio(last["server_rss_mb"], first["server_rss_mb"]),
            "p99_last_over_first": ratio(last["p99_ms"], first["p99_ms"]),
            "throughput_last_over_first": ratio(last["requests_per_s"], first["requests_per_s"]),
            "verify": result,
            "environment": info,
        }
    )
    return 0 if result["ok"] and not traffic.errors and not log_counts else 1


if __name__ == "__main__":
    raise SystemExit(main())
