"""The keyed post's Python cost, in one process: the ASGI app driven directly.

    .venv/bin/python -m benchmarks.post_inprocess [--posts 3000] [--concurrency 8]
        [--profile cprofile|pyinstrument] [--days 30]

No HTTP server and no load generator: the app (adapters.http.app.create_app,
no sealer) gets `POST /v1/journal-entries` ASGI calls with the bodies and
headers benchmarks.post_http's wrk script sends (a fresh Idempotency-Key on
each, 2- and 3-posting entries crediting the hot account, dated over --days),
`--concurrency` at a time on one event loop, as a granian worker would run
them. Reports the event loop thread's CPU per post (time.thread_time: the
part the serve process spends in Python for a post, without granian's Rust
threads or the pool's worker threads), with cProfile's or pyinstrument's
summary when asked. Every answer must be 201.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import logging
import pstats
import random
import sys
import time
from datetime import UTC, datetime
from typing import Any

from adapters.database import DatabaseSettings
from adapters.http.app import create_app
from adapters.runtime import Runtime
from benchmarks._common import (
    APP_ROLE,
    HOT_ACCOUNT,
    bench_database,
    create_bench_book,
    emit,
    warm_up,
)
from benchmarks.post_http import effective_dates

DEBITS = [
    "Assets:Receivable:Trade",
    "Assets:Bank:Operating",
    "Assets:Clearing:Manual",
    "Assets:Receivable:Unbilled",
]


def bodies(count: int, days: int, seed: int = 7919) -> list[bytes]:
    """The wrk script's bodies: 2- and 3-posting entries, amounts in cents."""
    rng = random.Random(seed)
    dates = effective_dates(days)
    out = []
    for i in range(1, count + 1):
        cents = rng.randint(100, 99999)
        debit = DEBITS[i % len(DEBITS)]
        today = dates[i % len(dates)]
        if i % 2 == 0:
            postings = [
                (debit, f"{cents // 100}.{cents % 100:02d}"),
                (HOT_ACCOUNT, f"-{cents // 100}.{cents % 100:02d}"),
            ]
        else:
            tax = cents // 10
            total = cents + tax
            postings = [
                (debit, f"{total // 100}.{total % 100:02d}"),
                (HOT_ACCOUNT, f"-{cents // 100}.{cents % 100:02d}"),
                ("Liabilities:Tax-Payable", f"-{tax // 100}.{tax % 100:02d}"),
            ]
        items = ",".join(
            f'{{"account":"{a}","amount":"{m}","currency":"USD"}}' for a, m in postings
        )
        out.append(f'{{"effective_date":"{today}","memo":"bench","postings":[{items}]}}'.encode())
    return out


class Answer:
    __slots__ = ("body", "status")

    def __init__(self) -> None:
        self.status = 0
        self.body = b""


async def post(app: Any, key: str, idempotency_key: str, body: bytes) -> Answer:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/journal-entries",
        "raw_path": b"/v1/journal-entries",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"content-length", str(len(body)).encode()),
            (b"content-type", b"application/json"),
            (b"authorization", b"Bearer " + key.encode()),
            (b"idempotency-key", idempotency_key.encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    sent = False
    answer = Answer()

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer.status = message["status"]
        else:
            answer.body += message.get("body", b"")

    await app(scope, receive, send)
    return answer


async def lifespan(app: Any) -> tuple[asyncio.Task[None], asyncio.Queue[Any]]:
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    outbox: asyncio.Queue[Any] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.create_task(app({"type": "lifespan"}, inbox.get, outbox.put))
    message = await outbox.get()
    assert message["type"] == "lifespan.startup.complete", message
    return task, inbox


async def drive(app: Any, key: str, work: list[bytes], concurrency: int, tag: str) -> list[int]:
    statuses: list[int] = []
    queue = list(enumerate(work))
    queue.reverse()

    async def client() -> None:
        while queue:
            n, body = queue.pop()
            answer = await post(app, key, f"{tag}-{n}", body)
            statuses.append(answer.status)
            if answer.status != 201:
                print(answer.status, answer.body[:500], file=sys.stderr)

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return statuses


async def run(args: argparse.Namespace, url: str, key: str) -> dict[str, Any]:
    runtime = Runtime(DatabaseSettings(url, APP_ROLE), min_size=2, max_size=16)
    app = create_app(runtime, run_sealer=False)
    task, inbox = await lifespan(app)
    try:
        # The key cache learns the key from a route first (as under load).
        warm = bodies(args.concurrency * 50, args.days, seed=1)
        await drive(app, key, warm, args.concurrency, "warm")
        work = bodies(args.posts, args.days)
        profiler: Any = None
        if args.profile == "cprofile":
            profiler = cProfile.Profile(time.thread_time_ns, 1e-9)
            profiler.enable()
        elif args.profile == "pyinstrument":
            from pyinstrument import Profiler

            profiler = Profiler(async_mode="disabled", interval=0.0001)
            profiler.start()
        cpu, wall = time.thread_time(), time.perf_counter()
        statuses = await drive(app, key, work, args.concurrency, "run")
        cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
        report: dict[str, Any] = {}
        if args.profile == "cprofile":
            profiler.disable()
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out)
            stats.sort_stats("cumulative").print_stats(args.top)
            stats.sort_stats("tottime").print_stats(args.top)
            print(out.getvalue(), file=sys.stderr)
        elif args.profile == "pyinstrument":
            profiler.stop()
            print(profiler.output_text(unicode=False, color=False), file=sys.stderr)
        created = statuses.count(201)
        report.update(
            {
                "posts": len(statuses),
                "created_201": created,
                "event_loop_cpu_us_per_post": round(cpu * 1e6 / max(created, 1), 1),
                "wall_us_per_post": round(wall * 1e6 / max(created, 1), 1),
                "profiled": args.profile,
            }
        )
        return report
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await task
        runtime.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=2000)
    parser.add_argument("--profile", choices=["cprofile", "pyinstrument"], default=None)
    parser.add_argument("--top", type=int, default=40, help="profile lines shown")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    args = parser.parse_args(argv)
    logging.getLogger("activebilling").setLevel(logging.WARNING)  # serve's default level

    with bench_database("ab_inproc") as db:
        book, key = create_bench_book(db)
        warm_up(db, book.id, args.warmup, datetime.now(UTC).date())
        if args.loop == "uvloop":
            import uvloop

            report = uvloop.run(run(args, db.url, key))
        else:
            report = asyncio.run(run(args, db.url, key))
    ok = report["created_201"] == report["posts"]
    emit({"benchmark": "post_inprocess", "command": " ".join(sys.argv), **report, "ok": ok})
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
