"""Kubernetes API access for tickserve's controllers (registry-sync's leader election, the rollback receiver,
`tickserve rollout status`): a pod's in-cluster credentials, else a kubeconfig."""

from __future__ import annotations

from pathlib import Path

import kubernetes


def api_client(kubeconfig: Path | None = None) -> kubernetes.client.ApiClient:
    """With `kubeconfig`, that file; without, in-cluster credentials inside a pod and otherwise the default
    kubeconfig (KUBECONFIG or ~/.kube/config), as kubectl does."""
    if kubeconfig is None:
        try:
            kubernetes.config.load_incluster_config()
            return kubernetes.client.ApiClient()
        except kubernetes.config.ConfigException:
            pass
    return kubernetes.config.new_client_from_config(config_file=str(kubeconfig) if kubeconfig else None)
