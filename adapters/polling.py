"""The loop of the service's outbox senders (webhooks, CRM write-backs, e-mail):
a daemon thread that drains what is due every `interval` seconds until stopped.
A round that fails is logged and retried by the next one; the sender's own rows
say what was sent, so nothing is lost or sent twice by the loop itself."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("activebilling.outbox")


class PollingWorker:
    """Subclasses say what one round does (`run_round`) and name themselves (`what`)."""

    what = "outbox"
    join_seconds = 30.0  # how long `stop` waits for a round in flight

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_round(self) -> object:
        raise NotImplementedError

    def stopping(self) -> bool:
        """True once `stop` was called: a long round ends early."""
        return self._stop.is_set()

    def start(self, interval: float = 1.0) -> None:
        self._thread = threading.Thread(target=self._loop, args=(interval,), daemon=True)
        self._thread.start()

    def _loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.run_round()
            except Exception:  # the next round retries; nothing was committed for the failure
                log.exception("%s: a round failed", self.what)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.join_seconds)
