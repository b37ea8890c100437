"""The command line as a process: `serve` announces itself only when it answers,
`dev.py` passes signals on to its child, and a closed pipe ends a command quietly."""

from __future__ import annotations

import http.client
import importlib.util
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import IO

import pytest

from tests.integration.test_cli import CLI

pytestmark = pytest.mark.slow  # each case starts Python processes

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def lines_of(stream: IO[str]) -> queue.Queue[str]:
    """The stream's lines as they come, read by a thread (so a test never blocks on it)."""
    found: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            found.put(line)
        found.put("")

    threading.Thread(target=pump, daemon=True).start()
    return found


def cli_env(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTIVEBILLING_")}
    env["DATABASE_URL"] = database_url
    return env


@pytest.mark.parametrize(
    ("workers", "stack"),
    [("1", "uvicorn"), ("2", "uvicorn"), ("2", "granian")],  # with 2, the server binds first
)
def test_serve_says_listening_only_once_the_port_answers(
    database_url: str, workers: str, stack: str, tmp_path: Path
) -> None:
    port = free_port()
    server = subprocess.Popen(
        [str(CLI), "serve", "--port", str(port), "--workers", workers, "--server", stack],
        # Its own TMPDIR: the metrics directory it makes for its workers is seen to go.
        env={**cli_env(database_url), "TMPDIR": str(tmp_path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its workers can be killed with it if it hangs
    )
    try:
        assert server.stderr is not None
        stderr = lines_of(server.stderr)
        seen = []
        while True:
            line = stderr.get(timeout=120)
            assert line, f"serve ended before it said it listens: {''.join(seen)}"
            seen.append(line)
            if "listening on" in line:
                break
        assert f"http://127.0.0.1:{port}" in seen[-1]
        # At once, no retry: the announcement promises the server answers now.
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", "/health")
        response = connection.getresponse()
        assert response.status == 200
        assert response.read() == b'{"status":"ok"}'
        connection.close()
        if workers != "1":
            assert [p.name[:22] for p in tmp_path.iterdir()] == ["activebilling-metrics-"]
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            # Still a failure, but its workers must not outlive the test and act on
            # the database later tests use (seal their queues, send their mail).
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
            raise
    assert list(tmp_path.iterdir()) == []  # the server removed what it made


def load_dev() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dev", ROOT / "dev.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dev_forwarding_runs_the_command_and_returns_its_exit_code() -> None:
    dev = load_dev()
    assert dev.forward_signals([sys.executable, "-c", "raise SystemExit(3)"]) == 3
    assert dev.forward_signals([sys.executable, "-c", "pass"]) == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_dev_py_passes_the_signal_to_its_child_and_exits_with_its_code(
    tmp_path: Path, signum: signal.Signals
) -> None:
    """dev.py's runner (as `dev.py serve` uses it) over a small child that reports the
    signal it received: killing dev.py must stop the child, not orphan it."""
    child = (
        "import signal, sys, time\n"
        "def stop(signum, frame):\n"
        f"    open({str(tmp_path / 'got')!r}, 'w').write(str(signum))\n"
        "    sys.exit(7)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "signal.signal(signal.SIGINT, stop)\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('dev', {str(ROOT / 'dev.py')!r})\n"
        "dev = importlib.util.module_from_spec(spec); spec.loader.exec_module(dev)\n"
        f"sys.exit(dev.forward_signals([sys.executable, '-c', {child!r}]))\n"
    )
    runner = subprocess.Popen(
        [sys.executable, "-c", parent],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a terminal's Ctrl-C would reach the child anyway
    )
    assert runner.stdout is not None
    assert lines_of(runner.stdout).get(timeout=60) == "ready\n"
    runner.send_signal(signum)
    assert runner.wait(timeout=60) == 7
    assert (tmp_path / "got").read_text() == str(int(signum))


def test_a_command_piped_into_a_closed_reader_exits_quietly(database_url: str) -> None:
    """`activebilling books list | head -0`: no BrokenPipeError traceback."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the command writes
    try:
        result = subprocess.run(
            [str(CLI), "books", "list", "--format", "json"],
            env=cli_env(database_url),
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write)
    assert "Traceback" not in result.stderr
    assert "BrokenPipe" not in result.stderr
    assert result.returncode == 141
