"""Operating the service: request ids, Prometheus metrics, the audit log, rate limits
and structured logs — one wrapper around every HTTP request, plus `GET /metrics`.

- Every response carries `X-Request-Id` (the caller's, when it sent a sane one, else
  a new one); problem documents name it as `request_id` (adapters.http.problems).
- `/metrics` (Prometheus text, no key): requests by route template, method and status,
  latency histograms by route, and what the database says at scrape time — entries
  posted, unsealed entries and the oldest one's age, webhook backlog, billing runs,
  collection runs and their transactions in flight, pool use. Under `serve
  --workers N` the request metrics of all workers are summed
  (prometheus_client's multiprocess mode, a directory `serve` sets up).
- The audit log: every POST, PUT, PATCH and DELETE made with a key (key, role,
  method, path, status, Idempotency-Key, request id, the id a 201 created). A
  command run through adapters.http.commands.run_command (the billing, payment,
  customer, invoice… routes) writes its row in its own transaction when it
  succeeds: the row commits with the change. Every other row (refusals, replays,
  the journal-entry routes, whose one-round-trip hot path has no room for it) is
  appended by a writer thread in batches after the response: a crash (or
  SIGKILL) of the worker between the commit and the batch's COPY loses that row
  (at most the last 0.2 s of rows), never the business write. For journal entries
  the ledger itself (entries with their idempotency keys and `recorded_at`) is
  the record of what moved; the audit log says who asked. (Command-line
  mutations: adapters.cli.audit.)
- Rate limits: a token bucket per key and process, from the book's `rate_limit`
  setting (`{"requests_per_second", "burst"}`; none by default): 429 with
  `Retry-After`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import os
import queue
import re
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Response, get
from litestar.datastructures import State
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import values as prometheus_values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from adapters.http.problems import ApiError
from adapters.http.request_context import REQUEST_ID
from adapters.keys import Principal
from adapters.runtime import Runtime

__all__ = [
    "AuditWriter",
    "JsonLogFormatter",
    "RateLimiter",
    "Telemetry",
    "metrics_endpoint",
    "with_operations",
]

access_log = logging.getLogger("activebilling.access")
log = logging.getLogger("activebilling.operations")

_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
MUTATIONS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


# This process's id, kept up to date at fork (below) instead of asked each time.
_PID = os.getpid()


def _pid() -> int:
    return _PID


def _cached_pid_values() -> None:
    """prometheus_client's multiprocess values (`serve --workers N`) call os.getpid()
    at every increment to notice a fork: a system call, three a request (~4 % of a
    worker's event loop under benchmarks/post_http). They get the pid kept at fork
    time instead. Done before this process makes its first metric (Telemetry is
    the only maker), so every value shares the one set of files."""
    if getattr(prometheus_values.ValueClass, "_multiprocess", False) and not getattr(
        prometheus_values.ValueClass, "_cached_pid", False
    ):
        cls = prometheus_values.MultiProcessValue(process_identifier=_pid)  # type: ignore[no-untyped-call]
        cls._cached_pid = True
        prometheus_values.ValueClass = cls


class Telemetry:
    """The request metrics of one app (its own registry, so tests can build many)."""

    def __init__(self) -> None:
        _cached_pid_values()
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "activebilling_http_requests",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "activebilling_http_request_seconds",
            "Time to answer, by route template and method",
            ["route", "method"],
            registry=self.registry,
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )

        # prometheus_client's labels() validates and hashes on every call; a route's
        # children are looked up once and kept.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route, method),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)


class RateLimiter:
    """Token buckets per API key, in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[uuid.UUID, tuple[float, float]] = {}  # key → (tokens, at)

    def take(self, principal: Principal, now: float | None = None) -> None:
        if principal.rate_limit is None:
            return
        rate, burst = principal.rate_limit
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, at = self._buckets.get(principal.key_id, (burst, now))
            tokens = min(burst, tokens + (now - at) * rate)
            if tokens < 1:
                self._buckets[principal.key_id] = (tokens, now)
                wait = math.ceil((1 - tokens) / rate)
                raise ApiError(
                    429,
                    "rate_limited",
                    f"this key may make {rate:g} requests a second (burst {burst:g});"
                    f" try again in {wait} s",
                    retry_after=wait,
                )
            self._buckets[principal.key_id] = (tokens - 1, now)


class AuditWriter:
    """Appends audit rows in batches from a thread of its own, after the responses."""

    def __init__(self, runtime: Runtime, interval: float = 0.2) -> None:
        self.runtime = runtime
        self.interval = interval
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="audit-log", daemon=True)
        self._thread.start()

    def record(self, row: tuple[Any, ...]) -> None:
        self._queue.put(row)

    def _drain(self, first: tuple[Any, ...] | None) -> tuple[list[tuple[Any, ...]], bool]:
        rows, stop = ([] if first is None else [first]), first is None
        while not stop:
            try:
                more = self._queue.get_nowait()
            except queue.Empty:
                break
            if more is None:
                stop = True
            else:
                rows.append(more)
        return rows, stop

    def _run(self) -> None:
        stop = False
        while not stop:
            rows, stop = self._drain(self._queue.get())
            if rows:
                self._write(rows)
            if not stop:
                time.sleep(self.interval)

    def _write(self, rows: list[tuple[Any, ...]]) -> None:
        try:
            # COPY: a batch costs the database one statement, not one per request.
            with self.runtime.connection() as conn:
                with (
                    conn.cursor() as cur,
                    cur.copy(
                        "copy audit_log (book_id, at, key_id, role, method, path, status,"
                        " idempotency_key, request_id, created) from stdin"
                    ) as copy,
                ):
                    for row in rows:
                        copy.write_row(row)
                conn.commit()
        except Exception:  # the service goes on; the log says what was not recorded
            log.exception("audit log: %d rows not written", len(rows))

    def close(self) -> None:
        """Write what is queued, then stop."""
        self._queue.put(None)
        self._thread.join(timeout=10)


class _Created(msgspec.Struct):
    id: str | None = None


# Only the top-level "id" is built; the rest of a large 201 (a batch of entries)
# is skipped by the decoder, not materialized.
_created_decoder = msgspec.json.Decoder(_Created)


def _created_id(body: bytes) -> list[str]:
    with contextlib.suppress(msgspec.DecodeError):  # not an object, or id not a string
        found = _created_decoder.decode(body).id
        return [found] if found is not None else []
    return []


# A request id: 32 hex digits, unique without a urandom call per request (uuid4
# costs a syscall): a random per-process prefix and a counter.
_ID_PREFIX = uuid.uuid4().hex[:20]
_id_counter = itertools.count(1)


def _new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_id_counter) & 0xFFFFFFFFFFFF:012x}"


def _new_prefix() -> None:  # a forked worker must not repeat its parent's ids
    global _ID_PREFIX, _PID
    _ID_PREFIX = uuid.uuid4().hex[:20]
    _PID = os.getpid()


os.register_at_fork(after_in_child=_new_prefix)


async def with_operations(
    state: Any, inner: Any, scope: Any, receive: Any, send: Any, direct: Any = None
) -> None:
    """Run one HTTP request through `inner` (the app) with its id, metrics, access log
    line and audit row. Wraps the whole app, not a route: a 404 is counted too.

    `direct(state, scope, receive, send)`, when given, may answer first (None), else
    returns the receive `inner` reads the request from (adapters.http.direct_post).
    It is called here, not by a wrapper of `inner`: a frame more under the route
    would lower the nesting a JSON body may have before the decoder's recursion
    limit (tests/integration/test_hostile_input.py)."""
    headers = dict(scope.get("headers") or ())
    given = headers.get(b"x-request-id", b"").decode("latin-1")
    request_id = given if given and _SANE_ID.fullmatch(given) else _new_request_id()
    token = REQUEST_ID.set(request_id)
    scope.setdefault("state", {})["request_id"] = request_id
    started = time.perf_counter()
    method: str = scope["method"]
    answer: dict[str, Any] = {"status": 500, "body": []}

    async def send_with_id(message: Any) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
            message["headers"] = [
                *message.get("headers", ()),
                (b"x-request-id", request_id.encode()),
            ]
        elif (
            message["type"] == "http.response.body"
            and answer["status"] == 201
            and method in MUTATIONS
        ):
            answer["body"].append(message.get("body", b""))
        await send(message)

    try:
        if direct is not None and method == "POST":
            receive = await direct(state, scope, receive, send_with_id)
            if receive is None:
                return
        await inner(scope, receive, send_with_id)
    finally:
        REQUEST_ID.reset(token)
        _after(state, scope, method, headers, answer, request_id, time.perf_counter() - started)


def _after(
    state: Any,
    scope: Any,
    method: str,
    headers: dict[bytes, bytes],
    answer: dict[str, Any],
    request_id: str,
    seconds: float,
) -> None:
    status: int = answer["status"]
    route = scope.get("path_template") or "unmatched"
    telemetry: Telemetry | None = state.get("telemetry")
    if telemetry is not None:
        telemetry.observe(route, method, status, seconds)
    principal: Principal | None = scope.get("state", {}).get("principal")
    if access_log.isEnabledFor(logging.INFO):  # off by default: skip building the line
        access_log.info(
            "request",
            extra={
                "request_id": request_id,
                "method": method,
                "path": scope["path"],
                "status": status,
                "ms": round(seconds * 1000, 2),
                "key_id": str(principal.key_id) if principal else None,
            },
        )
    audit: AuditWriter | None = state.get("audit")
    if audit is None or principal is None or method not in MUTATIONS:
        return
    if scope.get("state", {}).get("audited"):  # written in the command's own transaction
        return
    idempotency = headers.get(b"idempotency-key")
    audit.record(
        (
            principal.book_id,
            datetime.now(UTC),
            principal.key_id,
            principal.role.value,
            method,
            scope["path"],
            status,
            idempotency.decode("latin-1") if idempotency else None,
            request_id,
            _created_id(b"".join(answer["body"])) if status == 201 else [],
        )
    )


class _DatabaseCollector(Collector):
    """What the database says at scrape time, for every book of the service."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterable[GaugeMetricFamily]:
        with self.runtime.connection() as conn:
            posted, unsealed, oldest, backlog = conn.execute(
                "select (select coalesce(sum(n_tup_ins), 0) from pg_stat_user_tables"
                "   where relname = 'journal_entries'),"
                " (select count(*) from unsealed_entries),"
                " (select coalesce(extract(epoch from now() - min(e.recorded_at)), 0)"
                "   from unsealed_entries u join journal_entries e"
                "   on e.book_id = u.book_id and e.id = u.entry_id),"
                " (select count(*) from webhook_deliveries where status in ('pending', 'sending'))"
            ).fetchone() or (0, 0, 0, 0)
            runs = conn.execute(
                "select status, count(*), coalesce(sum(invoices_created), 0)"
                " from billing_runs group by status"
            ).fetchall()
            # Direct-debit collection runs: a run is submitted until the bank settles
            # it; its transactions are pending until settled or returned.
            collection_runs = conn.execute(
                "select status, count(*) from collection_runs group by status"
            ).fetchall()
            collections = conn.execute(
                "select status, count(*) from collection_transactions group by status"
            ).fetchall()
            conn.rollback()
        yield GaugeMetricFamily(
            "activebilling_entries_posted",
            "Journal entries inserted (server statistics)",
            value=float(posted),
        )
        yield GaugeMetricFamily(
            "activebilling_unsealed_entries", "Committed entries not yet sealed", value=unsealed
        )
        yield GaugeMetricFamily(
            "activebilling_oldest_unsealed_seconds",
            "Age of the oldest unsealed entry",
            value=float(oldest),
        )
        yield GaugeMetricFamily(
            "activebilling_webhook_backlog", "Webhook deliveries waiting to be sent", value=backlog
        )
        by_status = GaugeMetricFamily(
            "activebilling_billing_runs", "Billing runs by status", labels=["status"]
        )
        made = GaugeMetricFamily(
            "activebilling_billing_run_invoices",
            "Invoices made by billing runs, by run status",
            labels=["status"],
        )
        for status, count, invoices in runs:
            by_status.add_metric([status], count)
            made.add_metric([status], float(invoices))
        yield by_status
        yield made
        collection_by_status = GaugeMetricFamily(
            "activebilling_collection_runs", "Collection runs by status", labels=["status"]
        )
        runs_by_status: dict[str, int] = {row[0]: row[1] for row in collection_runs}
        for status in ("submitted", "settled"):  # both, so a dashboard sees a 0
            collection_by_status.add_metric([status], float(runs_by_status.get(status, 0)))
        yield collection_by_status
        transactions = GaugeMetricFamily(
            "activebilling_collection_transactions",
            "Collection transactions by status (pending: in flight at the bank)",
            labels=["status"],
        )
        by_transaction_status: dict[str, int] = {row[0]: row[1] for row in collections}
        for status in ("pending", "settled", "returned"):
            transactions.add_metric([status], float(by_transaction_status.get(status, 0)))
        yield transactions
        stats = self.runtime.pool.get_stats()
        pool = GaugeMetricFamily(
            "activebilling_pool_connections", "The sync connection pool", labels=["state"]
        )
        for name in ("pool_size", "pool_available", "requests_waiting"):
            pool.add_metric([name], float(stats.get(name, 0)))
        yield pool


@get(
    "/metrics",
    operation_id="metrics",
    summary="Prometheus metrics of the service (no key)",
    sync_to_thread=True,
)
def metrics_endpoint(state: State) -> Response[bytes]:
    """Prometheus text; no key (operators scrape it from the private network)."""
    telemetry: Telemetry = state.telemetry
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        requests_registry = CollectorRegistry()
        MultiProcessCollector(requests_registry)  # type: ignore[no-untyped-call]
    else:
        requests_registry = telemetry.registry
    database = CollectorRegistry()
    database.register(_DatabaseCollector(state.runtime))
    body = generate_latest(requests_registry) + generate_latest(database)
    return Response(content=body, media_type=PROMETHEUS_TEXT)


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the request's fields."""

    FIELDS = ("request_id", "method", "path", "status", "ms", "key_id")

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in self.FIELDS:
            if hasattr(record, name):
                line[name] = getattr(record, name)
        if "request_id" not in line and REQUEST_ID.get() is not None:
            line["request_id"] = REQUEST_ID.get()
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)
