"""tickserve on a kind cluster with KServe: v2 calls through the ingress, a canary step checked against the traffic
split the InferenceService status reports (and the split the predictors actually see), Prometheus telling the
canary from the stable version, promotion, and the GPU value set landing on the GPU node."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from urllib.parse import quote, urlparse

import httpx
import pytest
from conftest import (
    KUBECTL,
    MODE,
    MODEL,
    chart_values,
    get_json,
    helm_upgrade,
    image,
    isvc_ready,
    kubectl,
    stage_models,
    wait_until,
)

SYMBOLS = ["BTCUSDT", "ETHUSDT"]  # what ingest's synthetic market publishes (conftest.chart_values)
SPLIT_REQUESTS = 400
# Binomial noise of 400 requests at 25% is ~2.2 points; Standard mode splits by pod count (1 of 4 pods).
SPLIT_TOLERANCE = 0.10

# Runs inside the cluster: N v2 requests to the predictor endpoint the transformer uses, each on a fresh
# connection (kube-proxy balances connections, not requests); prints {model_version: count}.
SPLIT_PROBE = """
import collections, json, sys, httpx
url, n = sys.argv[1], int(sys.argv[2])
body = {"inputs": [{"name": "features", "datatype": "FP64", "shape": [1, 15], "data": [0.1] * 15}]}
seen = collections.Counter()
for _ in range(n):
    seen[httpx.post(url, json=body, timeout=10).raise_for_status().json()["model_version"]] += 1
print(json.dumps(seen))
"""


def transformer_host(isvc: dict) -> str:
    """Standard mode routes the InferenceService URL (Gateway API) to the transformer; Knative with Kourier routes
    each component's Knative Service, so the transformer's own URL is the entry point."""
    url = isvc["status"]["url"] if MODE == "standard" else isvc["status"]["components"]["transformer"]["url"]
    return urlparse(url).netloc


def predictor_endpoint(namespace: str) -> str:
    """What the transformer calls: the pool Service over stable and canary pods (Standard), or the predictor's
    Knative Service, whose route splits between revisions (Knative)."""
    host = f"{MODEL}-predictor-pool.{namespace}" if MODE == "standard" else f"{MODEL}-predictor.{namespace}"
    return f"http://{host}/v2/models/{MODEL}/infer"


def observed_split(namespace: str) -> dict[str, float]:
    name = "split-probe"
    kubectl("delete", "pod", name, "-n", namespace, "--ignore-not-found", "--wait=true")
    output = kubectl(
        "run", name, "-n", namespace, "--rm", "-i", "--quiet", "--restart=Never",
        f"--image={image('transformer')['repository']}:{image('transformer')['tag']}",
        "--command", "--", "python", "-c", SPLIT_PROBE, predictor_endpoint(namespace), str(SPLIT_REQUESTS),
    )  # fmt: skip
    counts = json.loads(output.strip().splitlines()[-1])
    return {version: count / SPLIT_REQUESTS for version, count in counts.items()}


def status_split(isvc: dict) -> dict[str, float]:
    """Share of traffic per model version according to the InferenceService status."""
    if MODE == "knative":
        # Knative: status.components.predictor.traffic lists revisions; the latest runs the canary's version.
        traffic = isvc["status"]["components"]["predictor"]["traffic"]
        namespace = isvc["metadata"]["namespace"]
        versions = {}
        for target in traffic:
            revision = get_json("revision.serving.knative.dev", target["revisionName"], "-n", namespace)
            env = {e["name"]: e.get("value") for e in revision["spec"]["containers"][0].get("env", [])}
            version = env["TICKSERVE_MODEL_VERSION"]
            versions[version] = versions.get(version, 0) + target.get("percent", 0) / 100
        return versions
    canaries = isvc["status"].get("canaryStatuses", [])
    split = {c["name"].removeprefix("v"): c["trafficPercent"] / 100 for c in canaries}
    split[isvc["spec"]["predictor"]["name"].removeprefix("v")] = 1 - sum(split.values())
    return split


def canary_ready(namespace: str) -> dict | None:
    """Ready, and in Standard mode every spec.canary[] Deployment available too (reported per canary)."""
    isvc = isvc_ready(namespace)
    if isvc is None or MODE == "knative":
        return isvc
    canaries = isvc["status"].get("canaryStatuses", [])
    return isvc if canaries and all(c.get("ready") for c in canaries) else None


def infer_through_ingress(ingress: str, isvc: dict) -> httpx.Response:
    body = {"inputs": [{"name": "symbols", "datatype": "BYTES", "shape": [len(SYMBOLS)], "data": SYMBOLS}]}
    return httpx.post(
        f"{ingress}/v2/models/{MODEL}/infer", json=body, headers={"Host": transformer_host(isvc)}, timeout=30
    )


def test_v2_calls_through_the_ingress(release: str, ingress: str) -> None:
    isvc = isvc_ready(release)
    assert isvc is not None
    headers = {"Host": transformer_host(isvc)}
    assert httpx.get(f"{ingress}/v2/health/live", headers=headers, timeout=10).status_code == 200
    assert httpx.get(f"{ingress}/v2/models/{MODEL}/ready", headers=headers, timeout=10).status_code == 200
    # Ingest writes its history bars at start; give the features a moment to reach Redis.
    assert wait_until("a prediction through the ingress", lambda: infer_through_ingress(ingress, isvc).is_success, 180)
    outputs = infer_through_ingress(ingress, isvc).json()["outputs"]
    assert outputs and all(output["shape"][0] == len(SYMBOLS) for output in outputs)
    # A malformed request is refused with a 4xx naming the input, and the service keeps serving.
    bad = httpx.post(
        f"{ingress}/v2/models/{MODEL}/infer", json={"inputs": []}, headers=headers, timeout=10
    )  # fmt: skip
    assert 400 <= bad.status_code < 500
    assert infer_through_ingress(ingress, isvc).is_success


def test_canary_step_matches_the_status_traffic(release: str, values_dir: Path) -> None:
    helm_upgrade(release, chart_values(stable="3", canary="4", percent=25), values_dir)
    isvc = wait_until("the canary rolled out", lambda: canary_ready(release))
    expected = status_split(isvc)
    assert expected == pytest.approx({"3": 0.75, "4": 0.25}, abs=0.01), expected
    if MODE == "standard":
        # (modelStatus is also present: Go's omitempty does not omit a struct.)
        canaries = [
            {key: c[key] for key in ("name", "ready", "trafficPercent")} for c in isvc["status"]["canaryStatuses"]
        ]
        assert canaries == [{"name": "v4", "ready": True, "trafficPercent": 25}]
    seen = observed_split(release)
    assert set(seen) == {"3", "4"}, seen
    for version, share in expected.items():
        assert abs(seen[version] - share) <= SPLIT_TOLERANCE, (seen, expected)
    # Pods say which track and version they serve.
    pods = get_json("pods", "-n", release, "-l", f"tickserve.io/model={MODEL},app.kubernetes.io/component=predictor")
    tracks = {(p["metadata"]["labels"]["tickserve.io/track"], p["metadata"]["labels"]["tickserve.io/model-version"])
              for p in pods["items"] if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")}  # fmt: skip
    assert tracks == {("stable", "3"), ("canary", "4")}


def test_prometheus_tells_canary_from_stable(release: str) -> None:
    """Needs the canary of the previous test: Prometheus scrapes both tracks through the chart's PodMonitor."""
    query = f'count by (track, model_version) (up{{namespace="{release}", model="{MODEL}", track!=""}} == 1)'

    def series() -> set[tuple[str, str]]:
        path = "/api/v1/namespaces/monitoring/services/prometheus-operated:9090/proxy/api/v1/query"
        raw = kubectl("get", "--raw", f"{path}?query={quote(query)}")
        result = json.loads(raw)["data"]["result"]
        return {(r["metric"]["track"], r["metric"]["model_version"]) for r in result}

    both = {("stable", "3"), ("canary", "4")}
    assert wait_until("predictor targets of both tracks in Prometheus", lambda: series() >= both, 180)


def test_promotion_sends_everything_to_the_new_version(release: str, values_dir: Path) -> None:
    helm_upgrade(release, chart_values(stable="4"), values_dir)
    isvc = wait_until("the promotion rolled out", lambda: isvc_ready(release))
    assert status_split(isvc) == pytest.approx({"4": 1.0})
    # Old pods may take a moment to terminate after the rollout reports Ready.
    wait_until("only version 4 answering", lambda: set(observed_split(release)) == {"4"}, 300, 10)


def test_gpu_value_set_schedules_predictors_on_the_gpu_node(models_dir: Path, values_dir: Path) -> None:
    namespace = "tickserve-e2e-gpu"
    kubectl("create", "namespace", namespace)
    try:
        stage_models(namespace, models_dir, on_gpu_node=True)
        values = chart_values(stable="3", predictor={"minReplicas": 1, "gpu": {"enabled": True, "count": 1}})
        values["ingest"] = {"enabled": False}
        helm_upgrade(namespace, values, values_dir, release="gpu")
        selector = "app.kubernetes.io/component=predictor"

        def scheduled_node() -> str | None:
            pods = get_json("pods", "-n", namespace, "-l", selector)["items"]
            return next((p["spec"].get("nodeName") for p in pods if p["spec"].get("nodeName")), None)

        node = wait_until("the GPU predictor scheduled", scheduled_node, 300)
        labels = get_json("node", str(node))["metadata"]["labels"]
        assert labels.get("nvidia.com/gpu.present") == "true"
        pod = get_json("pods", "-n", namespace, "-l", selector)["items"][0]
        limits = next(c for c in pod["spec"]["containers"] if c["name"] == "kserve-container")["resources"]["limits"]
        assert limits["nvidia.com/gpu"] == "1"
    finally:
        subprocess.run([KUBECTL, "delete", "namespace", namespace, "--wait=false"], check=False)
