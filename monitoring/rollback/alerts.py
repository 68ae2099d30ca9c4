"""Alertmanager's webhook payload (version 4) -> the rollbacks it asks for.

Only firing alerts labelled `tickserve_action: rollback` ask for one; each must name the `model` (the
InferenceService), the `model_version` that is failing and the `namespace`. A resolved alert asks for nothing:
a rollback is never undone by an alert that stops firing (the registry names the next canary instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ACTION_LABEL, ROLLBACK = "tickserve_action", "rollback"
REQUIRED_LABELS = ("model", "model_version", "namespace")


class PayloadError(ValueError):
    """The body is not an Alertmanager v4 webhook payload, or a rollback alert lacks a label it needs (a 400)."""


@dataclass(frozen=True)
class RollbackRequest:
    """One firing rollback alert: which canary version to roll back, and the evidence to record with it."""

    namespace: str
    model: str
    version: str
    alertname: str
    starts_at: str
    summary: str

    @property
    def key(self) -> tuple[str, str, str]:
        """What makes two deliveries the same rollback: duplicates, repeats and flapping share it."""
        return (self.namespace, self.model, self.version)


def rollback_requests(payload: Any) -> list[RollbackRequest]:
    """The rollbacks a delivery asks for, one per (namespace, model, version), in the order first seen."""
    if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
        raise PayloadError("not an Alertmanager webhook payload: no `alerts` list")
    if str(payload.get("version", "4")) != "4":
        raise PayloadError(f"Alertmanager webhook payload version {payload.get('version')!r}, expected 4")
    requests: dict[tuple[str, str, str], RollbackRequest] = {}
    for index, alert in enumerate(payload["alerts"]):
        if not isinstance(alert, dict) or not isinstance(alert.get("labels"), dict):
            raise PayloadError(f"alerts[{index}] has no `labels` object")
        labels: dict[str, Any] = alert["labels"]
        if labels.get(ACTION_LABEL) != ROLLBACK or alert.get("status") != "firing":
            continue
        missing = [name for name in REQUIRED_LABELS if not labels.get(name)]
        if missing:
            raise PayloadError(f"alerts[{index}] ({labels.get('alertname', '?')}) lacks label(s) {', '.join(missing)}")
        annotations = alert.get("annotations") if isinstance(alert.get("annotations"), dict) else {}
        request = RollbackRequest(
            namespace=str(labels["namespace"]),
            model=str(labels["model"]),
            version=str(labels["model_version"]),
            alertname=str(labels.get("alertname", "")),
            starts_at=str(alert.get("startsAt", "")),
            summary=str(annotations.get("summary") or annotations.get("description") or ""),
        )
        requests.setdefault(request.key, request)
    return list(requests.values())
