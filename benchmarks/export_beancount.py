"""Beancount export of a 1M-posting book: postings/s, against beancount's own load time.

    .venv/bin/python -m benchmarks.export_beancount [--postings 1000000] [--no-load]

The book is the one `benchmarks.reads` builds (2- and 3-posting entries over
1,096 days, ~30 accounts), posted through `post_entries` in batches of
1,000 as the application role, and sealed by the real sealer. The export streams from a
server-side cursor to a file; the baseline is beancount 3's
`loader.load_file` of the produced file in the same run (it parses, books,
and checks every balance assertion): the ratio says how the export compares
with merely reading the file back. The loader must report zero errors.
Peak RSS is reported for the export alone (it runs before the loader), with the
export's client CPU, its backend's CPU (from /proc, when the server is local), the
load average and the file's sha256 (the same book gives the same file).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from adapters.exports.beancount import ExportRange, begin_snapshot, export_beancount
from benchmarks._common import (
    account_ids,
    analyze,
    backend_cpu_seconds,
    bench_database,
    create_bench_book,
    emit,
    ratio,
)
from benchmarks.reads import DAYS, debit_accounts, load_post_entries
from ledger.postgres.sealer import seal_pending


def _rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postings", type=int, default=1_000_000)
    parser.add_argument("--no-load", action="store_true", help="skip beancount's loader")
    args = parser.parse_args(argv)
    entries = round(args.postings / 2.5)
    last = datetime.now(UTC).date() - timedelta(days=1)
    start = last - timedelta(days=DAYS - 1)
    with bench_database() as db, tempfile.TemporaryDirectory(prefix="ab-bean-") as tmp:
        book, _ = create_bench_book(db)
        debits = debit_accounts(account_ids(db, book.id))
        t0 = time.perf_counter()
        load_post_entries(db, book.id, entries, start, debits)
        load_s = time.perf_counter() - t0
        analyze(db)
        t0 = time.perf_counter()
        sealed = seal_pending(lambda: db.connect(app_role=True), book.id)
        seal_s = time.perf_counter() - t0
        with db.connect(app_role=True) as conn:
            row = conn.execute(
                "select count(*) from postings where book_id = %s", (book.id,)
            ).fetchone()
            conn.rollback()
        postings = int(row[0]) if row else 0
        out = Path(tmp) / "book.beancount"
        rss_before = _rss_mb()
        load_before = os.getloadavg()[0]
        t0 = time.perf_counter()
        with db.connect(app_role=True) as conn, out.open("w", encoding="utf-8") as handle:
            pid = conn.info.backend_pid
            server0, client0 = backend_cpu_seconds([pid]), time.process_time()
            begin_snapshot(conn)
            for chunk in export_beancount(conn, book.id, ExportRange()):
                handle.write(chunk)
            conn.rollback()
            server1, client1 = backend_cpu_seconds([pid]), time.process_time()
        export_s = time.perf_counter() - t0
        load_after = os.getloadavg()[0]
        server_cpu = None if server0 is None or server1 is None else round(server1 - server0, 2)
        rss_export = _rss_mb()
        digest = hashlib.sha256()
        with out.open("rb") as produced:  # after the RSS reading, in pieces
            while piece := produced.read(1 << 20):
                digest.update(piece)
        size = out.stat().st_size
        loader: dict[str, object] = {"skipped": True}
        load_file_s = None
        if not args.no_load:
            from beancount import loader as bean_loader

            t0 = time.perf_counter()
            loaded, errors, _ = bean_loader.load_file(str(out))
            load_file_s = time.perf_counter() - t0
            loader = {
                "seconds": round(load_file_s, 3),
                "errors": len(errors),
                "first_errors": [str(e.message) for e in errors[:3]],
                "directives": len(loaded),
                "postings_per_s": round(postings / load_file_s),
            }
        info = db.server_info()
    emit(
        {
            "benchmark": "export_beancount",
            "command": "python -m benchmarks.export_beancount "
            + " ".join(sys.argv[1:] if argv is None else argv),
            "data": {
                "entries": sealed,
                "postings": postings,
                "days": DAYS,
                "generated_by": "post_entries, batches of 1,000 (benchmarks.reads)",
                "load_s": round(load_s, 2),
                "seal_s": round(seal_s, 2),
            },
            "export": {
                "seconds": round(export_s, 3),
                "postings_per_s": round(postings / export_s),
                "bytes": size,
                "peak_rss_mb_before": rss_before,
                "peak_rss_mb_after_export": rss_export,
                "client_cpu_s": round(client1 - client0, 2),
                "server_backend_cpu_s": server_cpu,
                "load_average_before_after": [load_before, load_after],
                "sha256": digest.hexdigest(),
            },
            "beancount_load_file": loader,
            "ratio_export_over_load_time": ratio(export_s, load_file_s),
            "server": info,
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
