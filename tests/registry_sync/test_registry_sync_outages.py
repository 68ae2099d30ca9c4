"""MLflow or the forge unreachable: the pass takes no action, gives up after bounded retries, says so in a metric
and the outcome, and the same running controller recovers once the dependency is back (no restart)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from forge_servers import mlflow_server_process, start_mlflow
from gitops_support import GitOps, Models
from tcp_relay import TcpRelay

from tickserve.registry_sync.cli import build
from tickserve.registry_sync.metrics import Metrics

pytestmark = pytest.mark.integration


def test_mlflow_down_means_no_action_a_metric_and_recovery_without_restart(
    gitops: GitOps, sync_settings, tmp_path: Path
) -> None:
    with start_mlflow(tmp_path / "mlflow") as server:
        models = Models(server)
        version = models.version()
        models.alias("challenger", version)
        controller = build(sync_settings(gitops, models, tracking_uri=server.url), Metrics())
        server.process.stop()

        started = time.monotonic()
        (outcome,) = controller.run_pass()
        took = time.monotonic() - started

        assert outcome.result == "failed" and "MLflow unavailable" in outcome.detail
        assert took < 30, f"retries are bounded; the pass took {took:.1f}s"
        assert controller.metrics.value("tickserve_registry_sync_dependency_up", dependency="mlflow") == 0
        assert controller.metrics.value("tickserve_registry_sync_dependency_failures_total", dependency="mlflow") == 1
        assert (
            controller.metrics.value("tickserve_registry_sync_reconcile_total", model="ticks-1m", result="failed") == 1
        )
        assert gitops.pulls() == [] and gitops.branches() == ["main"]

        with mlflow_server_process(server.workdir, server.port):
            (outcome,) = controller.run_pass()
        assert outcome.result == "proposed"
        assert controller.metrics.value("tickserve_registry_sync_dependency_up", dependency="mlflow") == 1
        assert len(gitops.pulls("open")) == 1


def test_the_forge_unreachable_means_no_action_a_metric_and_recovery_without_restart(
    gitops: GitOps, registry: Models, sync_settings
) -> None:
    gitea_port = int(gitops.gitea.url.rsplit(":", 1)[1])
    relay = TcpRelay(gitea_port)
    relayed = f"http://127.0.0.1:{relay.port}"
    version = registry.version()
    registry.alias("challenger", version)
    settings = sync_settings(
        gitops,
        registry,
        repo={"url": gitops.clone_url.replace(gitops.gitea.url, relayed)},
        forge={"api_url": relayed},
    )
    controller = build(settings, Metrics())
    relay.down()
    try:
        (outcome,) = controller.run_pass()
        assert outcome.result == "failed" and "forge unavailable" in outcome.detail
        assert controller.metrics.value("tickserve_registry_sync_dependency_up", dependency="forge") == 0
        assert gitops.pulls() == [] and gitops.branches() == ["main"]
    finally:
        relay.up()
    (outcome,) = controller.run_pass()
    assert outcome.result == "proposed"
    assert controller.metrics.value("tickserve_registry_sync_dependency_up", dependency="forge") == 1
    assert len(gitops.pulls("open")) == 1
