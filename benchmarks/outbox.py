"""Outbox throughput: posting with and without an event per transaction, and deliveries.

    .venv/bin/python -m benchmarks.outbox [--transactions 4000] [--block 200] [--deliveries 1000]

Posting: one entry per transaction through `post_entries` (as billing's
single-document writes are), in alternating blocks with and without a
`record_event` in the same transaction, so both modes share the machine's
noise; with one webhook endpoint registered, each event also queues its
delivery (the migration's trigger). Figure: transactions/s with events ÷
without. Deliveries: `WebhookWorker.deliver_due` sending queued events, signed,
to a local http.server receiver; baseline: the same number of plain httpx
POSTs of the same bodies to the same receiver, no database.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import psycopg

from benchmarks._common import BenchDatabase, bench_database, create_bench_book, emit, ratio
from benchmarks.post_batch import make_entries
from billing.postgres.events import record_event
from billing.postgres.posting import mark_billing_transaction
from ledger.entries import JournalEntry
from ledger.postgres.posting import AccountDirectory, post_entries


@contextmanager
def receiver() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


def post(
    db: BenchDatabase, book_id: uuid.UUID, entries: Sequence[JournalEntry], block: int
) -> dict[str, float]:
    """Seconds spent per mode, blocks alternating between the two."""
    spent = {"with_events": 0.0, "without_events": 0.0}
    with db.connect(app_role=True) as conn:
        directory = AccountDirectory()
        for n in range(0, len(entries), block):
            mode = "with_events" if (n // block) % 2 else "without_events"
            t0 = time.perf_counter()
            for entry in entries[n : n + block]:
                mark_billing_transaction(conn)
                [posted] = post_entries(conn, book_id, [entry], directory)
                if mode == "with_events":
                    obj = {"object": "payment", "id": str(posted.id), "memo": entry.memo}
                    record_event(conn, book_id, "payment.succeeded", obj)
                conn.commit()
            spent[mode] += time.perf_counter() - t0
    return spent


def deliver(db: BenchDatabase, book_id: uuid.UUID, url: str, count: int) -> dict[str, Any]:
    from adapters.webhooks.worker import WebhookWorker

    with db.connect(app_role=True) as conn:
        bodies = [
            json.dumps(r[0]).encode()
            for r in conn.execute(
                "select data from events where book_id = %s order by sequence limit %s",
                (book_id, count),
            )
        ]
    later = datetime.now(UTC) + timedelta(minutes=1)  # every queued delivery is due
    session = db.connect(app_role=True)

    @contextmanager
    def connection() -> Iterator[psycopg.Connection]:
        yield session  # one session, as the server's worker holds one pooled connection

    worker = WebhookWorker(connection, clock=lambda: later, books=[book_id])
    t0, c0 = time.perf_counter(), time.process_time()
    sent = worker.deliver_due(limit=count)
    delivered_s, delivered_cpu = time.perf_counter() - t0, time.process_time() - c0
    worker.stop()
    session.close()
    with httpx.Client() as client:
        t0, c0 = time.perf_counter(), time.process_time()
        for body in bodies[:sent]:
            client.post(url, content=body, headers={"Content-Type": "application/json"})
        raw_s, raw_cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "deliveries": sent,
        "deliveries_per_s": round(sent / delivered_s, 1),
        # this process's CPU (worker and receiver threads): less load-dependent than rates
        "deliveries_process_cpu_ms_each": round(1000 * delivered_cpu / max(sent, 1), 2),
        "baseline_posts_per_s": round(sent / raw_s, 1),
        "baseline_process_cpu_ms_each": round(1000 * raw_cpu / max(sent, 1), 2),
        "deliveries_over_baseline": ratio(raw_s, delivered_s),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transactions", type=int, default=4000)
    parser.add_argument("--block", type=int, default=200)
    parser.add_argument("--deliveries", type=int, default=1000)
    args = parser.parse_args(argv)
    start = datetime.now(UTC).date() - timedelta(days=30)
    entries = make_entries(args.transactions, start, 30, "outbox")
    with bench_database("ab_bench_outbox") as db, receiver() as url:
        book, _ = create_bench_book(db)
        with db.connect(app_role=True) as conn:
            conn.execute(
                "insert into webhook_endpoints (book_id, id, url, secret, allow_private_network)"
                " values (%s, %s, %s, 'whsec_bench', true)",
                (book.id, uuid.uuid4(), url),
            )
            conn.commit()
        spent = post(db, book.id, entries, args.block)
        per_mode = args.transactions / 2
        with_rate = per_mode / spent["with_events"]
        without_rate = per_mode / spent["without_events"]
        emit(
            {
                "benchmark": "outbox",
                "server": db.server_info(),
                "transactions_per_mode": int(per_mode),
                "posting_tx_per_s_with_events": round(with_rate, 1),
                "posting_tx_per_s_without_events": round(without_rate, 1),
                "events_per_s": round(with_rate, 1),
                "with_over_without": ratio(with_rate, without_rate),
                **deliver(db, book.id, url, args.deliveries),
            }
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
