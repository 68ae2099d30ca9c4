"""Flux's source-controller and kustomize-controller, run against a control plane of this tier, so a GitOps
repository on Gitea is applied the way it is in production: pulled by a GitRepository, applied by a Kustomization.

The controllers are Flux v1.9.6, built unchanged from their Go modules by hack/build-flux.sh (`make flux`) into
CACHE/flux-<version>/ with the CRDs of each module's config/crd/bases. They run as processes with the plane's
admin kubeconfig, watching only `flux-system` (where the tests put their Flux objects), no leader election, no
event recorder, metrics and health on loopback; source-controller serves the artifacts it fetched on a loopback port
that kustomize-controller downloads from.

Tests never wait for Flux's intervals: `request_reconcile` sets the `reconcile.fluxcd.io/requestedAt` annotation
(what `flux reconcile` does) and `wait_applied` waits for `status.lastAppliedRevision` (right after a requested
reconcile `Ready` is briefly Unknown, so it is not what to wait on).
"""

from __future__ import annotations

import base64
import datetime
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
from kserve_controller import wait_for
from kube import ControlPlane, server_side_apply, tools_cache_dir, wait_established

from tickserve.processes import ServerProcess, free_port

FLUX_VERSION = "v1.9.6"
NAMESPACE = "flux-system"
SOURCE = ("source.toolkit.fluxcd.io", "v1", "gitrepositories")
KUSTOMIZE = ("kustomize.toolkit.fluxcd.io", "v1", "kustomizations")
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"


def flux_dir(cache_dir: Path | None = None) -> Path:
    """Where hack/build-flux.sh puts the controllers and CRDs."""
    return (cache_dir or tools_cache_dir()) / f"flux-{FLUX_VERSION}"


def built(cache_dir: Path | None = None) -> bool:
    folder = flux_dir(cache_dir)
    return all(os.access(folder / binary, os.X_OK) for binary in ("source-controller", "kustomize-controller"))


@dataclass
class Flux:
    """Both controllers on loopback ports plus their CRDs and namespace; use as a context manager."""

    control_plane: ControlPlane
    workdir: Path
    start_timeout: float = 60.0
    processes: list[ServerProcess] = field(init=False, default_factory=list)

    @property
    def api_client(self) -> kubernetes.client.ApiClient:
        return self.control_plane.api_client

    def start(self) -> Flux:
        plane, folder = self.control_plane, flux_dir()
        files = [arg for crd in sorted((folder / "crds").glob("*.yaml")) for arg in ("-f", str(crd))]
        applied = plane.kubectl("apply", "--server-side", "--force-conflicts", "-o", "name", *files).stdout.split()
        wait_established(plane, [name.split("/", 1)[1] for name in applied], timeout=60)
        plane.kubectl("create", "namespace", NAMESPACE)
        storage = self.workdir / "storage"
        storage.mkdir(parents=True)
        storage_port = free_port()
        common = [
            "--enable-leader-election=false",
            "--watch-all-namespaces=false",
            "--events-addr=",
            "--log-level=info",
        ]
        env = {"KUBECONFIG": str(plane.kubeconfig), "RUNTIME_NAMESPACE": NAMESPACE}
        extra = {
            "source-controller": [
                f"--storage-path={storage}",
                f"--storage-addr=127.0.0.1:{storage_port}",
                f"--storage-adv-addr=127.0.0.1:{storage_port}",
            ],
            "kustomize-controller": [],
        }
        for name, flags in extra.items():
            health = free_port()
            process = ServerProcess(
                name,
                [str(folder / name), *common, f"--metrics-addr=127.0.0.1:{free_port()}",
                 f"--health-addr=127.0.0.1:{health}", *flags],
                env=env,
                cwd=self.workdir,
                ready_url=f"http://127.0.0.1:{health}/readyz",
                timeout=self.start_timeout,
            )  # fmt: skip
            self.processes.append(process)
            process.start()
        return self

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()

    def __enter__(self) -> Flux:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- Flux objects ---------------------------------------------------------------------------------------------

    def git_repository(self, name: str, url: str, username: str, token: str, branch: str = "main") -> None:
        """A GitRepository of `url` on `branch`, authenticated with HTTP basic auth (a Gitea token as password)."""
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"{name}-auth", "namespace": NAMESPACE},
            "data": {key: base64.b64encode(value.encode()).decode() for key, value in
                     {"username": username, "password": token}.items()},
        }  # fmt: skip
        repository = {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"url": url, "ref": {"branch": branch}, "interval": "10m", "timeout": "60s",
                     "secretRef": {"name": f"{name}-auth"}},
        }  # fmt: skip
        server_side_apply(self.control_plane, json.dumps(secret) + "\n---\n" + json.dumps(repository))

    def kustomization(self, name: str, source: str, path: str, target_namespace: str) -> None:
        """A Kustomization applying `path` of GitRepository `source` into `target_namespace`, pruning what git no
        longer has; `wait: false` because no kubelet runs here, so workloads never become Ready."""
        kustomization = {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"interval": "10m", "path": path, "prune": True, "wait": False, "timeout": "60s",
                     "targetNamespace": target_namespace,
                     "sourceRef": {"kind": "GitRepository", "name": source}},
        }  # fmt: skip
        server_side_apply(self.control_plane, json.dumps(kustomization))

    def get(self, kind: tuple[str, str, str], name: str) -> dict[str, Any]:
        custom = kubernetes.client.CustomObjectsApi(self.api_client)
        return custom.get_namespaced_custom_object(*kind[:2], NAMESPACE, kind[2], name)

    def request_reconcile(self, kind: tuple[str, str, str], name: str) -> str:
        """What `flux reconcile` does: stamp `reconcile.fluxcd.io/requestedAt`; returns the stamp."""
        stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds")
        custom = kubernetes.client.CustomObjectsApi(self.api_client)
        body = {"metadata": {"annotations": {REQUESTED_AT: stamp}}}
        custom.patch_namespaced_custom_object(*kind[:2], NAMESPACE, kind[2], name, body)
        return stamp

    def sync(self, source: str, kustomization: str, revision_sha: str, timeout: float = 90.0) -> dict[str, Any]:
        """Fetch `source` and apply `kustomization` now, and wait until the commit `revision_sha` is applied."""
        self.request_reconcile(SOURCE, source)
        wait_for(
            f"GitRepository {source} at {revision_sha[:8]}",
            lambda: (
                revision_sha
                in ((self.get(SOURCE, source).get("status") or {}).get("artifact") or {}).get("revision", "")
            ),
            timeout,
        )
        self.request_reconcile(KUSTOMIZE, kustomization)
        return self.wait_applied(kustomization, revision_sha, timeout)

    def wait_applied(self, kustomization: str, revision_sha: str, timeout: float = 90.0) -> dict[str, Any]:
        def applied() -> dict[str, Any] | None:
            status = self.get(KUSTOMIZE, kustomization).get("status") or {}
            return status if revision_sha in status.get("lastAppliedRevision", "") else None

        return wait_for(f"Kustomization {kustomization} applied {revision_sha[:8]}", applied, timeout)
