"""Posting over HTTP: 8 concurrent clients, every entry touching one hot revenue account.

    .venv/bin/python -m benchmarks.post_http [--seconds 20] [--clients 8] [--workers N]

Starts `activebilling serve` (uvicorn, serve's default; `--server granian` for
the other stack) with serve's default workers (half the CPUs, at least one) on
a throwaway database, creates a book and an
admin key, then drives `POST /v1/journal-entries` with `wrk` (a C load
generator with a Lua script; 2- and 3-posting entries, each crediting
Income:Subscriptions) for `--seconds`. Without wrk it falls back to Python
threads with keep-alive httpx clients, which compete for the same CPUs.
Then the server is stopped and plain pgbench TPC-B runs on the same
PostgreSQL server with the same number of clients, as the baseline.

Correctness: after the run, the database holds one entry per 201 response,
plus at most one per client for requests that were in flight when the load
generator stopped (it closes the socket; the server still commits); every
response was 2xx; and the hot account's materialized balance equals the sum
of its postings.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from adapters.cli.ledger import DEFAULT_SERVER, DEFAULT_WORKERS
from benchmarks._common import (
    HOT_ACCOUNT,
    BenchDatabase,
    backend_cpu,
    backend_cpu_since,
    bench_database,
    cpu_per_item,
    create_bench_book,
    emit,
    http_server,
    percentile,
    ratio,
    run_pgbench,
    server_pgid,
    session_cpu,
    warm_up,
)

GOAL = 0.5

# wrk's Lua: a ring of prepared bodies per thread, counters per status, and a
# JSON summary from done() (threads are separate Lua states; setup() keeps them).
WRK_SCRIPT = r"""
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
  table.insert(threads, thread)
end

local bodies = {}
local n = 0
local dates = {__DATES__}
local debits = {"Assets:Receivable:Trade", "Assets:Bank:Operating",
                "Assets:Clearing:Manual", "Assets:Receivable:Unbilled"}

function init(args)
  math.randomseed(tid * 7919)
  for i = 1, 1000 do
    local cents = math.random(100, 99999)
    local debit = debits[(i % #debits) + 1]
    local today = dates[(i % #dates) + 1]
    local body
    if i % 2 == 0 then
      body = string.format('{"effective_date":"%s","memo":"bench","postings":['
        .. '{"account":"%s","amount":"%d.%02d","currency":"USD"},'
        .. '{"account":"__HOT__","amount":"-%d.%02d","currency":"USD"}]}',
        today, debit, math.floor(cents / 100), cents % 100, math.floor(cents / 100), cents % 100)
    else
      local tax = math.floor(cents / 10)
      local total = cents + tax
      body = string.format('{"effective_date":"%s","memo":"bench","postings":['
        .. '{"account":"%s","amount":"%d.%02d","currency":"USD"},'
        .. '{"account":"__HOT__","amount":"-%d.%02d","currency":"USD"},'
        .. '{"account":"Liabilities:Tax-Payable","amount":"-%d.%02d","currency":"USD"}]}',
        today, debit, math.floor(total / 100), total % 100, math.floor(cents / 100), cents % 100,
        math.floor(tax / 100), tax % 100)
    end
    bodies[i] = body
  end
  n = 0
  created = 0
  ok_other = 0
  failed = 0
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer __KEY__"

function request()
  n = n + 1
  if __IDEMPOTENCY__ then
    local headers = {}
    for k, v in pairs(wrk.headers) do headers[k] = v end
    headers["Idempotency-Key"] = string.format("%s-%d", tostring(wrk.thread):sub(-8), n)
    return wrk.format(nil, "/v1/journal-entries", headers, bodies[(n % 1000) + 1])
  end
  return wrk.format(nil, "/v1/journal-entries", nil, bodies[(n % 1000) + 1])
end

function response(status, headers, body)
  if status == 201 then
    created = created + 1
  elseif status >= 200 and status < 300 then
    ok_other = ok_other + 1
  else
    failed = failed + 1
    if failed <= 3 then io.stderr:write("non-2xx " .. status .. ": " .. body .. "\n") end
  end
end

function done(summary, latency, requests)
  local c, o, f = 0, 0, 0
  for _, t in ipairs(threads) do
    c = c + t:get("created")
    o = o + t:get("ok_other")
    f = f + t:get("failed")
  end
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"created_201":%d,"other_2xx":%d,'
    .. '"non_2xx":%d,"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},'
    .. '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, c, o, f,
    summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""


def effective_dates(days: int) -> list[str]:
    """The entries' dates, taken in turn: the `days` days up to today."""
    today = datetime.now(UTC).date()
    return [(today - timedelta(days=n)).isoformat() for n in range(max(1, days))]


def run_wrk(
    base: str,
    key: str,
    *,
    clients: int,
    threads: int,
    seconds: int,
    idempotency: bool = False,
    days: int = 1,
) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    assert wrk is not None
    dates = ",".join(f'"{d}"' for d in effective_dates(days))
    script = (
        WRK_SCRIPT.replace("__DATES__", dates)
        .replace("__KEY__", key)
        .replace("__IDEMPOTENCY__", "true" if idempotency else "false")
        .replace("__HOT__", HOT_ACCOUNT)
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
        path = f.name
    try:
        done = subprocess.run(
            [
                wrk,
                "-t",
                str(threads),
                "-c",
                str(clients),
                "-d",
                f"{seconds}s",
                "--timeout",
                "30s",
                "-s",
                path,
                base,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        Path(path).unlink()
    lines = [x for x in done.stdout.splitlines() if x.startswith("WRKJSON ")]
    if not lines:
        raise RuntimeError(f"wrk printed no summary: {done.stdout[-2000:]} {done.stderr[-2000:]}")
    line = lines[0]
    raw = json.loads(line[len("WRKJSON ") :])
    seconds_run = raw["duration_us"] / 1e6
    lat = raw["latency_us"]
    return {
        "load_generator": f"wrk -t {threads} -c {clients} -d {seconds}s (C, Lua script)",
        "requests": raw["requests"],
        "created_201": raw["created_201"],
        "other_2xx": raw["other_2xx"],
        "non_2xx": raw["non_2xx"],
        "socket_errors": raw["socket_errors"],
        "seconds": round(seconds_run, 3),
        "entries_per_s": round(raw["created_201"] / seconds_run, 1),
        "latency_ms": {
            "p50": lat["p50"] / 1000,
            "p90": lat["p90"] / 1000,
            "p99": lat["p99"] / 1000,
            "max": lat["max"] / 1000,
            "mean": round(lat["mean"] / 1000, 3),
        },
        "stderr": done.stderr.strip()[-1000:] or None,
    }


def run_python_clients(
    base: str,
    key: str,
    *,
    clients: int,
    seconds: int,
    idempotency: bool = False,
    days: int = 1,
) -> dict[str, Any]:
    """Fallback: one thread per client, each with a keep-alive httpx client."""
    import random

    import httpx

    dates = effective_dates(days)
    debits = ["Assets:Receivable:Trade", "Assets:Bank:Operating", "Assets:Clearing:Manual"]
    lock = threading.Lock()
    latencies: list[float] = []
    counts = {"created_201": 0, "other_2xx": 0, "non_2xx": 0}
    stop = time.monotonic() + seconds
    run_id = uuid.uuid4().hex[:8]

    def client(seed: int) -> None:
        rng = random.Random(seed)
        mine: list[float] = []
        local = {"created_201": 0, "other_2xx": 0, "non_2xx": 0}
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
            i = 0
            while time.monotonic() < stop:
                i += 1
                cents = rng.randint(100, 99999)
                amount = f"{cents // 100}.{cents % 100:02d}"
                postings = [
                    {"account": debits[i % 3], "amount": amount, "currency": "USD"},
                    {"account": HOT_ACCOUNT, "amount": "-" + amount, "currency": "USD"},
                ]
                if i % 2:
                    tax = cents // 10
                    postings[0]["amount"] = f"{(cents + tax) // 100}.{(cents + tax) % 100:02d}"
                    postings.append(
                        {
                            "account": "Liabilities:Tax-Payable",
                            "amount": f"-{tax // 100}.{tax % 100:02d}",
                            "currency": "USD",
                        }
                    )
                body = {
                    "effective_date": dates[i % len(dates)],
                    "memo": "bench",
                    "postings": postings,
                }
                t0 = time.perf_counter()
                extra = {"Idempotency-Key": f"{run_id}-{seed}-{i}"} if idempotency else None
                r = http.post("/v1/journal-entries", json=body, headers=extra)
                mine.append((time.perf_counter() - t0) * 1000)
                if r.status_code == 201:
                    local["created_201"] += 1
                elif 200 <= r.status_code < 300:
                    local["other_2xx"] += 1
                else:
                    local["non_2xx"] += 1
        with lock:
            latencies.extend(mine)
            for k, v in local.items():
                counts[k] += v

    started = time.monotonic()
    workers = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    elapsed = time.monotonic() - started
    return {
        "load_generator": f"{clients} Python threads with httpx keep-alive clients "
        "(the client shares the CPUs with server and database: figures are pessimistic)",
        "requests": len(latencies),
        **counts,
        "seconds": round(elapsed, 3),
        "entries_per_s": round(counts["created_201"] / elapsed, 1),
        "latency_ms": {
            "p50": round(percentile(latencies, 50), 3),
            "p90": round(percentile(latencies, 90), 3),
            "p99": round(percentile(latencies, 99), 3),
            "max": round(max(latencies), 3),
        },
    }


def check_database(db: BenchDatabase, book_id: Any) -> dict[str, Any]:
    with db.connect() as conn:
        row = conn.execute(
            """
            select (select count(*) from journal_entries where book_id = %(b)s),
                   (select count(*) from postings where book_id = %(b)s),
                   (select coalesce(sum(p.amount), 0) from postings p
                      join accounts a on a.book_id = p.book_id and a.id = p.account_id
                     where p.book_id = %(b)s and a.name = %(hot)s),
                   (select coalesce(sum(ab.amount), 0) from account_balances ab
                      join accounts a on a.book_id = ab.book_id and a.id = ab.account_id
                     where ab.book_id = %(b)s and a.name = %(hot)s),
                   (select count(distinct slot) from account_balances ab
                      join accounts a on a.book_id = ab.book_id and a.id = ab.account_id
                     where ab.book_id = %(b)s and a.name = %(hot)s),
                   (select coalesce(sum(amount), 0) from postings where book_id = %(b)s)
            """,
            {"b": book_id, "hot": HOT_ACCOUNT},
        ).fetchone()
    assert row is not None
    entries, postings, hot_postings, hot_projection, slots, total = row
    return {
        "entries_in_db": entries,
        "postings_in_db": postings,
        "hot_account_sum_of_postings": str(hot_postings),
        "hot_account_materialized_balance": str(hot_projection),
        "hot_account_balance_slots_used": slots,
        "sum_of_all_postings": str(total),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2, help="load-generator threads")
    parser.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        help=f"server worker processes (serve's default: {DEFAULT_WORKERS} here)",
    )
    parser.add_argument("--pgbench-scale", type=int, default=8)
    parser.add_argument("--pgbench-seconds", type=int, default=None, help="default: --seconds")
    parser.add_argument("--python-client", action="store_true", help="do not use wrk")
    parser.add_argument(
        "--days",
        type=int,
        default=1,
        help="date the entries over this many days up to today, in turn (1: all today)",
    )
    parser.add_argument(
        "--server",
        choices=["granian", "uvicorn"],
        default=DEFAULT_SERVER,
        help=f"serve's HTTP stack (serve's default: {DEFAULT_SERVER})",
    )
    parser.add_argument(
        "--idempotency-key",
        action="store_true",
        help="send a fresh Idempotency-Key with every request (issue 14's figure)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=5000,
        help="entries posted via post_entries, then ANALYZE, before the server starts "
        "(0: start on empty tables, see README)",
    )
    args = parser.parse_args(argv)

    use_wrk = shutil.which("wrk") is not None and not args.python_client
    with bench_database() as db:
        book, key = create_bench_book(db)
        warm_up(db, book.id, args.warmup, datetime.now(UTC).date())
        with http_server(db, workers=args.workers, server=args.server) as base:
            # http_server starts serve in a session of its own: its group is its session.
            sid = server_pgid(base)
            cpu_before = session_cpu(sid)
            backends_before = backend_cpu(db)  # the server's pools are open by now
            if use_wrk:
                http = run_wrk(
                    base,
                    key,
                    clients=args.clients,
                    threads=args.threads,
                    seconds=args.seconds,
                    idempotency=args.idempotency_key,
                    days=args.days,
                )
            else:
                http = run_python_clients(
                    base,
                    key,
                    clients=args.clients,
                    seconds=args.seconds,
                    idempotency=args.idempotency_key,
                    days=args.days,
                )
            time.sleep(1.0)  # let requests cut off at the end finish their commit
            # The server's CPU per entry, robust to other load on the machine
            # (pgbench's ratio is not): µs by thread group, from /proc.
            http["server_cpu_us_per_entry"] = cpu_per_item(
                cpu_before, session_cpu(sid), http["created_201"], sid
            )
            # Its PostgreSQL backends' CPU per entry (the posting statement and its
            # triggers, the sealer, the polling workers), from /proc by their pids.
            backends = backend_cpu_since(db, backends_before)
            if backends is not None:
                http["backends_cpu_us_per_entry"] = round(
                    backends * 1e6 / max(http["created_201"], 1), 1
                )
        check = check_database(db, book.id)
        pgbench = run_pgbench(
            db,
            scale=args.pgbench_scale,
            clients=args.clients,
            threads=args.threads,
            seconds=args.pgbench_seconds or args.seconds,
        )
        info = db.server_info()

    in_flight = check["entries_in_db"] - args.warmup - http["created_201"]
    correct = {
        "db_entries_minus_warmup_minus_201_responses": in_flight,
        "entries_match_201_responses": 0 <= in_flight <= args.clients,
        "no_non_2xx": http["non_2xx"] == 0 and http["other_2xx"] == 0,
        "hot_projection_matches_postings": check["hot_account_sum_of_postings"]
        == check["hot_account_materialized_balance"],
        "all_postings_sum_to_zero": check["sum_of_all_postings"] in ("0", "0.00"),
    }
    value = ratio(http["entries_per_s"], pgbench.get("tps"))
    emit(
        {
            "benchmark": "post_http",
            "command": "python -m benchmarks.post_http "
            + " ".join(sys.argv[1:] if argv is None else argv),
            "setup": {
                "server": f"activebilling serve --workers {args.workers} --server {args.server}",
                "clients": args.clients,
                "entries": "alternating 2-posting (debit asset / credit Income:Subscriptions) "
                "and 3-posting (… / Income:Subscriptions / Liabilities:Tax-Payable) entries, "
                + (
                    "a fresh Idempotency-Key on each"
                    if args.idempotency_key
                    else "no Idempotency-Key header"
                )
                + (
                    ", dated today"
                    if args.days <= 1
                    else f", dated over the {args.days} days up to today"
                ),
                "warm_up": f"{args.warmup} entries via post_entries, then VACUUM ANALYZE",
                **info,
            },
            "http": http,
            "database_check": check,
            "correctness": correct,
            "pgbench_tpcb": pgbench,
            "ratio_entries_per_s_to_pgbench_tps": value,
            "goal": f"ratio >= {GOAL}",
            "goal_met": value is not None and value >= GOAL,
        }
    )
    return 0 if all(correct.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
