"""Small JSON-over-HTTP endpoints served from a background thread, for the webhooks tickserve's controllers
receive (MLflow's, Alertmanager's): one POST path, a bounded body, a JSON answer, `GET /healthz`.

The standard library's threading HTTP server is enough for a few deliveries a minute and adds no dependency to the
controller process; each endpoint only implements `handle(body)`.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar


class JsonHandler(BaseHTTPRequestHandler):
    """Answers POST `path_served` through `handle(body)`; a body over `max_body` bytes is a 413 unread."""

    path_served: ClassVar[str]
    max_body: ClassVar[int] = 1 << 20
    logger: ClassVar[logging.Logger] = logging.getLogger("tickserve.http")

    def handle_body(self, body: bytes) -> None:
        raise NotImplementedError

    def reply(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        self.logger.debug(format, *args)

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self.reply(200, {"status": "ok"})
        else:
            self.reply(404, {"error": "not found"})

    def do_POST(self) -> None:
        if self.path != self.path_served:
            self.reply(404, {"error": f"not found; deliveries go to {self.path_served}"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > self.max_body:
            self.reply(413, {"error": f"body of {length} bytes exceeds {self.max_body}"})
            return
        self.handle_body(self.rfile.read(length))


class BackgroundServer:
    """A ThreadingHTTPServer on (host, port) serving `handler` from a daemon thread; port 0 picks a free one."""

    def __init__(self, host: str, port: int, handler: type[JsonHandler], name: str) -> None:
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name=name, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
