"""Real Prometheus and Alertmanager (Debian's binaries) as processes for the alerting tests, configured from the
repository's own files: monitoring/rules/tickserve.rules.yaml and monitoring/alertmanager.example.yml, with
only addresses and timings changed. `Sink` is a small webhook that records what Alertmanager delivers: it stands in
for the rollback receiver, which is built separately (issue 10) against the same payload."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from ruamel.yaml import YAML
from tiers import require_binary

from tickserve.processes import ServerProcess, free_port

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "monitoring" / "alertmanager.example.yml"
RULES = REPO / "monitoring" / "rules" / "tickserve.rules.yaml"
yaml = YAML(typ="safe")


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


class Service(ServerProcess):
    """A server process with its base URL."""

    def __init__(self, name: str, command: list[str], port: int, workdir: Path) -> None:
        super().__init__(name, command, ready_url=f"http://127.0.0.1:{port}/-/ready", cwd=workdir)
        self.url = f"http://127.0.0.1:{port}"

    def __enter__(self) -> Service:
        self.start()
        return self


def alertmanager(workdir: Path, rollback: Sink, user: Sink, token: str) -> Service:
    """The example config with the sinks as receivers, the token in a file, and group_wait shortened to 1s."""
    binary = require_binary("prometheus-alertmanager")
    (workdir / "token").write_text(token + "\n")
    config = yaml.load(EXAMPLE.read_text())
    config["route"]["group_wait"] = config["route"]["routes"][0]["group_wait"] = "1s"
    webhook = config["receivers"][0]["webhook_configs"][0]
    webhook["url"] = f"{rollback.url}/alerts"
    webhook["http_config"]["authorization"]["credentials_file"] = str(workdir / "token")
    config["receivers"][1]["webhook_configs"][0]["url"] = f"{user.url}/"
    with (workdir / "alertmanager.yml").open("w") as out:
        yaml.dump(config, out)
    port = free_port()
    command = [
        binary, f"--config.file={workdir / 'alertmanager.yml'}", f"--storage.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
    ]  # fmt: skip
    return Service("alertmanager", command, port, workdir)


def prometheus(workdir: Path, jobs: dict[str, list[str]], alertmanager_url: str, labels: dict[str, str]) -> Service:
    """Scrapes `jobs` (name -> host:port targets, with `labels` added) every second and evaluates the rules file
    every second with every `for:` shortened to 2s, sending alerts to `alertmanager_url`."""
    binary = require_binary("prometheus")
    rules = yaml.load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "2s"
    with (workdir / "rules.yaml").open("w") as out:
        yaml.dump(rules, out)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(workdir / "rules.yaml")],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager_url.removeprefix("http://")]}]}]},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": targets, "labels": labels}]}
            for job, targets in jobs.items()
        ],
    }
    (workdir / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    port = free_port()
    command = [
        binary, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]  # fmt: skip
    return Service("prometheus", command, port, workdir)


def query(prometheus_url: str, promql: str) -> list[dict]:
    response = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": promql}, timeout=10)
    response.raise_for_status()
    return response.json()["data"]["result"]
