"""`tickserve registry-sync --config registry-sync.yaml [--once]`: run the registry-sync controller.

`--once` reconciles every mapped model one time and exits 0 when all reconciled, 1 naming each model that failed
and why, 2 on invalid settings. Without it the controller polls every `poll_interval_seconds`, reconciles a model at
once when a valid MLflow webhook names it, and serves Prometheus metrics.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import queue
import signal
import socket
import sys
import tempfile
from pathlib import Path

from tickserve import kube
from tickserve.monitoring.rollback.alerts import RollbackRequest
from tickserve.monitoring.rollback.service import rollback_executor, start_receiver
from tickserve.registry_sync.controller import Controller, Reconciler
from tickserve.registry_sync.forges import make_forge
from tickserve.registry_sync.git import GitError, GitRepo
from tickserve.registry_sync.leader import LeaseElector
from tickserve.registry_sync.metrics import Metrics
from tickserve.registry_sync.registry import Registry, bounded_http_retries
from tickserve.registry_sync.settings import RegistrySyncSettings, SettingsError, load_settings
from tickserve.registry_sync.webhooks import DeliveryVerifier, WebhookServer

log = logging.getLogger("tickserve.registry_sync")
PROG = "tickserve registry-sync"


def build(settings: RegistrySyncSettings, metrics: Metrics | None = None) -> Controller:
    """Wire the controller from settings (also what tests and the demo use)."""
    metrics = metrics or Metrics()
    bounded_http_retries(max_retries=1, timeout=settings.request_timeout_seconds)
    workdir = settings.repo.workdir or Path(tempfile.mkdtemp(prefix="registry-sync-clone-"))
    token = settings.forge.resolved_token()
    repo = GitRepo.ensure(settings.repo.url, workdir, token=token, username=settings.repo.git_username)
    reconciler = Reconciler(settings, Registry(settings.tracking_uri), make_forge(settings, repo), repo, metrics)
    return Controller(settings, reconciler, metrics)


def make_elector(settings: RegistrySyncSettings) -> LeaseElector | None:
    election = settings.leader_election
    if not election.enabled:
        return None
    return LeaseElector(
        kube.api_client(election.kubeconfig),
        namespace=election.namespace,
        name=election.lease_name,
        identity=election.identity or socket.gethostname(),
        lease_duration=election.lease_duration_seconds,
        renew_deadline=election.renew_deadline_seconds,
        retry_period=election.retry_period_seconds,
    ).start()


def run_forever(
    settings: RegistrySyncSettings,
    controller: Controller,
    wake: queue.Queue[str | RollbackRequest],
    elector: LeaseElector | None = None,
) -> None:
    """Poll every model each interval; reconcile one model at once when a webhook puts its name on `wake`, and
    roll a canary back when the rollback receiver puts a request there. An empty string on `wake` stops the loop
    (SIGTERM does that). With an elector, passes run only while this replica holds the Lease; webhooks received
    meanwhile are dropped (the leader's polling covers them). Rollbacks run on every replica: Alertmanager may
    reach either, and each rollback step is idempotent, its pull request exactly-once like any pass."""

    def leading() -> bool:
        return elector is None or elector.is_leader

    webhooks = None
    if settings.webhook.enabled:
        secret = settings.webhook.resolved_secret()
        assert secret is not None  # WebhookSettings requires one when enabled
        verifier = DeliveryVerifier(secret, settings.webhook.max_age_seconds)
        webhooks = WebhookServer(settings.webhook.host, settings.webhook.port, verifier, wake.put).start()
        log.info("webhooks on %s:%d/webhooks/mlflow", settings.webhook.host, webhooks.port)
    executor, receiver = None, None
    if settings.rollback.enabled:
        executor = rollback_executor(settings, controller)
        receiver = start_receiver(settings, wake)

    def full_pass() -> None:
        outcomes = controller.run_pass()
        if executor is not None:
            executor.tidy(settings.rollback.namespace, {o.model: o.revision for o in outcomes if o.result == "in_sync"})

    try:
        if leading():
            full_pass()
        while True:
            try:
                item = wake.get(timeout=settings.poll_interval_seconds)
            except queue.Empty:
                if leading():
                    full_pass()
                continue
            if isinstance(item, RollbackRequest):
                if executor is not None:
                    executor.execute(item)
            elif item == "":
                return
            elif settings.chart_model(item) is not None and leading():
                controller.run_pass(only=item)
    finally:
        if webhooks is not None:
            webhooks.stop()
        if receiver is not None:
            receiver.stop()
        if elector is not None:
            elector.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="YAML settings file (TICKSERVE_REGISTRY_SYNC_* env overrides)")
    parser.add_argument("--once", action="store_true", help="one reconcile pass over every model, then exit")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    try:
        settings = load_settings(args.config)
    except SettingsError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2
    try:
        controller = build(settings)
    except (GitError, OSError) as error:
        print(f"{PROG}: cannot prepare the GitOps clone: {error}", file=sys.stderr)
        return 1

    if args.once:
        outcomes = controller.run_pass()
        failed = [outcome for outcome in outcomes if outcome.result == "failed"]
        for outcome in outcomes:
            print(f"{outcome.model}: {outcome.result} {outcome.detail}".rstrip())
        if failed:
            names = ", ".join(f"{outcome.model} ({outcome.detail})" for outcome in failed)
            print(f"{PROG}: failed to reconcile: {names}", file=sys.stderr)
            return 1
        return 0

    if settings.metrics_port is not None:
        controller.metrics.serve(settings.metrics_port)
    wake: queue.Queue[str | RollbackRequest] = queue.Queue()
    signal.signal(signal.SIGTERM, lambda *_: wake.put(""))
    with contextlib.suppress(KeyboardInterrupt):
        run_forever(settings, controller, wake, make_elector(settings))
    return 0
