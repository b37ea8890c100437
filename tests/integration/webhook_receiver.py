"""A real HTTP receiver for webhook tests: http.server on 127.0.0.1 in a thread.

`answers` decides each request's status (a list consumed in order, then 200);
`hang` makes it never answer until the test ends; every request is kept with
its headers and raw body, and whether its signature verified.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from billing.webhooks import EVENT_ID_HEADER, SIGNATURE_HEADER, verify


@dataclass
class Received:
    event_id: str
    header_id: str
    verified: bool
    body: dict[str, Any]
    signature: str = ""
    raw: bytes = b""


@dataclass
class Receiver:
    url: str = ""
    secret: str = ""
    answers: list[int] = field(default_factory=list)
    hang: bool = False
    received: list[Received] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def unique(self) -> dict[str, dict[str, Any]]:
        """The events after de-duplication by id, in the order first received."""
        out: dict[str, dict[str, Any]] = {}
        for r in self.received:
            out.setdefault(r.event_id, r.body)
        return out


@contextmanager
def receiver() -> Iterator[Receiver]:
    state = Receiver()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            event = json.loads(body)
            signature = self.headers[SIGNATURE_HEADER]
            with lock:
                state.received.append(
                    Received(
                        event["id"],
                        self.headers[EVENT_ID_HEADER],
                        verify(state.secret, signature, body, int(time.time())),
                        event,
                        signature,
                        body,
                    )
                )
                status = state.answers.pop(0) if state.answers else 200
            state.arrived.set()
            if state.hang:
                state.release.wait(60)
            try:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except OSError:  # the sender is gone (killed, or timed out)
                pass

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
