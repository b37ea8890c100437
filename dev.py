#!/usr/bin/env python3
"""The README's two commands, on a machine with nothing but Python 3.11+.

    python3 dev.py serve   # set up, start embedded PostgreSQL, print URL + API key, serve
    python3 dev.py test    # set up, then ruff, mypy and the whole pytest suite

Setup is a virtual environment in .venv with the project installed editable;
it is refreshed whenever pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".activebilling-installed"


FORWARDED = ("SIGINT", "SIGTERM", "SIGHUP")


def forward_signals(command: list[str]) -> int:
    """Run `command`, passing SIGINT, SIGTERM and SIGHUP on to it, and return its
    exit code as a shell reports it (128 + N when signal N ended it). Without
    this, killing `dev.py serve` left the server running with no parent. The child
    gets its own session, so a Ctrl-C in the terminal reaches it once (from here), not
    twice, which uvicorn would take as "exit now, without a graceful shutdown"."""
    child = subprocess.Popen(command, cwd=ROOT, start_new_session=True)

    def relay(signum: int, _frame: object) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    for name in FORWARDED:
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), relay)
    while True:
        try:
            code = child.wait()
            break
        except KeyboardInterrupt:  # only if SIGINT arrived before the handler was set
            relay(signal.SIGINT, None)
    return 128 - code if code < 0 else code


def run(*args: str | Path) -> None:
    code = forward_signals([str(a) for a in args])
    if code != 0:
        sys.exit(code)


def setup() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036  (this file runs on any python3)
        sys.exit("Active Billing needs Python 3.11 or newer")
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not (BIN / "python").exists():
        print("creating .venv", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("installing Active Billing and its dependencies into .venv", file=sys.stderr)
    run(BIN / "python", "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(BIN / "python", "-m", "pip", "install", "--quiet", "-e", ".[dev]")
    STAMP.write_text(wanted)


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    rest = sys.argv[2:]
    if command == "serve":
        setup()
        run(BIN / "activebilling", "serve", "--bootstrap", *rest)
    elif command == "test":
        setup()
        lint = "--no-lint" not in rest
        rest = [a for a in rest if a != "--no-lint"]
        if lint:
            run(BIN / "ruff", "check", ".")
            run(BIN / "ruff", "format", "--check", ".")
            run(BIN / "mypy")
        run(BIN / "python", "-m", "pytest", *rest)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
