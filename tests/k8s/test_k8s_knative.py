"""Knative mode, checked by Knative itself: the predictor and transformer pod specs the chart renders pass Knative
Serving 1.21's own admission validation (serving.ValidatePodSpec, built from knative.dev/serving v0.48.1 by
e2e/knative-validate) with Knative's default feature flags, and GPU scheduling needs exactly the two flags the README
names. Knative refuses fields a plain Deployment accepts (a pod securityContext, nodeSelector, tolerations), which
neither kubeconform nor the KServe CRD schema catch."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from conftest import require
from kube import run, tools_cache_dir
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "tickserve"
VALIDATOR_MODULE = REPO / "e2e" / "knative-validate"
POD_SPEC_FIELDS = ("containers", "volumes", "serviceAccountName", "imagePullSecrets", "securityContext",
                   "nodeSelector", "tolerations", "affinity")  # fmt: skip
GPU_FLAGS = "kubernetes.podspec-nodeselector kubernetes.podspec-tolerations"


@pytest.fixture(scope="session")
def knative_validate() -> Path:
    """The validator binary, built once per Knative version into the tools cache (like envtest-assets)."""
    go = shutil.which("go") or ("/usr/local/go/bin/go" if os.access("/usr/local/go/bin/go", os.X_OK) else None)
    require(go is not None, "Go is needed to build e2e/knative-validate (https://go.dev/dl/)")
    version = re.search(r"knative\.dev/serving (v\S+)", (VALIDATOR_MODULE / "go.mod").read_text())
    assert version is not None
    binary = tools_cache_dir() / "bin" / f"knative-validate-{version.group(1)}"
    if not os.access(binary, os.X_OK):
        binary.parent.mkdir(parents=True, exist_ok=True)
        partial = binary.with_suffix(".partial")
        run(
            ["bash", "-c", f'cd "{VALIDATOR_MODULE}" && "{go}" build -trimpath -o "{partial}" .'],
            env={"GOFLAGS": "-mod=readonly -buildvcs=false", "CGO_ENABLED": "0"},
        )
        partial.rename(binary)
    return binary


def knative_pod_specs(helm_cli, value_set: str) -> dict[str, dict]:
    """`<isvc>/<component>` -> the pod-spec part of that InferenceService component, rendered in Knative mode."""
    rendered = helm_cli(
        "template", "tickserve", str(CHART), "--values", str(CHART / "ci" / f"{value_set}-values.yaml"),
        "--set", "deploymentMode=Knative",
    ).stdout  # fmt: skip
    specs = {}
    for doc in YAML(typ="safe").load_all(rendered):
        if doc and doc["kind"] == "InferenceService":
            for component in ("predictor", "transformer"):
                fields = doc["spec"][component]
                specs[f"{doc['metadata']['name']}/{component}"] = {k: fields[k] for k in POD_SPEC_FIELDS if k in fields}
    assert specs
    return specs


def validate(binary: Path, specs: dict[str, dict], features: str = "") -> dict[str, dict]:
    result = run([binary, "-features", features], input=json.dumps(list(specs.values())))
    return dict(zip(specs, json.loads(result.stdout), strict=True))


def test_knative_accepts_the_chart_with_default_feature_flags(helm_cli, knative_validate: Path) -> None:
    verdicts = validate(knative_validate, knative_pod_specs(helm_cli, "knative"))
    assert {name: v["error"] for name, v in verdicts.items() if v["error"]} == {}
    # No "insecure default" warnings either: every container sets its security context explicitly.
    assert {name: v["warning"] for name, v in verdicts.items() if v["warning"]} == {}


def test_gpu_scheduling_needs_the_nodeselector_and_tolerations_flags(helm_cli, knative_validate: Path) -> None:
    specs = knative_pod_specs(helm_cli, "gpu")
    refused = validate(knative_validate, specs)
    predictors = [name for name in specs if name.endswith("/predictor")]
    for name in predictors:
        assert refused[name]["error"] is not None
        assert "nodeSelector" in refused[name]["error"] and "tolerations" in refused[name]["error"]
    accepted = validate(knative_validate, specs, GPU_FLAGS)
    assert {name: v["error"] for name, v in accepted.items() if v["error"]} == {}


def test_a_pod_level_security_context_would_be_refused(knative_validate: Path) -> None:
    """Why the chart sets security at container level: the same settings at pod level are refused by default."""
    spec = {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532},
        "containers": [
            {"image": "ghcr.io/tickserve/predictor:0.1.0", "ports": [{"name": "http1", "containerPort": 8080}]}
        ],
    }
    [verdict] = validate(knative_validate, {"pod": spec}).values()
    assert verdict["error"] is not None and "securityContext.runAsUser" in verdict["error"]
