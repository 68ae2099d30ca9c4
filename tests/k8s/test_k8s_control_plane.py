"""Smoke test of the k8s tier itself: the envtest-style control plane answers, enforces RBAC and real CRD schemas,
and the CRDs are the pinned upstream ones. If these fail, every other tests/k8s result is meaningless."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import kubernetes
import pytest
from kube import CommandFailed, ControlPlane, InstalledCrds, Tools, can_i, read_back, run, server_side_apply


def inference_service(name: str, predictor_extra: str) -> str:
    return f"""
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: {name}
spec:
  predictor:
    {predictor_extra}
    model:
      modelFormat:
        name: onnx
      storageUri: s3://models/signal/3
"""


def test_api_server_reports_a_release_version(control_plane: ControlPlane, k8s_tools: Tools) -> None:
    """hack/envtest-assets.sh stamps the version at build time; an unstamped build says v0.0.0-master, which breaks
    helm's kubeVersion checks and kubectl's skew warnings."""
    binary_version = run([k8s_tools.kube_apiserver, "--version"]).stdout.split()[-1]
    assert re.fullmatch(r"v1\.\d+\.\d+", binary_version)
    assert kubernetes.client.VersionApi(control_plane.api_client).get_code().git_version == binary_version
    versions = json.loads(control_plane.kubectl("version", "--output=json").stdout)
    assert versions["serverVersion"]["gitVersion"] == binary_version
    if not os.environ.get("KUBEBUILDER_ASSETS"):
        assert binary_version == versions["clientVersion"]["gitVersion"] == k8s_tools.kubernetes_version


def test_helm_and_kubeconform_are_the_pinned_builds(helm_cli, k8s_tools: Tools) -> None:
    assert helm_cli("version", "--short").stdout.startswith(k8s_tools.versions["helm.sh/helm/v3"])
    kubeconform = run([k8s_tools.kubeconform, "-v"]).stdout.strip()
    assert kubeconform == k8s_tools.versions["github.com/yannh/kubeconform"]


def test_rbac_decides_service_account_access(control_plane: ControlPlane, namespace: str) -> None:
    def may(verb: str, target_namespace: str) -> bool:
        return can_i(
            control_plane.api_client,
            service_account="reader",
            namespace=namespace,
            verb=verb,
            resource="configmaps",
            target_namespace=target_namespace,
        )

    assert not may("get", namespace)
    server_side_apply(
        control_plane,
        f"""
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: configmap-reader}}
rules:
  - {{apiGroups: [""], resources: [configmaps], verbs: [get, list]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: reader-reads-configmaps}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: configmap-reader}}
subjects:
  - {{kind: ServiceAccount, name: reader, namespace: {namespace}}}
""",
        namespace=namespace,
    )
    assert may("get", namespace)
    assert not may("delete", namespace)
    assert not may("get", "default")
    as_reader = f"--as=system:serviceaccount:{namespace}:reader"
    assert control_plane.kubectl("auth", "can-i", "list", "configmaps", "-n", namespace, as_reader).stdout == "yes\n"


def test_pinned_crds_are_established(control_plane: ControlPlane, crds: InstalledCrds) -> None:
    assert crds.versions.keys() == {"github.com/kserve/kserve", "github.com/prometheus-operator/prometheus-operator"}
    extensions = kubernetes.client.ApiextensionsV1Api(control_plane.api_client)
    established = {
        crd.metadata.name
        for crd in extensions.list_custom_resource_definition().items
        if any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])
    }
    needed = {
        "inferenceservices.serving.kserve.io",
        "servingruntimes.serving.kserve.io",
        # KServe's controller fails every predictor with a storage URI without it (tests/k8s/kserve_controller.py).
        "clusterstoragecontainers.serving.kserve.io",
        "podmonitors.monitoring.coreos.com",
        "servicemonitors.monitoring.coreos.com",
        "prometheusrules.monitoring.coreos.com",
    }
    assert needed <= established
    assert set(crds.names) <= established


def test_valid_inference_service_is_stored(control_plane: ControlPlane, crds: InstalledCrds, namespace: str) -> None:
    applied = server_side_apply(
        control_plane, inference_service("signal", "canaryTrafficPercent: 10"), namespace=namespace
    )
    assert applied == ["inferenceservice.serving.kserve.io/signal"]
    stored = read_back(control_plane, "inferenceservice", "signal", namespace)
    assert stored["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert stored["spec"]["predictor"]["model"]["modelFormat"]["name"] == "onnx"


@pytest.mark.parametrize(
    ("predictor_extra", "named_in_refusal"),
    [
        ('canaryTrafficPercent: "150%"', "canaryTrafficPercent"),
        ("canaryTrafficPercentage: 10", "canaryTrafficPercentage"),
    ],
    ids=["wrong-type", "unknown-field"],
)
def test_inference_service_schema_refuses_bad_specs(
    control_plane: ControlPlane, crds: InstalledCrds, namespace: str, predictor_extra: str, named_in_refusal: str
) -> None:
    """The refusal comes from the real KServe CRD schema served by the API server (type checks, strict fields)."""
    with pytest.raises(CommandFailed) as refused:
        server_side_apply(control_plane, inference_service("broken", predictor_extra), namespace=namespace)
    assert named_in_refusal in str(refused.value)
    missing = control_plane.kubectl("get", "inferenceservice", "broken", "-n", namespace, check=False)
    assert missing.returncode != 0
    assert "NotFound" in missing.stderr


def test_canary_percent_range_is_not_in_the_crd_schema(
    control_plane: ControlPlane, crds: InstalledCrds, namespace: str
) -> None:
    """KServe v0.20.0 bounds `predictor.canaryTrafficPercent` neither in its CRD schema nor in its webhook (see
    test_k8s_admission for the webhook), so the API server stores 150. Chart and rollback code must validate the
    range themselves (the chart schema does). If a KServe bump adds schema bounds, this fails: then tests may rely on the API server for it."""
    server_side_apply(control_plane, inference_service("over", "canaryTrafficPercent: 150"), namespace=namespace)
    stored = read_back(control_plane, "inferenceservice", "over", namespace)
    assert stored["spec"]["predictor"]["canaryTrafficPercent"] == 150


@pytest.mark.parametrize(
    ("predictor_extra", "valid"), [("canaryTrafficPercent: 10", True), ("canaryTrafficPercent: ten", False)]
)
def test_kubeconform_checks_custom_resources_offline(
    k8s_tools: Tools, kubeconform_crd_schemas: str, tmp_path: Path, predictor_extra: str, valid: bool
) -> None:
    manifest = tmp_path / "isvc.yaml"
    manifest.write_text(inference_service("signal", predictor_extra))
    result = run([k8s_tools.kubeconform, "-strict", "-schema-location", kubeconform_crd_schemas, manifest], check=False)
    assert (result.returncode == 0) is valid, result.stdout
    if not valid:
        assert "canaryTrafficPercent" in result.stdout
