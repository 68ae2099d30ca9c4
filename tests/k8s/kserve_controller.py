"""KServe's own controller manager, run against a control plane of this tier, so InferenceServices are reconciled
(Deployments, Services, HPAs, Ingresses, status) and admitted by KServe's real webhooks, not only stored.

The manager is cmd/manager of github.com/kserve/kserve at the version hack/crds.sh pins, built unchanged by
hack/build-kserve-manager.sh (`make kserve-manager`) into the tools cache. Starting it takes what a KServe install
has: the `kserve` namespace, the module's `inferenceservice-config` ConfigMap (Standard mode by default, no Istio
VirtualServices), a serving certificate for its webhook server under $TMPDIR/k8s-webhook-server/serving-certs (it
cannot run without one), and the InferenceService defaulting and validating webhooks registered with the API server
by URL. No kubelet or kube-controller-manager runs: Deployments get no Pods, so `mark_deployments_ready` writes the
status a healthy rollout would have, and nothing garbage-collects dependents.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import kubernetes
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kube import ControlPlane, InstalledCrds, server_side_apply, tools_cache_dir
from ruamel.yaml import YAML

from tickserve.processes import ServerProcess, free_port

KSERVE_MODULE = "github.com/kserve/kserve"
ISVC_LABEL = "serving.kserve.io/inferenceservice"  # on every object KServe makes for an InferenceService
NAMESPACE = "kserve"
ISVC_WEBHOOK_PATHS = {
    "mutating": "/mutate-serving-kserve-io-v1beta1-inferenceservice",
    "validating": "/validate-serving-kserve-io-v1beta1-inferenceservice",
}
T = TypeVar("T")


def manager_binary(version: str, cache_dir: Path | None = None) -> Path:
    """Where hack/build-kserve-manager.sh puts the manager of KServe `version`."""
    return (cache_dir or tools_cache_dir()) / "bin" / f"kserve-manager-{version}"


def module_dir(crds: InstalledCrds) -> Path:
    """The KServe module in the Go module cache: the folder `<module>@<version>` above its CRD files there."""
    source = next(source for source in crds.sources if source.module == KSERVE_MODULE)
    return next(folder for folder in source.file.parents if folder.name.endswith(f"@{source.version}"))


def inferenceservice_config(module: Path) -> str:
    """The module's config/configmap/inferenceservice.yaml with Standard as the default deployment mode and no Istio
    VirtualServices (there is no Istio here); everything else as KServe ships it."""
    configmap = YAML(typ="safe").load((module / "config" / "configmap" / "inferenceservice.yaml").read_text())
    data = configmap["data"]
    deploy = json.loads(data["deploy"])
    deploy["defaultDeploymentMode"] = "Standard"
    ingress = json.loads(data["ingress"])
    ingress["disableIstioVirtualHost"] = True
    data["deploy"], data["ingress"] = json.dumps(deploy), json.dumps(ingress)
    return json.dumps(configmap)


def write_serving_certificate(directory: Path) -> bytes:
    """A self-signed certificate for 127.0.0.1 as tls.crt/tls.key (controller-runtime's file names); returns its PEM,
    which is also the webhooks' caBundle."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kserve-webhook-server")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tls.crt").write_bytes(pem)
    (directory / "tls.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (directory / "tls.key").chmod(0o600)
    return pem


def isvc_webhooks(port: int, ca_bundle: bytes) -> str:
    """KServe's InferenceService webhook registrations (config/webhook/manifests.yaml) pointing at the manager by
    URL instead of through its in-cluster Service."""

    def webhook(kind: str) -> dict[str, Any]:
        suffix = "defaulter" if kind == "mutating" else "validator"
        return {
            "name": f"inferenceservice.kserve-webhook-server.{suffix}",
            "clientConfig": {
                "url": f"https://127.0.0.1:{port}{ISVC_WEBHOOK_PATHS[kind]}",
                "caBundle": base64.b64encode(ca_bundle).decode(),
            },
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1beta1"],
            "rules": [
                {
                    "apiGroups": ["serving.kserve.io"],
                    "apiVersions": ["v1beta1"],
                    "operations": ["CREATE", "UPDATE"],
                    "resources": ["inferenceservices"],
                }
            ],
        }

    documents = [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": f"{kind.capitalize()}WebhookConfiguration",
            "metadata": {"name": "inferenceservice.serving.kserve.io"},
            "webhooks": [webhook(kind)],
        }
        for kind in ("mutating", "validating")
    ]
    return "\n---\n".join(json.dumps(document) for document in documents)


def wait_for(description: str, check: Callable[[], T], timeout: float = 60.0, interval: float = 0.2) -> T:
    """Poll `check` until it returns something truthy and return that; on timeout, fail naming `description`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout}s: {description} (last: {value!r})")
        time.sleep(interval)


@dataclass
class KServeController:
    """The manager process on loopback ports plus what it needs in the cluster; use as a context manager.

    `.started_in` is seconds from start() to the manager serving and admission live; `.log` is its log file.
    """

    control_plane: ControlPlane
    crds: InstalledCrds
    binary: Path
    version: str
    workdir: Path
    start_timeout: float = 60.0
    started_in: float = field(init=False, default=0.0)
    webhook_port: int = field(init=False, default=0)
    process: ServerProcess | None = field(init=False, default=None)

    @property
    def api_client(self) -> kubernetes.client.ApiClient:
        return self.control_plane.api_client

    @property
    def log(self) -> Path:
        return self.workdir / "kserve-manager.log"

    def start(self) -> KServeController:
        began = time.monotonic()
        plane = self.control_plane
        plane.kubectl("create", "namespace", NAMESPACE)
        server_side_apply(plane, inferenceservice_config(module_dir(self.crds)), namespace=NAMESPACE)
        ca_bundle = write_serving_certificate(self.workdir / "k8s-webhook-server" / "serving-certs")
        self.webhook_port, metrics_port, probe_port = free_port(), free_port(), free_port()
        self.process = ServerProcess(
            "kserve-manager",
            [
                str(self.binary),
                f"--kubeconfig={plane.kubeconfig}",
                f"--webhook-port={self.webhook_port}",
                f"--metrics-addr=127.0.0.1:{metrics_port}",
                f"--health-probe-addr=127.0.0.1:{probe_port}",
            ],
            # controller-runtime reads the serving certificate from $TMPDIR/k8s-webhook-server/serving-certs.
            env={"TMPDIR": str(self.workdir)},
            cwd=self.workdir,
            ready_url=f"http://127.0.0.1:{probe_port}/readyz",
            timeout=self.start_timeout,
        )
        self.process.start()
        server_side_apply(plane, isvc_webhooks(self.webhook_port, ca_bundle))
        wait_for("KServe's InferenceService webhook answers admission", self._admission_live, self.start_timeout)
        self.started_in = time.monotonic() - began
        return self

    def _admission_live(self) -> bool:
        """A dry-run create that only KServe's validator refuses (a canary outside Standard mode)."""
        probe = {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {"name": "admission-probe", "annotations": {"serving.kserve.io/deploymentMode": "Knative"}},
            "spec": {
                "predictor": {"name": "a", "model": {"modelFormat": {"name": "onnx"}, "storageUri": "s3://b/a"}},
                "canary": [
                    {
                        "trafficPercent": 10,
                        "predictor": {
                            "name": "b",
                            "model": {"modelFormat": {"name": "onnx"}, "storageUri": "s3://b/b"},
                        },
                    }
                ],
            },
        }
        result = self.control_plane.kubectl(
            "create", "--dry-run=server", "-n", NAMESPACE, "-f", "-", input=json.dumps(probe), check=False
        )
        return "canary is only supported in Standard deployment mode" in result.stderr

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def __enter__(self) -> KServeController:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- what a kubelet and kube-controller-manager would do ----------------------------------------------------------


def mark_deployments_ready(api_client: kubernetes.client.ApiClient, namespace: str) -> list[str]:
    """Give every Deployment in `namespace` whose status lags its spec the status of a finished rollout (all replicas
    ready and available, Progressing=NewReplicaSetAvailable), as the deployment controller would once the kubelet
    runs the pods; return the names updated. Deployments already marked at their generation are left alone."""
    apps = kubernetes.client.AppsV1Api(api_client)
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    updated = []
    for deployment in apps.list_namespaced_deployment(namespace).items:
        replicas = deployment.spec.replicas if deployment.spec.replicas is not None else 1
        status = deployment.status
        if (
            status is not None
            and status.observed_generation == deployment.metadata.generation
            and status.ready_replicas == replicas
            and status.available_replicas == replicas
        ):
            continue

        def condition(kind: str, reason: str) -> dict[str, str]:
            return {"type": kind, "status": "True", "reason": reason, "lastUpdateTime": now, "lastTransitionTime": now}

        body = {
            "status": {
                "observedGeneration": deployment.metadata.generation,
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": replicas,
                "availableReplicas": replicas,
                "conditions": [
                    condition("Available", "MinimumReplicasAvailable"),
                    condition("Progressing", "NewReplicaSetAvailable"),
                ],
            }
        }
        apps.patch_namespaced_deployment_status(deployment.metadata.name, namespace, body)
        updated.append(deployment.metadata.name)
    return updated


# --- reading what KServe made -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reconciled:
    """What KServe made of one namespace's InferenceServices, read in one go."""

    isvcs: dict[str, dict]
    deployments: dict[str, dict]
    services: dict[str, dict]
    hpas: dict[str, dict]
    ingresses: dict[str, dict]

    def kserve(self, kind: str) -> set[str]:
        """Names of the objects of `kind` that KServe created (they carry the InferenceService label)."""
        objects = getattr(self, kind)
        return {name for name, obj in objects.items() if ISVC_LABEL in (obj["metadata"].get("labels") or {})}

    def hpa_range(self, name: str) -> tuple[int, int]:
        spec = self.hpas[name]["spec"]
        return spec["minReplicas"], spec["maxReplicas"]

    def condition(self, isvc: str, kind: str) -> str | None:
        conditions = (self.isvcs[isvc].get("status") or {}).get("conditions") or []
        return next((c["status"] for c in conditions if c["type"] == kind), None)

    def canaries(self, isvc: str) -> list[tuple[str, int, bool]]:
        statuses = (self.isvcs[isvc].get("status") or {}).get("canaryStatuses") or []
        return [(s["name"], s["trafficPercent"], s["ready"]) for s in statuses]


def read(controller: KServeController, namespace: str) -> Reconciled:
    listed = controller.control_plane.kubectl(
        "get",
        "inferenceservices,deployments,services,horizontalpodautoscalers,ingresses",
        "-n",
        namespace,
        "-o",
        "json",
    )
    by_kind: dict[str, dict[str, dict]] = {}
    for item in json.loads(listed.stdout)["items"]:
        by_kind.setdefault(item["kind"], {})[item["metadata"]["name"]] = item
    return Reconciled(
        isvcs=by_kind.get("InferenceService", {}),
        deployments=by_kind.get("Deployment", {}),
        services=by_kind.get("Service", {}),
        hpas=by_kind.get("HorizontalPodAutoscaler", {}),
        ingresses=by_kind.get("Ingress", {}),
    )


def settle(
    controller: KServeController,
    namespace: str,
    deployments: set[str],
    until: Callable[[Reconciled], bool] = lambda state: True,
    timeout: float = 60.0,
) -> Reconciled:
    """Play kubelet until KServe's Deployments in `namespace` are exactly `deployments`, all rolled out, every
    InferenceService reports Ready with every canary of its spec (and no other) ready, and `until` holds; return
    what is then in the namespace."""

    last: list[Reconciled] = []

    def settled() -> Reconciled | None:
        mark_deployments_ready(controller.api_client, namespace)
        last[:] = [read(controller, namespace)]
        state = last[0]
        if state.kserve("deployments") != deployments:
            return None
        for name, isvc in state.isvcs.items():
            in_spec = sorted(canary["predictor"]["name"] for canary in isvc["spec"].get("canary") or [])
            if state.condition(name, "Ready") != "True":
                return None
            if sorted(canary for canary, _, ready in state.canaries(name) if ready) != in_spec:
                return None
        return state if until(state) else None

    try:
        return wait_for(f"KServe's Deployments in {namespace} are {sorted(deployments)} and Ready", settled, timeout)
    except TimeoutError as error:
        state = last[0]
        conditions = {name: (isvc.get("status") or {}).get("conditions") for name, isvc in state.isvcs.items()}
        raise TimeoutError(
            f"{error}\nDeployments: {sorted(state.kserve('deployments'))}\nInferenceService conditions: {conditions}"
            f"\nkserve-manager log:\n{controller.process.log_tail() if controller.process else ''}"
        ) from None
