"""The tickserve Helm chart: lint, schema refusals that name the field, and `helm install` of every value set
against a real kube-apiserver with the KServe v0.20.0 and prometheus-operator CRDs (objects only: no controllers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kube import CommandFailed, ControlPlane, InstalledCrds, read_back
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "tickserve"
VALUE_SETS = sorted(path.name.removesuffix("-values.yaml") for path in (CHART / "ci").glob("*-values.yaml"))


def values_file(name: str) -> Path:
    return CHART / "ci" / f"{name}-values.yaml"


def load_yaml_stream(text: str) -> list[dict]:
    return [doc for doc in YAML(typ="safe").load_all(text) if doc]


def write_values(tmp_path: Path, values: dict) -> Path:
    path = tmp_path / "values.json"
    path.write_text(json.dumps(values))
    return path


def model(name: str = "ticks-1m", **extra: object) -> dict:
    return {"name": name, "horizon": "1m", "stable": {"version": "3", "storageUri": "s3://m/ticks-1m/3"}, **extra}


def test_value_sets_cover_cpu_gpu_knative_and_standard() -> None:
    assert set(VALUE_SETS) >= {"cpu", "gpu", "knative", "standard"}


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_helm_lint_is_clean(helm_cli, value_set: str) -> None:
    result = helm_cli("lint", str(CHART), "--strict", "--values", str(values_file(value_set)))
    assert "0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


# A bad value, and the field path helm's schema error must name.
BAD_VALUES = [
    pytest.param(
        {"models": [model(canary={"version": "4", "storageUri": "s3://m/4", "trafficPercent": 150})]},
        "/models/0/canary/trafficPercent",
        id="canary-traffic-150",
    ),
    pytest.param(
        {"models": [model(canary={"version": "4", "storageUri": "s3://m/4", "trafficPercent": -1})]},
        "/models/0/canary/trafficPercent",
        id="canary-traffic-negative",
    ),
    pytest.param({"deploymentMode": "Serverless"}, "/deploymentMode", id="legacy-deployment-mode"),
    pytest.param({"models": [model(name="Ticks_1m")]}, "/models/0/name", id="model-name-not-dns"),
    pytest.param({"models": [model(horizon="soon")]}, "/models/0/horizon", id="horizon-not-a-duration"),
    pytest.param({"models": []}, "/models", id="no-models"),
    pytest.param({"predictor": {"canaryTrafficPercent": 10}}, "canaryTrafficPercent", id="unknown-key"),
    pytest.param({"predictor": {"gpu": {"enabled": True, "count": 0}}}, "/predictor/gpu/count", id="zero-gpus"),
    pytest.param(
        {"redis": {"external": {"url": "redis://user:secret@redis:6379/0"}}},
        "/redis/external/url",
        id="credentials-in-redis-url",
    ),
    pytest.param({"ingest": {"source": "kafka"}}, "/ingest/source", id="unknown-ingest-source"),
]


@pytest.mark.parametrize(("values", "field"), BAD_VALUES)
def test_schema_refuses_bad_values_naming_the_field(helm_cli, tmp_path: Path, values: dict, field: str) -> None:
    for command in ("template", "lint"):
        result = helm_cli(
            command, "tickserve", str(CHART), "--values", str(write_values(tmp_path, values)), check=False
        )
        assert result.returncode != 0, f"helm {command} accepted {values}"
        assert field in result.stdout + result.stderr, result.stdout + result.stderr


def test_good_values_render(helm_cli, tmp_path: Path) -> None:
    """The refusals above come from the bad field, not from a base that never renders."""
    good = {"models": [model(canary={"version": "4", "storageUri": "s3://m/4", "trafficPercent": 100})]}
    helm_cli("template", "tickserve", str(CHART), "--values", str(write_values(tmp_path, good)))


def test_canary_of_the_stable_version_is_refused(helm_cli, tmp_path: Path) -> None:
    values = {"models": [model(canary={"version": "3", "storageUri": "s3://m/3", "trafficPercent": 10})]}
    result = helm_cli("template", "tickserve", str(CHART), "--values", str(write_values(tmp_path, values)), check=False)
    assert result.returncode != 0
    assert "models[ticks-1m].canary.version" in result.stderr


def test_canary_of_the_stable_model_file_is_refused(helm_cli, tmp_path: Path) -> None:
    values = {"models": [model(canary={"version": "4", "storageUri": "s3://m/ticks-1m/3", "trafficPercent": 10})]}
    result = helm_cli("template", "tickserve", str(CHART), "--values", str(write_values(tmp_path, values)), check=False)
    assert result.returncode != 0
    assert "models[ticks-1m].canary.storageUri" in result.stderr


def test_standard_canary_larger_than_stable_is_refused(helm_cli, tmp_path: Path) -> None:
    values = {
        "models": [model(canary={"version": "4", "storageUri": "s3://m/4", "trafficPercent": 10})],
        "predictor": {"minReplicas": 1, "canaryReplicas": 2},
    }
    result = helm_cli("template", "tickserve", str(CHART), "--values", str(write_values(tmp_path, values)), check=False)
    assert result.returncode != 0
    assert "predictor.canaryReplicas" in result.stderr


def test_external_redis_without_url_is_refused(helm_cli, tmp_path: Path) -> None:
    values = {"redis": {"inCluster": {"enabled": False}}}
    result = helm_cli("template", "tickserve", str(CHART), "--values", str(write_values(tmp_path, values)), check=False)
    assert result.returncode != 0
    assert "redis.external.url" in result.stderr


def test_external_redis_credentials_come_from_a_secret(helm_cli, tmp_path: Path) -> None:
    values = {"redis": {"inCluster": {"enabled": False}, "external": {"existingSecret": {"name": "feature-redis"}}}}
    rendered = load_yaml_stream(
        helm_cli("template", "tickserve", str(CHART), "--values", str(write_values(tmp_path, values))).stdout
    )
    kinds = {(doc["kind"], doc["metadata"]["name"]) for doc in rendered}
    assert not any("redis" in name for kind, name in kinds if kind in ("Deployment", "Service"))
    ingest = next(doc for doc in rendered if doc["kind"] == "Deployment" and doc["metadata"]["name"].endswith("ingest"))
    env = {item["name"]: item for item in ingest["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["TICKSERVE_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "feature-redis", "key": "url"}


def installed(control_plane: ControlPlane, namespace: str, value_set: str) -> dict[tuple[str, str], dict]:
    """helm install (no --wait: nothing reconciles here) and return what the API server stores, by (kind, name)."""
    control_plane.helm(
        "install", "tickserve", str(CHART), "--namespace", namespace, "--values", str(values_file(value_set))
    )
    return stored_objects(control_plane, namespace)


def stored_objects(control_plane: ControlPlane, namespace: str) -> dict[tuple[str, str], dict]:
    """Every object of the release as the API server stores it, read back in one `kubectl get -f`."""
    manifest = control_plane.helm("get", "manifest", "tickserve", "--namespace", namespace).stdout
    listed = control_plane.kubectl("get", "--namespace", namespace, "-o", "json", "-f", "-", input=manifest).stdout
    return {(item["kind"], item["metadata"]["name"]): item for item in json.loads(listed)["items"]}


def inference_services(stored: dict[tuple[str, str], dict]) -> dict[str, dict]:
    return {name: obj for (kind, name), obj in stored.items() if kind == "InferenceService"}


def container(pod_spec: dict) -> dict:
    return next(c for c in pod_spec["containers"] if c["name"] == "kserve-container")


def env_of(pod_spec: dict) -> dict[str, str]:
    return {item["name"]: item.get("value") for item in container(pod_spec)["env"]}


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_helm_install_stores_every_object(
    control_plane: ControlPlane, crds: InstalledCrds, namespace: str, value_set: str
) -> None:
    stored = installed(control_plane, namespace, value_set)
    kinds = {kind for kind, _ in stored}
    assert {"InferenceService", "ServiceAccount", "PodMonitor"} <= kinds
    status = control_plane.helm("status", "tickserve", "--namespace", namespace, "--output", "json").stdout
    assert json.loads(status)["info"]["status"] == "deployed"
    for isvc in inference_services(stored).values():
        predictor, transformer = isvc["spec"]["predictor"], isvc["spec"]["transformer"]
        assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] in ("Standard", "Knative")
        assert env_of(predictor)["PROTOCOL"] == "v2"
        assert env_of(predictor)["STORAGE_URI"].startswith("s3://")
        probes = container(predictor)
        assert probes["readinessProbe"]["httpGet"]["path"] == f"/v2/models/{isvc['metadata']['name']}/ready"
        assert probes["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
        assert "--predictor_protocol=v2" in container(transformer)["args"]
        for component in (predictor, transformer):
            # Container level only: Knative refuses a pod securityContext unless kubernetes.podspec-securitycontext
            # is enabled, which it is not by default.
            assert "securityContext" not in component
            security = container(component)["securityContext"]
            assert security["runAsNonRoot"] is True and security["runAsUser"] > 0
            assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False


def test_knative_canary_is_a_traffic_percent_on_the_latest_revision(
    control_plane: ControlPlane, crds: InstalledCrds, namespace: str
) -> None:
    isvcs = inference_services(installed(control_plane, namespace, "knative"))
    canaried = isvcs["ticks-1m"]["spec"]
    assert isvcs["ticks-1m"]["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"
    assert canaried["predictor"]["canaryTrafficPercent"] == 10
    assert "canary" not in canaried
    # The latest revision runs the candidate and says so; the previous (stable) revision keeps the rest.
    assert env_of(canaried["predictor"])["TICKSERVE_MODEL_VERSION"] == "4"
    assert env_of(canaried["predictor"])["TICKSERVE_TRACK"] == "canary"
    assert canaried["predictor"]["labels"]["tickserve.io/track"] == "canary"
    plain = isvcs["ticks-15m"]["spec"]["predictor"]
    assert "canaryTrafficPercent" not in plain
    assert plain["labels"]["tickserve.io/track"] == "stable"


def test_standard_canary_is_a_spec_canary_entry_behind_a_pool_service(
    control_plane: ControlPlane, crds: InstalledCrds, namespace: str
) -> None:
    stored = installed(control_plane, namespace, "standard")
    spec = inference_services(stored)["ticks-1m"]["spec"]
    assert spec["predictor"]["name"] == "v3"
    assert spec["predictor"]["labels"]["tickserve.io/track"] == "stable"
    assert "canaryTrafficPercent" not in spec["predictor"]
    [canary] = spec["canary"]
    assert canary["trafficPercent"] == 25
    assert canary["predictor"]["name"] == "v4"
    assert (
        canary["predictor"]["labels"] | {"tickserve.io/track": "canary", "tickserve.io/model-version": "4"}
        == (canary["predictor"]["labels"])
    )
    assert env_of(canary["predictor"])["STORAGE_URI"].endswith("/4")
    # The transformer reaches stable and canary pods through a Service selecting both.
    pool = stored[("Service", "ticks-1m-predictor-pool")]
    assert pool["spec"]["selector"] == {"serving.kserve.io/inferenceservice": "ticks-1m", "component": "predictor"}
    # KServe deletes predictor Services carrying these labels that it did not create (orphan cleanup in v0.20.0).
    assert not {"serving.kserve.io/inferenceservice", "component"} & set(pool["metadata"]["labels"])
    assert f"--predictor_host=ticks-1m-predictor-pool.{namespace}" in container(spec["transformer"])["args"]


def test_gpu_value_set_targets_nvidia_nodes(control_plane: ControlPlane, crds: InstalledCrds, namespace: str) -> None:
    predictor = inference_services(installed(control_plane, namespace, "gpu"))["ticks-1m"]["spec"]["predictor"]
    assert predictor["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in predictor["tolerations"]
    assert container(predictor)["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "predictor-cuda" in container(predictor)["image"]


def test_cpu_value_set_schedules_anywhere(control_plane: ControlPlane, crds: InstalledCrds, namespace: str) -> None:
    for isvc in inference_services(installed(control_plane, namespace, "cpu")).values():
        predictor = isvc["spec"]["predictor"]
        assert "nodeSelector" not in predictor and "tolerations" not in predictor
        assert "nvidia.com/gpu" not in container(predictor)["resources"].get("limits", {})
        assert "predictor-cuda" not in container(predictor)["image"]


def test_helm_upgrade_moves_canary_traffic(
    control_plane: ControlPlane, crds: InstalledCrds, namespace: str, tmp_path: Path
) -> None:
    """A canary step is a `helm upgrade` of one value; the stored InferenceService follows."""
    installed(control_plane, namespace, "knative")
    values = YAML(typ="safe").load(values_file("knative").read_text())
    values["models"][0]["canary"]["trafficPercent"] = 50
    control_plane.helm(
        "upgrade", "tickserve", str(CHART), "--namespace", namespace, "--values", str(write_values(tmp_path, values))
    )
    isvc = read_back(control_plane, "inferenceservice.serving.kserve.io", "ticks-1m", namespace)
    assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 50


def test_api_server_refuses_a_standard_canary_over_100_percent(
    control_plane: ControlPlane, crds: InstalledCrds, namespace: str, helm_cli
) -> None:
    """spec.canary[].trafficPercent carries maximum 100 in the v0.20.0 CRD schema, so the API server itself refuses
    150 (unlike predictor.canaryTrafficPercent, which only KServe's webhook checks; the chart schema covers that)."""
    rendered = helm_cli(
        "template", "tickserve", str(CHART), "--namespace", namespace, "--values", str(values_file("standard"))
    ).stdout
    isvc = next(doc for doc in load_yaml_stream(rendered) if doc["kind"] == "InferenceService")
    isvc["spec"]["canary"][0]["trafficPercent"] = 150
    with pytest.raises(CommandFailed) as refused:
        control_plane.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(isvc))
    assert "spec.canary[0].trafficPercent" in str(refused.value)
    assert "150" in str(refused.value)
