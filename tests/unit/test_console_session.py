"""Console session cookies: signed, expiring, and shared by processes that share
ACTIVEBILLING_CONSOLE_SECRET (serve sets it once for all its workers)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

from adapters.console import session as sessions

BOOK, KEY = uuid.uuid4(), uuid.uuid4()


def test_round_trip_expiry_and_tampering() -> None:
    token = sessions.sign(sessions.Session(BOOK, KEY, "csrf", 1000), secret=b"s")
    assert sessions.verify(token, 999, secret=b"s") == sessions.Session(BOOK, KEY, "csrf", 1000)
    assert sessions.verify(token, 1000, secret=b"s") is None  # expired
    assert sessions.verify(token, 999, secret=b"other") is None
    payload, _, mac = token.rpartition(".")
    forged = sessions.sign(sessions.Session(BOOK, uuid.uuid4(), "csrf", 1000), secret=b"x")
    assert sessions.verify(forged.rpartition(".")[0] + "." + mac, 999, secret=b"s") is None
    assert sessions.verify(payload, 999, secret=b"s") is None
    assert sessions.verify("", 999) is None and sessions.verify(None, 999) is None
    assert "=" not in token and '"' not in token  # a cookie value without quoting


def test_processes_sharing_the_secret_share_sessions() -> None:
    env = {**os.environ, "ACTIVEBILLING_CONSOLE_SECRET": "shared-for-test"}
    code = (
        "import sys, uuid; from adapters.console import session as s;"
        "print(s.sign(s.Session(uuid.UUID(sys.argv[1]), uuid.UUID(sys.argv[2]), 't', 2**40)))"
    )
    made = subprocess.run(
        [sys.executable, "-c", code, str(BOOK), str(KEY)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    check = (
        "import sys, time; from adapters.console import session as s;"
        "print(s.verify(sys.argv[1], time.time()) is not None)"
    )
    answer = subprocess.run(
        [sys.executable, "-c", check, made], env=env, capture_output=True, text=True, check=True
    )
    assert answer.stdout.strip() == "True"
    other = {**env, "ACTIVEBILLING_CONSOLE_SECRET": "another"}
    answer = subprocess.run(
        [sys.executable, "-c", check, made], env=other, capture_output=True, text=True, check=True
    )
    assert answer.stdout.strip() == "False"
