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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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
        self.httpd = ThreadingHTTPServer((host, port), self._handler())
        self.port = self.httpd.server_address[1]
        self.threads = [
            threading.Thread(target=self.httpd.serve_forever, name="rollback-receiver", daemon=True),
            threading.Thread(target=self._work, name="rollback-worker", daemon=True),
        ]

    def start(self) -> RollbackReceiver:
        for thread in self.threads:
            thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
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

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                log.debug(format, *args)

            def _reply(self, status: int, payload: dict) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == "/healthz":
                    self._reply(200, {"status": "ok"})
                else:
                    self._reply(404, {"error": "not found"})

            def do_POST(self) -> None:
                if self.path != PATH:
                    self._reply(404, {"error": f"not found; Alertmanager posts to {PATH}"})
                    return
                if not receiver.authorized(self.headers.get("Authorization")):
                    log.warning("rollback delivery refused: missing or wrong bearer token")
                    self._reply(401, {"error": "missing or wrong bearer token"})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self._reply(413, {"error": f"body of {length} bytes exceeds {MAX_BODY}"})
                    return
                try:
                    requests = rollback_requests(json.loads(self.rfile.read(length) or b"null"))
                except (ValueError, PayloadError) as error:
                    self._reply(400, {"error": f"not an Alertmanager v4 webhook payload: {error}"})
                    return
                for request in requests:
                    receiver.work.put(request)
                queued = [f"{r.namespace}/{r.model} v{r.version}" for r in requests]
                self._reply(202, {"queued": queued})

        return Handler
