"""Webhooks from a real MLflow server reach the running controller and trigger an immediate reconcile; unsigned
deliveries are refused; polling still picks up what fires no webhook (a legacy stage transition)."""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest
from gitops_support import GitOps, Models

from tickserve.processes import free_port, port_open
from tickserve.registry_sync.cli import build, run_forever
from tickserve.registry_sync.controller import Controller

pytestmark = pytest.mark.integration

SECRET = "a-webhook-secret"


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@contextmanager
def running(settings, controller: Controller) -> Iterator[None]:
    wake: queue.Queue[str] = queue.Queue()
    thread = threading.Thread(target=run_forever, args=(settings, controller, wake), daemon=True)
    thread.start()
    try:
        wait_for(
            "the first pass",
            lambda: (
                controller.metrics.value("tickserve_registry_sync_reconcile_total", model="ticks-1m", result="in_sync")
                >= 1
            ),
        )
        yield
    finally:
        wake.put("")
        thread.join(timeout=30)


def test_a_signed_mlflow_webhook_triggers_an_immediate_reconcile_and_an_unsigned_one_is_refused(
    gitops: GitOps, registry: Models, sync_settings
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/webhooks/mlflow"
    settings = sync_settings(
        gitops,
        registry,
        poll_interval_seconds=600,  # nothing but a webhook can trigger the second pass within this test
        webhook={"enabled": True, "host": "127.0.0.1", "port": port, "secret": SECRET},
    )
    controller = build(settings)
    webhook = registry.client.create_webhook(
        name=f"registry-sync-{uuid.uuid4().hex[:6]}",
        url=url,
        events=["model_version_alias.created", "model_version_alias.deleted", "model_version_tag.set"],
        secret=SECRET,
    )
    try:
        with running(settings, controller):
            assert port_open(port)
            forged = {"entity": "model_version_alias", "action": "created", "data": {"name": registry.name}}
            assert httpx.post(url, json=forged).status_code == 401
            # MLflow's own signed test delivery is accepted ...
            assert registry.client.test_webhook(webhook.webhook_id).success
            # ... and MLflow caches each event's webhook list (MLFLOW_WEBHOOK_CACHE_TTL=1 in forge_servers.py)
            time.sleep(1.5)
            version = registry.version()
            registry.alias("challenger", version)
            took = wait_for("a PR opened by the webhook", lambda: len(gitops.pulls("open")) == 1)
    finally:
        registry.client.delete_webhook(webhook.webhook_id)
    assert took < 30
    assert controller.metrics.value("tickserve_registry_sync_reconcile_total", model="ticks-1m", result="proposed") == 1


def test_polling_picks_up_a_stage_transition_which_fires_no_webhook(
    gitops: GitOps, registry: Models, sync_settings
) -> None:
    settings = sync_settings(gitops, registry, poll_interval_seconds=1)
    controller = build(settings)
    with running(settings, controller):
        version = registry.version()
        registry.client.transition_model_version_stage(registry.name, version, "Staging")
        wait_for("a PR opened by polling", lambda: len(gitops.pulls("open")) == 1)
