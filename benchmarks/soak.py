"""Soak: bounded mixed traffic against `activebilling serve --workers 2` for N minutes.

    .venv/bin/python -m benchmarks.soak [--minutes 10] [--clients 4]

Closed-loop client threads (loopback only, each waits for its answer before the
next request) mix posting (with Idempotency-Keys), billing (a new subscription,
then a billing run), payments, reports (trial balance, AR aging, a balance) and
exports (journal feed page, Beancount). Each minute it samples the server's
resident memory (every process of its group), p99 latency and the error count;
at the end the book is sealed and verified. Figures are ratios against the
first minute of the same run (memory flat = last ÷ first ≈ 1).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import threading
import time
import uuid
from collections import defaultdict
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import httpx

from benchmarks._common import (
    BenchDatabase,
    bench_database,
    create_bench_book,
    emit,
    http_server,
    percentile,
    ratio,
)
from ledger.postgres.sealer import seal_pending
from ledger.postgres.verify import verify_book

# Operation mix (weights): mostly posting and reads, as a finance team's day.
MIX = {"post": 50, "report": 20, "payment": 10, "export": 8, "billing": 4, "customer": 8}


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

    def one(self, client: httpx.Client, op: str, rng: random.Random) -> httpx.Response:
        if op == "post":
            cents = rng.randint(100, 99_999)
            amount = f"{cents // 100}.{cents % 100:02d}"
            return client.post(
                "/v1/journal-entries",
                json={
                    "effective_date": self.today,
                    "memo": "soak",
                    "postings": [
                        {"account": "Assets:Bank:Operating", "amount": amount, "currency": "USD"},
                        {"account": "Income:Services", "amount": "-" + amount, "currency": "USD"},
                    ],
                },
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
            if rng.random() < 0.9:
                # An ERP consumer follows the feed's cursor: each call fetches what is new.
                params: dict[str, Any] = {"limit": 500}
                if self.cursor is not None:
                    params["since"] = self.cursor
                r = client.get("/v1/exports/journal", params=params)
                if r.status_code == 200:
                    self.cursor = r.headers.get("Next-Cursor")
                return r
            # The whole book as Beancount: grows with the book by design.
            return client.get("/v1/exports/beancount", params={"from": self.today})
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
                    r = self.one(client, op, rng)
                    failed = r.status_code >= 400
                    detail = f"{op} {r.status_code} {r.text[:200]}"
                except httpx.HTTPError as exc:
                    failed, detail = True, f"{op} {type(exc).__name__}: {exc}"
                elapsed = (time.monotonic() - t0) * 1000
                minute = int((t0 - self.started) // 60)
                with self.lock:
                    self.samples[minute].append(elapsed)
                    self.op_samples[minute, op].append(elapsed)
                    self.by_op[op] += 1
                    if failed:
                        self.errors[minute] += 1
                        if len(self.error_examples) < 10:
                            self.error_examples.append(detail)


@contextmanager
def _server(db: BenchDatabase, workers: int) -> Any:
    with http_server(db, workers=workers) as base:
        yield base


def verify(db: BenchDatabase, book_id: uuid.UUID) -> dict[str, Any]:
    @contextmanager
    def connect() -> Any:
        with db.connect(app_role=True) as conn:
            yield conn

    seal_pending(connect, book_id, wait=True)
    with db.connect() as conn:
        t0 = time.monotonic()
        problems = verify_book(conn, book_id)
        seconds = time.monotonic() - t0
        row = conn.execute(
            "select count(*) from postings where book_id = %s", (book_id,)
        ).fetchone()
    return {
        "ok": not problems,
        "discrepancies": [str(p) for p in problems[:5]],
        "postings": row[0] if row else None,
        "seconds": round(seconds, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=10.0, help="how long (10)")
    parser.add_argument("--clients", type=int, default=4, help="client threads (4)")
    parser.add_argument("--workers", type=int, default=2, help="server workers (2)")
    args = parser.parse_args(argv)
    with bench_database("ab_soak") as db:
        book, key = create_bench_book(db)
        with _server(db, args.workers) as base:
            pid = _server_pid(base)
            traffic = Traffic(base, key, date.today())
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
            end = traffic.started + args.minutes * 60
            minute = 0
            while time.monotonic() < end:
                time.sleep(
                    max(0.0, min(traffic.started + (minute + 1) * 60, end) - time.monotonic())
                )
                memory.append(group_rss_bytes(pid))
                minute += 1
            stop.set()
            for t in threads:
                t.join(timeout=120)
        result = verify(db, book.id)
        info = db.server_info()
    per_minute = []
    for m in range(len(memory)):
        ms = traffic.samples.get(m, [])
        per_minute.append(
            {
                "minute": m + 1,
                "requests": len(ms),
                "p99_ms": round(percentile(ms, 99), 1) if ms else None,
                "errors": traffic.errors.get(m, 0),
                "server_rss_mb": round(memory[m] / 2**20, 1),
                # where the time goes, should p99 move: each operation's median
                "median_ms_by_operation": {
                    op: round(statistics.median(v), 1)
                    for (minute, op), v in sorted(traffic.op_samples.items())
                    if minute == m
                },
            }
        )
    first, last = per_minute[0], per_minute[-1]
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
            "error_examples": traffic.error_examples,
            "rss_last_over_first": ratio(last["server_rss_mb"], first["server_rss_mb"]),
            "p99_last_over_first": ratio(last["p99_ms"], first["p99_ms"]),
            "throughput_last_over_first": ratio(last["requests"], first["requests"]),
            "verify": result,
            "environment": info,
        }
    )
    return 0 if result["ok"] and not traffic.errors else 1


def _server_pid(base: str) -> int:
    """The pid (and process group) of the server listening on base's port."""
    port = int(base.rsplit(":", 1)[1])
    inode = _listening_inode(port)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) == f"socket:[{inode}]":
                    return os.getpgid(int(entry.name))
        except OSError:
            continue
    raise RuntimeError(f"no process listens on port {port}")


def _listening_inode(port: int) -> str:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                return fields[9]
    raise RuntimeError(f"no socket listens on port {port}")


if __name__ == "__main__":
    raise SystemExit(main())
