"""Request metrics under `serve --workers N` (prometheus_client's multiprocess mode):
each worker's increments reach the shared directory under its own pid, without a
getpid system call per increment, and a forked child writes files of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import json, os, sys
from adapters.http.operations import Telemetry
from prometheus_client import values
telemetry = Telemetry()
calls = []
real_getpid = os.getpid
os.getpid = lambda: calls.append(1) or real_getpid()
for _ in range(3):
    telemetry.observe("/v1/journal-entries", "POST", 201, 0.003)
os.getpid = real_getpid
child = os.fork()
if child == 0:
    telemetry.observe("/v1/journal-entries", "POST", 201, 0.003)
    os._exit(0)
os.waitpid(child, 0)
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
registry = CollectorRegistry()
MultiProcessCollector(registry)
text = generate_latest(registry).decode()
line = [x for x in text.splitlines() if x.startswith("activebilling_http_requests_total{")][0]
print(json.dumps({
    "getpid_calls": len(calls),
    "cached": getattr(values.ValueClass, "_cached_pid", False),
    "parent": os.getpid(),
    "child": child,
    "total": float(line.rsplit(" ", 1)[1]),
}))
"""


def test_workers_count_under_their_own_pid_without_asking_it_each_time(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["cached"] is True
    assert found["getpid_calls"] == 0
    assert found["total"] == 4.0  # three in the parent, one in the child
    files = {p.name for p in tmp_path.iterdir()}
    assert f"counter_{found['parent']}.db" in files
    assert f"counter_{found['child']}.db" in files
