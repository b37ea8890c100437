"""The embedded PostgreSQL: two processes starting it at once share one server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import sys
import time
from pathlib import Path
import psycopg
from adapters.database import embedded_url
url = embedded_url(Path(sys.argv[1]))
with psycopg.connect(url) as conn:
    print(conn.execute("select current_database(), pg_postmaster_start_time()").fetchone())
    time.sleep(float(sys.argv[2]))  # stay on the server so the two processes overlap
"""


@pytest.mark.slow
def test_two_processes_starting_it_at_once_share_one_server(tmp_path: Path) -> None:
    data_dir = tmp_path / "pgdata"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(data_dir), "4"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], [err for _, err in outputs]
    started = {out.strip() for out, _ in outputs}
    # Both reached the same database of the same postmaster (one start time).
    assert len(started) == 1, started
    assert "activebilling" in started.pop()
    # The last process out stopped the server cleanly: the data directory can start again.
    again = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(data_dir), "0"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert again.returncode == 0, again.stderr
