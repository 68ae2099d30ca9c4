"""Real Prometheus and Alertmanager (Debian's binaries) as processes for the alerting tests, configured from the
repository's own files: monitoring/rules/tickserve.rules.yaml and monitoring/alertmanager.example.yml, with
only addresses and timings changed, by the code `tickserve demo` uses too (tickserve/demo/alerting.py). `Sink` is
a small webhook that records what Alertmanager delivers: it stands in for the rollback receiver where a test checks
the delivery itself."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tiers import require_binary

from tickserve.demo import alerting
from tickserve.demo.alerting import Service, query, yaml

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "monitoring" / "alertmanager.example.yml"
RULES = REPO / "monitoring" / "rules" / "tickserve.rules.yaml"
__all__ = ["EXAMPLE", "REPO", "RULES", "Service", "Sink", "alertmanager", "prometheus", "query", "yaml"]


class Sink:
    """Records every POST (path, headers, JSON body) a webhook receives."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], dict]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                sink.received.append((self.path, dict(self.headers), body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def alertmanager(workdir: Path, rollback_url: str, user: Sink, token: str) -> Service:
    """The example config delivering rollbacks to `rollback_url`/alerts (a Sink's or the receiver's base URL) and
    everything else to the `user` sink, the token in a file, and group_wait shortened to 1s."""
    binary = require_binary("prometheus-alertmanager")
    return alerting.alertmanager(binary, workdir, f"{rollback_url}/alerts", token, f"{user.url}/")


def prometheus(workdir: Path, jobs: dict[str, list[str]], alertmanager_url: str, labels: dict[str, str]) -> Service:
    """Scrapes `jobs` (name -> host:port targets, with `labels` added) every second and evaluates the rules file
    every second with every `for:` shortened to 2s, sending alerts to `alertmanager_url`."""
    return alerting.prometheus(require_binary("prometheus"), workdir, jobs, alertmanager_url, labels, rule_for="2s")
