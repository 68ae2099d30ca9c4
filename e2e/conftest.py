"""Fixtures of the kind end-to-end run (e2e/run.sh sets the environment; CI never collects this folder).

Environment: E2E_MODE (standard | knative), KUBECTL and HELM (pinned binaries), E2E_IMAGE_TAG. The kubectl
context is the kind cluster run.sh created, with install-deps.sh already applied and the images loaded.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "tickserve"
MODE = os.environ.get("E2E_MODE", "standard")
KUBECTL = os.environ.get("KUBECTL", "kubectl")
HELM = os.environ.get("HELM", "helm")
IMAGE_TAG = os.environ.get("E2E_IMAGE_TAG", "e2e")
NAMESPACE = "tickserve-e2e"
MODEL = "ticks-1m"
MODELS_PVC = "tickserve-models"


def kubectl(*args: str, input: str | None = None, check: bool = True) -> str:
    result = subprocess.run([KUBECTL, *args], input=input, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def helm(*args: str) -> str:
    result = subprocess.run([HELM, *args], capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"helm {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def get_json(*args: str) -> dict:
    return json.loads(kubectl("get", *args, "-o", "json"))


def wait_until(what: str, probe: Callable[[], object], timeout: float = 900, interval: float = 5) -> object:
    """Poll `probe` until it returns something truthy; fail with `what` and the last value otherwise."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except (RuntimeError, OSError, httpx.HTTPError) as error:
            last = error
        else:
            if last:
                return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


def isvc_ready(namespace: str, name: str = MODEL) -> dict | None:
    """The InferenceService once KServe has reconciled its latest generation and reports Ready."""
    isvc = get_json("inferenceservice", name, "-n", namespace)
    status = isvc.get("status", {})
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))
    current = status.get("observedGeneration", 0) >= isvc["metadata"]["generation"]
    return isvc if ready and current else None


def image(target: str) -> dict:
    return {"repository": f"kind.local/tickserve-{target}", "tag": IMAGE_TAG}


def chart_values(stable: str, canary: str | None = None, percent: int = 0, **overrides: object) -> dict:
    """Values for the e2e release: one horizon on the kind-loaded images, small requests, models on a PVC."""
    model: dict = {"name": MODEL, "horizon": "1m", "stable": {"version": stable, "storageUri": uri(stable)}}
    if canary is not None:
        model["canary"] = {"version": canary, "storageUri": uri(canary), "trafficPercent": percent}
    small = {"requests": {"cpu": "50m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
    values = {
        "deploymentMode": MODE.capitalize(),
        "images": {
            "pullPolicy": "IfNotPresent",
            "predictor": image("predictor"),
            "predictorCuda": image("predictor-cuda" if os.environ.get("E2E_BUILD_CUDA") == "true" else "predictor"),
            "transformer": image("transformer"),
        },
        "models": [model],
        # Standard mode: 4 predictor pods so that KServe's replica split can express 25% (1 canary + 3 stable).
        "predictor": {"minReplicas": 4 if MODE == "standard" else 1, "maxReplicas": 4, "resources": small},
        "transformer": {"minReplicas": 1, "maxReplicas": 1, "resources": small},
        "ingest": {"extraArgs": ["--synthetic_symbols=BTCUSDT,ETHUSDT"]},
    }
    for key, value in overrides.items():
        values[key] = {**values.get(key, {}), **value} if isinstance(value, dict) else value
    return values


def uri(version: str) -> str:
    return f"pvc://{MODELS_PVC}/{MODEL}/{version}"


def helm_upgrade(namespace: str, values: dict, tmp_dir: Path, release: str = "tickserve") -> None:
    path = tmp_dir / f"{release}-values.json"
    path.write_text(json.dumps(values))
    helm("upgrade", "--install", release, str(CHART), "--namespace", namespace, "--values", str(path))


def stage_models(namespace: str, models_dir: Path, on_gpu_node: bool = False) -> None:
    """A PVC holding the models, filled through a helper pod (pvc:// storage URIs mount it into predictors)."""
    placement = (
        '"nodeSelector": {"nvidia.com/gpu.present": "true"}, '
        '"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],'
        if on_gpu_node
        else ""
    )
    kubectl(
        "apply", "-n", namespace, "-f", "-",
        input=f"""
{{"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {{"name": "{MODELS_PVC}"}},
 "spec": {{"accessModes": ["ReadWriteOnce"], "resources": {{"requests": {{"storage": "1Gi"}}}}}}}}
---
{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "stage-models"}},
 "spec": {{{placement} "containers": [{{"name": "stage", "image": "busybox:1.37", "command": ["sleep", "3600"],
   "volumeMounts": [{{"name": "models", "mountPath": "/models"}}]}}],
   "volumes": [{{"name": "models", "persistentVolumeClaim": {{"claimName": "{MODELS_PVC}"}}}}]}}}}
""",
    )  # fmt: skip
    kubectl("wait", "-n", namespace, "--for=condition=Ready", "pod/stage-models", "--timeout=300s")
    kubectl("cp", "-n", namespace, f"{models_dir}/{MODEL}", f"stage-models:/models/{MODEL}")
    kubectl("delete", "-n", namespace, "pod/stage-models", "--wait=true")


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models")
    subprocess.run([sys.executable, str(Path(__file__).with_name("make_models.py")), str(out)], check=True)
    return out


@pytest.fixture(scope="session")
def values_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("values")


@pytest.fixture(scope="session")
def release(models_dir: Path, values_dir: Path) -> Iterator[str]:
    """The chart installed with the stable version only, Ready; uninstalled at the end."""
    kubectl("create", "namespace", NAMESPACE)
    stage_models(NAMESPACE, models_dir)
    helm_upgrade(NAMESPACE, chart_values(stable="3"), values_dir)
    wait_until(f"InferenceService {MODEL} Ready", lambda: isvc_ready(NAMESPACE))
    yield NAMESPACE
    helm("uninstall", "tickserve", "--namespace", NAMESPACE)
    kubectl("delete", "namespace", NAMESPACE, "--wait=false")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def ingress() -> Iterator[str]:
    """Base URL of the cluster's ingress through `kubectl port-forward`: Envoy Gateway's service in Standard
    mode, Kourier in Knative mode. Requests pick the InferenceService with their Host header."""
    if MODE == "standard":
        namespace = "envoy-gateway-system"
        selector = "gateway.envoyproxy.io/owning-gateway-name=kserve-ingress-gateway"
        service = kubectl("get", "service", "-n", namespace, "-l", selector, "-o", "name").split()[0]
    else:
        namespace, service = "kourier-system", "service/kourier"
    port = free_port()
    forward = subprocess.Popen([KUBECTL, "port-forward", "-n", namespace, service, f"{port}:80"])
    base = f"http://127.0.0.1:{port}"
    wait_until("the ingress port-forward", lambda: socket.create_connection(("127.0.0.1", port), 1) and True, 60, 1)
    yield base
    forward.terminate()
    forward.wait(timeout=10)
