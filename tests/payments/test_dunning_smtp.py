"""The SMTP sender against a real local SMTP server (aiosmtpd): reminders queued by
a dunning run are delivered once each, even with two senders racing; a server
that cannot be reached leaves the message queued with a later retry, and after
the last retry it is `failed`. The CLI runs the same dunning and sending."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from adapters.messages.smtp import RETRY_SECONDS, MessageSender
from adapters.runtime import Runtime
from tests.conftest import BookFixture, make_book
from tests.integration.http_fixtures import auth, open_client, sessions_in_transaction
from tests.payments.helpers import create_customer, create_invoice


class Inbox:
    def __init__(self) -> None:
        self.mails: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append(envelope)
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


@pytest.fixture
def sim_book(runtime: Runtime) -> BookFixture:
    return make_book(runtime, "USD", date(2026, 2, 2))


def _reminders(client: Any, key: str, count: int) -> list[dict[str, Any]]:
    """`count` invoices due Mar 4, dunned on Mar 1: one reminder each."""
    for n in range(count):
        customer = create_customer(client, key, email=f"ap{n}@acme.test")
        create_invoice(client, key, customer["id"])
    client.post("/v1/clock", json={"now": "2026-03-01"}, headers=auth(key))
    run = client.post("/v1/dunning-runs", json={"as_of": "2026-03-01"}, headers=auth(key))
    assert run.status_code == 201 and run.json()["reminders"] == count, run.text
    found: list[dict[str, Any]] = client.get("/v1/messages", headers=auth(key)).json()["data"]
    return found


def _smtp(client: Any, key: str, port: int, **extra: Any) -> None:
    body = {"smtp": {"host": "127.0.0.1", "port": port, "from": "billing@book.test", **extra}}
    changed = client.patch("/v1/book/settings", json=body, headers=auth(key))
    assert changed.status_code == 200, changed.text


def test_reminders_are_delivered_to_the_smtp_server_once_each(
    client: Any, runtime: Runtime, sim_book: BookFixture, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, port = smtp_server
    key = sim_book.admin_key
    queued = _reminders(client, key, 5)
    sender = MessageSender(runtime.connection, books=[sim_book.id])
    assert sender.send_due() == 0  # no smtp configured: the messages wait
    _smtp(client, key, port, username="mailer", password="s3cret-password")
    shown = client.get("/v1/book", headers=auth(key)).json()["settings"]["smtp"]
    assert (shown["username"], shown["password"]) == ("****", "****word")  # write-only
    _smtp(client, key, port, username=None, password=None)  # aiosmtpd here offers no AUTH
    racers = [MessageSender(runtime.connection, books=[sim_book.id]) for _ in range(2)]
    threads = [threading.Thread(target=r.send_due) for r in racers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sender.send_due() == 0
    assert len(inbox.mails) == 5  # two senders, five messages, five mails
    paged = client.get("/v1/messages?limit=3", headers=auth(key)).json()
    rest = client.get(f"/v1/messages?cursor={paged['next_cursor']}", headers=auth(key)).json()
    assert [m["id"] for m in paged["data"] + rest["data"]] == [m["id"] for m in queued]
    assert rest["next_cursor"] is None
    by_id = {message_from_bytes(m.content)["X-ActiveBilling-Message"]: m for m in inbox.mails}
    assert set(by_id) == {m["id"] for m in queued}
    first = queued[0]
    mail = by_id[first["id"]]
    parsed = message_from_bytes(mail.content)
    assert (mail.mail_from, mail.rcpt_tos) == ("billing@book.test", [first["recipient"]])
    assert parsed["Subject"] == first["subject"]
    assert "Amount due: 108.00 USD" in parsed.get_payload()
    listed = client.get("/v1/messages?status=sent", headers=auth(key)).json()["data"]
    assert [(m["status"], m["attempts"]) for m in listed] == [("sent", 1)] * 5
    assert all(m["sent_at"] for m in listed)


def test_an_unreachable_server_is_retried_with_backoff_then_failed(
    client: Any, runtime: Runtime, sim_book: BookFixture, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, port = smtp_server
    key = sim_book.admin_key
    [message] = _reminders(client, key, 1)
    _smtp(client, key, _free_port())  # nothing listens there
    now = datetime.now(UTC) + timedelta(seconds=5)
    sender = MessageSender(runtime.connection, books=[sim_book.id], clock=lambda: now)
    assert sender.send_due() == 1
    [after] = client.get("/v1/messages", headers=auth(key)).json()["data"]
    assert (after["status"], after["attempts"]) == ("queued", 1)
    assert after["last_error"]
    assert datetime.fromisoformat(after["next_attempt_at"]) == now + timedelta(seconds=60)
    assert sender.send_due() == 0  # not due again before its backoff
    for delay in RETRY_SECONDS[:-1]:
        now += timedelta(seconds=delay)
        assert sender.send_due() == 1
    [queued] = client.get("/v1/messages", headers=auth(key)).json()["data"]
    assert (queued["status"], queued["attempts"]) == ("queued", len(RETRY_SECONDS))
    _smtp(client, key, port)  # the server is back for the last try
    now += timedelta(seconds=RETRY_SECONDS[-1])
    assert sender.send_due() == 1
    [sent] = client.get("/v1/messages", headers=auth(key)).json()["data"]
    assert (sent["status"], sent["attempts"], sent["id"]) == (
        "sent",
        len(RETRY_SECONDS) + 1,
        message["id"],
    )
    assert len(inbox.mails) == 1


def test_the_last_failure_marks_the_message_failed(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    _reminders(client, key, 1)
    _smtp(client, key, _free_port())
    now = datetime.now(UTC) + timedelta(seconds=5)
    sender = MessageSender(runtime.connection, books=[sim_book.id], clock=lambda: now)
    for delay in (0, *RETRY_SECONDS):
        now += timedelta(seconds=delay)
        assert sender.send_due() == 1
    [failed] = client.get("/v1/messages", headers=auth(key)).json()["data"]
    assert (failed["status"], failed["attempts"]) == ("failed", len(RETRY_SECONDS) + 1)
    now += timedelta(days=1)
    assert sender.send_due() == 0


@pytest.mark.slow
def test_cli_dunning_run_and_messages_send(
    runtime: Runtime, database_url: str, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, port = smtp_server
    book = make_book(runtime, "USD", date(2026, 2, 2))
    cli = Path(sys.executable).with_name("activebilling")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTIVEBILLING_")}
    env["DATABASE_URL"] = database_url

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(cli), *args, "--book", str(book.id), "--format", "json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def ok(*args: str) -> Any:
        done = run(*args)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    customer = ok(
        "customers", "create", "--name", "Acme", "--currency", "USD", "--email", "ap@acme.test"
    )["id"]
    draft = ok("invoices", "create", "--customer", customer, "--line", "Work", "1", "100.00")
    ok("invoices", "finalize", draft["id"])
    late = run("dunning", "run", "--as-of", "2026-03-01")
    assert late.returncode != 0 and "after the book's today" in late.stderr
    ok("clock", "advance", "--to", "2026-03-01")
    done = ok("dunning", "run", "--as-of", "2026-03-01")
    assert (done["invoices"], done["reminders"]) == (1, 1)
    assert ok("dunning", "run")["reminders"] == 0  # today is Mar 1: the same day again
    [message] = ok("messages", "list")["messages"]
    assert (message["status"], message["recipient"]) == ("queued", "ap@acme.test")
    ok("books", "settings", "--set", "smtp.host=127.0.0.1", "--set", f"smtp.port={port}",
       "--set", "smtp.from=billing@book.test")  # fmt: skip
    sent = ok("messages", "send")
    assert (sent["attempted"], sent["messages"]) == (1, {"sent": 1})
    assert len(inbox.mails) == 1


class Logins:
    def __init__(self) -> None:
        self.seen: list[tuple[bytes, bytes]] = []

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        self.seen.append((auth_data.login, auth_data.password))
        ok = (auth_data.login, auth_data.password) == (b"mailer", b"s3cret-password")
        return AuthResult(success=ok)


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
@pytest.mark.filterwarnings("ignore:Session.login_data is deprecated")
def test_the_sender_logs_in_with_the_write_only_credentials(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    inbox, logins, port = Inbox(), Logins(), _free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=logins,
        auth_required=True,
        auth_require_tls=False,  # no certificate here; the login itself is what is tested
    )
    controller.start()
    try:
        key = sim_book.admin_key
        _reminders(client, key, 1)
        _smtp(client, key, port, username="mailer", password="wrong-password")
        sender = MessageSender(runtime.connection, books=[sim_book.id], timeout=2)
        assert sender.send_due() == 1
        [refused] = client.get("/v1/messages", headers=auth(key)).json()["data"]
        assert (refused["status"], refused["attempts"]) == ("queued", 1)
        # aiosmtpd answers the refused PLAIN login with 535, then stalls smtplib's LOGIN
        # fallback, so the client gives up on a timeout: either way, queued for a retry.
        assert refused["last_error"].startswith(("SMTPAuthenticationError", "SMTPServer"))
        _smtp(client, key, port, password="s3cret-password")
        later = datetime.now(UTC) + timedelta(seconds=RETRY_SECONDS[0] + 5)
        assert (
            MessageSender(runtime.connection, books=[sim_book.id], clock=lambda: later).send_due()
            == 1
        )
    finally:
        controller.stop()
    assert logins.seen == [
        (b"mailer", b"wrong-password"),
        (b"mailer", b"s3cret-password"),
    ]
    assert len(inbox.mails) == 1


class SlowInbox(Inbox):
    """Holds every DATA until `release` is set (a mail server that hangs)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = threading.Event()
        self.release = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        import asyncio

        self.arrived.set()
        while not self.release.is_set():
            await asyncio.sleep(0.02)
        return await super().handle_DATA(server, session, envelope)


def test_a_hanging_mail_server_holds_no_transaction_and_no_row_lock(
    client: Any, runtime: Runtime, sim_book: BookFixture, database_url: str
) -> None:
    """Messages are leased and sent outside any transaction: while the mail server
    hangs on one, no session is idle in transaction and its row is not locked."""
    import psycopg

    inbox, port = SlowInbox(), _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        key = sim_book.admin_key
        _reminders(client, key, 2)
        _smtp(client, key, port)
        sender = MessageSender(runtime.connection, books=[sim_book.id], timeout=30)
        sent: list[int] = []
        thread = threading.Thread(target=lambda: sent.append(sender.send_due()))
        thread.start()
        try:
            assert inbox.arrived.wait(30), "the mail server was never dialled"
            assert sessions_in_transaction(database_url) == 0
            with psycopg.connect(database_url) as conn:
                try:
                    leased = conn.execute(
                        "select status from messages where book_id = %s for update nowait",
                        (sim_book.id,),
                    ).fetchall()
                except psycopg.errors.LockNotAvailable:
                    raise AssertionError("the message being sent is row-locked") from None
                assert leased == [("sending",)] * 2
                conn.rollback()
            other = MessageSender(runtime.connection, books=[sim_book.id])
            assert other.send_due() == 0  # leased by the first sender: not sent twice
        finally:
            inbox.release.set()
            thread.join()
    finally:
        controller.stop()
    assert sent == [2] and len(inbox.mails) == 2
    listed = client.get("/v1/messages", headers=auth(key)).json()["data"]
    assert [(m["status"], m["attempts"]) for m in listed] == [("sent", 1)] * 2


def test_a_sender_dead_mid_send_is_replaced_once_its_lease_lapses(
    client: Any, runtime: Runtime, sim_book: BookFixture, smtp_server: tuple[Inbox, int]
) -> None:
    """A sender claims and sends but never records (it died): no other sender sends
    the message while the lease holds; once it lapses the next one sends it again
    with the same Message-ID (a mailbox de-duplicates it), and the dead sender's late
    result changes nothing."""
    inbox, port = smtp_server
    key = sim_book.admin_key
    [message] = _reminders(client, key, 1)
    _smtp(client, key, port)
    dead = MessageSender(runtime.connection, books=[sim_book.id])
    [row] = dead.claim(10)
    assert dead.send_row(row) is None and len(inbox.mails) == 1  # sent, never recorded
    [shown] = client.get("/v1/messages", headers=auth(key)).json()["data"]
    assert (shown["status"], shown["attempts"]) == ("sending", 0)
    successor = MessageSender(runtime.connection, books=[sim_book.id])
    assert successor.send_due() == 0 and len(inbox.mails) == 1  # the lease holds
    with runtime.connection() as conn:
        conn.execute(
            "update messages set lease_until = clock_timestamp() - interval '1 s'"
            " where book_id = %s",
            (sim_book.id,),
        )
        conn.commit()
    assert successor.send_due() == 1
    first, again = (message_from_bytes(m.content) for m in inbox.mails)
    assert first["Message-ID"] == again["Message-ID"]
    assert again["X-ActiveBilling-Message"] == message["id"]
    dead.record([row], ["TimeoutError: too late"])  # its late result: not ours any more
    [sent] = client.get("/v1/messages", headers=auth(key)).json()["data"]
    assert (sent["status"], sent["attempts"], sent["last_error"]) == ("sent", 1, None)
    assert successor.send_due() == 0 and len(inbox.mails) == 2
