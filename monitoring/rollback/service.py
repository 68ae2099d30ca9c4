"""The rollback receiver inside the registry-sync process.

They share a process on purpose: a rollback's git step *is* a registry-sync pass (the revert pull request comes
from the same planner, branch naming and exactly-once rules), and running both on the controller's one loop
means one clone, one forge client and no two passes of the same model at once. The receiver thread only
queues work on that loop, so Alertmanager always gets its answer at once.
"""

from __future__ import annotations

import logging
import queue

from tickserve import kube
from tickserve.monitoring.rollback.executor import RollbackExecutor, RollbackMetrics
from tickserve.monitoring.rollback.receiver import RollbackReceiver
from tickserve.monitoring.rollback.status import open_pull_request
from tickserve.registry_sync.controller import Controller
from tickserve.registry_sync.settings import RegistrySyncSettings

log = logging.getLogger("tickserve.rollback")


def rollback_executor(settings: RegistrySyncSettings, controller: Controller) -> RollbackExecutor:
    """Rollbacks for the models registry-sync maps, whose git step is a registry-sync pass of the model."""

    def reconcile(registered_model: str) -> str:
        outcomes = controller.run_pass(only=registered_model)
        return "; ".join(f"{o.result} {o.detail}".strip() for o in outcomes) or "no pass"

    return RollbackExecutor(
        kube.api_client(settings.rollback.kubeconfig),
        controller.reconciler.registry,
        {mapping.chart_model: mapping.registered_model for mapping in settings.models},
        reconcile,
        canary_aliases=settings.canary_aliases,
        canary_stages=settings.canary_stages,
        open_pull_request=lambda chart_model: open_pull_request(controller.reconciler.forge, chart_model),
        hold_flux=settings.rollback.hold_flux,
        metrics=RollbackMetrics(controller.metrics.registry),  # served with registry-sync's on its metrics port
    )


def start_receiver(settings: RegistrySyncSettings, work: queue.Queue) -> RollbackReceiver:
    """Serve Alertmanager's webhook; each rollback it asks for is put on the controller loop's `work` queue."""
    token = settings.rollback.resolved_token()
    assert token is not None  # RollbackSettings requires one when enabled
    receiver = RollbackReceiver(settings.rollback.host, settings.rollback.port, token, work.put).start()
    log.info("rollback receiver on %s:%d/alerts", settings.rollback.host, receiver.port)
    return receiver
