"""Prometheus metrics of registry-sync, in their own CollectorRegistry (several controllers can live in one test
process). Served on `metrics_port` by the CLI."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.passes = Counter(
            "tickserve_registry_sync_reconcile_total",
            "Reconcile passes of one model, by result (in_sync, proposed, adopted, rejected, failed).",
            ["model", "result"],
            registry=self.registry,
        )
        self.pull_requests = Counter(
            "tickserve_registry_sync_pull_requests_total",
            "Pull request actions (opened, adopted, superseded, closed).",
            ["model", "action"],
            registry=self.registry,
        )
        self.gate_refusals = Counter(
            "tickserve_registry_sync_gate_refusals_total",
            "Versions refused by a promotion gate (counted when the refusal is first recorded on the version).",
            ["model"],
            registry=self.registry,
        )
        self.last_success = Gauge(
            "tickserve_registry_sync_last_success_timestamp_seconds",
            "Unix time of the last pass in which every mapped model reconciled.",
            registry=self.registry,
        )
        self.up = Gauge(
            "tickserve_registry_sync_dependency_up",
            "1 when the dependency (mlflow, forge) answered on its last use, 0 when retries ran out.",
            ["dependency"],
            registry=self.registry,
        )
        self.failures = Counter(
            "tickserve_registry_sync_dependency_failures_total",
            "Calls to a dependency that failed after all retries.",
            ["dependency"],
            registry=self.registry,
        )

    def serve(self, port: int, host: str = "0.0.0.0") -> None:
        start_http_server(port, addr=host, registry=self.registry)

    def value(self, name: str, **labels: str) -> float:
        """A sample's current value (0 when absent): for tests and the CLI's summary."""
        found = self.registry.get_sample_value(name, labels)
        return float(found) if found is not None else 0.0
