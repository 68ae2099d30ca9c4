"""The rollback receiver: Alertmanager's webhook (`POST /alerts`, payload version 4) behind a bearer token.

It answers at once (202 with what it queued) and leaves the work to one worker thread, so Alertmanager never
times out and retries because a rollback takes seconds; the worker executes one rollback at a time and every
step is idempotent (see `executor`), which is what makes at-least-once delivery safe. A missing or wrong token
is a 401 and a malformed payload a 400, both without any action.
"""

from __future__ import annotations

import hmac
import json
import logging
import queue
import threading
from collections.abc import Callable

from tickserve.json_endpoint import BackgroundServer, JsonHandler
from tickserve.monitoring.rollback.alerts import PayloadError, RollbackRequest, rollback_requests

log = logging.getLogger("tickserve.rollback")

PATH = "/alerts"
MAX_BODY = 4 << 20  # Alertmanager's payloads are small; this only bounds a bad client


class RollbackReceiver:
    """Serves PATH on (host, port) in a background thread; `execute(request)` runs on the worker thread."""

    def __init__(self, host: str, port: int, token: str, execute: Callable[[RollbackRequest], object]) -> None:
        if not token:
            raise ValueError("the rollback receiver needs a bearer token")
        self.token = token
        self.execute = execute
        self.work: queue.Queue[RollbackRequest | None] = queue.Queue()
        self.server = BackgroundServer(host, port, self._handler(), name="rollback-receiver")
        self.port = self.server.port
        self.worker = threading.Thread(target=self._work, name="rollback-worker", daemon=True)

    def start(self) -> RollbackReceiver:
        self.server.start()
        self.worker.start()
        return self

    def stop(self) -> None:
        self.server.stop()
        self.work.put(None)

    def drain(self, timeout: float) -> bool:
        """Wait until every queued rollback ran (tests and shutdown); False on timeout."""
        done = threading.Event()
        threading.Thread(target=lambda: (self.work.join(), done.set()), daemon=True).start()
        return done.wait(timeout)

    def authorized(self, header: str | None) -> bool:
        scheme, _, credentials = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip().encode(), self.token.encode())

    def _work(self) -> None:
        while (request := self.work.get()) is not None:
            try:
                self.execute(request)
            except Exception:  # a bug in one rollback must not stop the next
                log.exception("rollback of %s failed", request)
            finally:
                self.work.task_done()

    def _handler(self) -> type[JsonHandler]:
        receiver = self

        class Handler(JsonHandler):
            path_served, max_body, logger = PATH, MAX_BODY, log

            def handle_body(self, body: bytes) -> None:
                if not receiver.authorized(self.headers.get("Authorization")):
                    log.warning("rollback delivery refused: missing or wrong bearer token")
                    self.reply(401, {"error": "missing or wrong bearer token"})
                    return
                try:
                    requests = rollback_requests(json.loads(body or b"null"))
                except (ValueError, PayloadError) as error:
                    self.reply(400, {"error": f"not an Alertmanager v4 webhook payload: {error}"})
                    return
                for request in requests:
                    receiver.work.put(request)
                self.reply(202, {"queued": [f"{r.namespace}/{r.model} v{r.version}" for r in requests]})

        return Handler
