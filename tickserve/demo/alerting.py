"""Real Prometheus and Alertmanager on one machine, configured from the repository's own alerting files.

`tickserve demo` and the alerting tests (tests/alerting_stack.py) run the Prometheus and Alertmanager binaries on
monitoring/rules/tickserve.rules.yaml and monitoring/alertmanager.example.yml with only addresses and timings
changed: scraping and rule evaluation every second, every `for:` shortened, `group_wait` 1s. What fires here is
what fires in a cluster, only sooner, so the demo and the tests prove the shipped rules and routing, not a copy.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx
from ruamel.yaml import YAML

import tickserve.monitoring
from tickserve.processes import ServerProcess, free_port

MONITORING = Path(tickserve.monitoring.__file__).resolve().parent
RULES = MONITORING / "rules" / "tickserve.rules.yaml"
ALERTMANAGER_EXAMPLE = MONITORING / "alertmanager.example.yml"
PROMETHEUS_BINARIES = ("prometheus",)
ALERTMANAGER_BINARIES = ("prometheus-alertmanager", "alertmanager")  # Debian's name, then upstream's
ROLLBACK_RECEIVER, USER_RECEIVER = "tickserve-rollback", "tickserve-user"
yaml = YAML(typ="safe")


def find_binary(names: Sequence[str]) -> str | None:
    return next((path for name in names if (path := shutil.which(name))), None)


def missing_parts() -> list[str]:
    """What this machine lacks to run the alerting stack (binaries, the repository's files); empty when nothing."""
    missing = []
    if find_binary(PROMETHEUS_BINARIES) is None:
        missing.append("the `prometheus` binary (Debian package prometheus; `make install`)")
    if find_binary(ALERTMANAGER_BINARIES) is None:
        missing.append("the `prometheus-alertmanager` binary (Debian package prometheus-alertmanager; `make install`)")
    missing += [f"{path} (a source checkout has it)" for path in (RULES, ALERTMANAGER_EXAMPLE) if not path.exists()]
    return missing


class Service(ServerProcess):
    """Prometheus or Alertmanager as a child process, ready when `/-/ready` answers; `url` is its base URL."""

    def __init__(self, name: str, command: list[str], port: int, workdir: Path) -> None:
        super().__init__(name, command, ready_url=f"http://127.0.0.1:{port}/-/ready", cwd=workdir)
        self.url = f"http://127.0.0.1:{port}"

    def __enter__(self) -> Service:
        self.start()
        return self


def alertmanager(binary: str, workdir: Path, rollback_url: str, token: str, user_url: str | None = None) -> Service:
    """The example config with `rollback_url` as the rollback receiver's webhook (its bearer token in a file, as
    the example requires), `user_url` as the user's webhook (None: the user's receiver drops what it gets) and
    group_wait shortened to 1s."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "token").write_text(token + "\n")
    config = yaml.load(ALERTMANAGER_EXAMPLE.read_text())
    config["route"]["group_wait"] = "1s"
    receivers = {receiver["name"]: receiver for receiver in config["receivers"]}
    for route in config["route"]["routes"]:
        if route["receiver"] == ROLLBACK_RECEIVER:
            route["group_wait"] = "1s"
    webhook = receivers[ROLLBACK_RECEIVER]["webhook_configs"][0]
    webhook["url"] = rollback_url
    webhook["http_config"]["authorization"]["credentials_file"] = str(workdir / "token")
    if user_url is None:
        receivers[USER_RECEIVER].pop("webhook_configs", None)  # a receiver without integrations drops alerts
    else:
        receivers[USER_RECEIVER]["webhook_configs"][0]["url"] = user_url
    with (workdir / "alertmanager.yml").open("w") as out:
        yaml.dump(config, out)
    port = free_port()
    command = [
        binary, f"--config.file={workdir / 'alertmanager.yml'}", f"--storage.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
    ]  # fmt: skip
    return Service("alertmanager", command, port, workdir)


def prometheus(
    binary: str,
    workdir: Path,
    jobs: Mapping[str, Sequence[str]],
    alertmanager_url: str,
    labels: Mapping[str, str],
    rule_for: str = "2s",
) -> Service:
    """Scrapes `jobs` (name -> host:port targets, with `labels` added) every second and evaluates the rules file
    every second with every `for:` set to `rule_for`, sending alerts to `alertmanager_url`."""
    workdir.mkdir(parents=True, exist_ok=True)
    rules = yaml.load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = rule_for
    with (workdir / "rules.yaml").open("w") as out:
        yaml.dump(rules, out)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(workdir / "rules.yaml")],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager_url.removeprefix("http://")]}]}]},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": list(targets), "labels": dict(labels)}]}
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
