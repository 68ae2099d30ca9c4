"""The admission checks of the real controllers, which envtest alone does not run: what the chart renders passes
KServe v0.20.0's InferenceService webhooks (defaulting, then validation), served by KServe's own controller manager
(the `kserve_controller` fixture), and Knative Serving 1.21's pod-spec validation (e2e/knative-validate,
knative.dev/serving v0.48.1), compiled from the upstream Go code.

They refuse things the CRD schemas and kubeconform accept: Knative a pod securityContext, nodeSelector or tolerations
without feature flags; KServe a canary outside Standard mode, a canary without a storage URI, or renaming a
predictor (promotion) without a model change."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
from pathlib import Path

import pytest
from kserve_controller import KServeController
from kube import run, tools_cache_dir
from ruamel.yaml import YAML
from tiers import require

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "tickserve"
VALUE_SETS = sorted(path.name.removesuffix("-values.yaml") for path in (CHART / "ci").glob("*-values.yaml"))
POD_SPEC_FIELDS = ("containers", "volumes", "serviceAccountName", "imagePullSecrets", "securityContext",
                   "nodeSelector", "tolerations", "affinity")  # fmt: skip
GPU_FLAGS = "kubernetes.podspec-nodeselector kubernetes.podspec-tolerations"


def go_tool(module_dir: Path, pinned_module: str) -> Path:
    """Build the command in `module_dir` once per pinned upstream version into the tools cache (as envtest-assets
    does for its tools); later sessions reuse it."""
    go = shutil.which("go") or ("/usr/local/go/bin/go" if os.access("/usr/local/go/bin/go", os.X_OK) else None)
    require(go is not None, f"Go is needed to build {module_dir.relative_to(REPO)} (https://go.dev/dl/)")
    version = re.search(
        rf"^\s*(?:require\s+)?{re.escape(pinned_module)} (v\S+)", (module_dir / "go.mod").read_text(), re.M
    )
    assert version is not None, f"{module_dir}/go.mod does not require {pinned_module}"
    binary = tools_cache_dir() / "bin" / f"{module_dir.name}-{version.group(1)}"
    if not os.access(binary, os.X_OK):
        binary.parent.mkdir(parents=True, exist_ok=True)
        partial = binary.with_suffix(".partial")
        run(
            ["bash", "-c", f'cd "{module_dir}" && "{go}" build -trimpath -o "{partial}" .'],
            env={"GOFLAGS": "-mod=readonly -buildvcs=false", "CGO_ENABLED": "0"},
        )
        partial.rename(binary)
    return binary


@pytest.fixture(scope="session")
def knative_validate() -> Path:
    return go_tool(REPO / "e2e" / "knative-validate", "knative.dev/serving")


def render(helm_cli, tmp_path: Path, value_set: str, **changes: object) -> list[dict]:
    """The InferenceServices of a value set, with top-level `changes` to its values."""
    values = YAML(typ="safe").load((CHART / "ci" / f"{value_set}-values.yaml").read_text())
    values.update(changes)
    path = tmp_path / f"{value_set}-{len(list(tmp_path.iterdir()))}.json"
    path.write_text(json.dumps(values))
    rendered = helm_cli("template", "tickserve", str(CHART), "--namespace", "tickserve", "--values", str(path)).stdout
    return [doc for doc in YAML(typ="safe").load_all(rendered) if doc and doc["kind"] == "InferenceService"]


# --- KServe's InferenceService webhooks --------------------------------------------------------------------------


def kserve_verdict(controller: KServeController, namespace: str, isvc: dict, *, dry_run: bool = True) -> str | None:
    """Create or update `isvc` in `namespace` through the API server and so through KServe's webhooks: None when
    admitted, else the refusal. `dry_run` keeps the object out of the cluster (and out of KServe's reconciler)."""
    isvc = {**isvc, "metadata": {**isvc["metadata"], "namespace": namespace}}
    args = ["apply", "--server-side", "--field-manager=tickserve-tests", "--force-conflicts", "-f", "-"]
    if dry_run:
        args.append("--dry-run=server")
    result = controller.control_plane.kubectl(*args, input=json.dumps(isvc), check=False)
    return None if result.returncode == 0 else result.stderr.strip()


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_kserve_admits_every_rendered_inference_service(
    helm_cli, kserve_controller: KServeController, kserve_namespace: str, tmp_path: Path, value_set: str
) -> None:
    isvcs = render(helm_cli, tmp_path, value_set)
    assert [kserve_verdict(kserve_controller, kserve_namespace, isvc) for isvc in isvcs] == [None] * len(isvcs)


def promoted(models: list[dict]) -> list[dict]:
    """The values after promotion: each canary becomes the stable version, no canary left."""
    return [
        {**m, "stable": {k: m["canary"][k] for k in ("version", "storageUri")}, "canary": None}
        if m.get("canary")
        else m
        for m in models
    ]


@pytest.mark.parametrize("value_set", ["standard", "knative"])
def test_kserve_admits_canary_steps_and_promotion(
    helm_cli, kserve_controller: KServeController, kserve_namespace: str, tmp_path: Path, value_set: str
) -> None:
    """Each step is stored, so the next one is an update that KServe validates against it (promotion renames the
    Standard-mode predictor, which KServe allows only with a model change)."""
    models = YAML(typ="safe").load((CHART / "ci" / f"{value_set}-values.yaml").read_text())["models"]
    stable_only = [{**m, "canary": None} for m in models]
    halfway = [{**m, "canary": {**m["canary"], "trafficPercent": 50}} if m.get("canary") else m for m in models]
    for step in (stable_only, models, halfway, promoted(models)):
        isvcs = render(helm_cli, tmp_path, value_set, models=step)
        verdicts = [kserve_verdict(kserve_controller, kserve_namespace, isvc, dry_run=False) for isvc in isvcs]
        assert verdicts == [None] * len(isvcs), step


def test_kserve_refuses_what_the_chart_guards_against(
    helm_cli, kserve_controller: KServeController, kserve_namespace: str, tmp_path: Path
) -> None:
    """The validator is live, and the rules the chart's template checks mirror are real KServe rules."""
    [standard] = render(helm_cli, tmp_path, "standard")
    knative_canary = copy.deepcopy(standard)
    knative_canary["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] = "Knative"
    same_name = copy.deepcopy(standard)
    same_name["spec"]["canary"][0]["predictor"]["name"] = standard["spec"]["predictor"]["name"]
    renamed_same_model = copy.deepcopy(standard)
    renamed_same_model["spec"]["predictor"]["name"] = "v9"

    def verdict(isvc: dict, dry_run: bool = True) -> str | None:
        return kserve_verdict(kserve_controller, kserve_namespace, isvc, dry_run=dry_run)

    assert "canary is only supported in Standard deployment mode" in str(verdict(knative_canary))
    assert "conflicts with stable predictor name" in str(verdict(same_name))
    assert verdict(standard, dry_run=False) is None
    assert "predictor.name change requires a model change" in str(verdict(renamed_same_model))


# --- Knative's pod-spec validation -----------------------------------------------------------------------------------


def knative_pod_specs(isvcs: list[dict]) -> dict[str, dict]:
    """`<isvc>/<component>` -> the pod-spec part of that InferenceService component (what becomes the Revision)."""
    specs = {}
    for isvc in isvcs:
        for component in ("predictor", "transformer"):
            fields = isvc["spec"][component]
            specs[f"{isvc['metadata']['name']}/{component}"] = {k: fields[k] for k in POD_SPEC_FIELDS if k in fields}
    assert specs
    return specs


def knative_verdicts(binary: Path, specs: dict[str, dict], features: str = "") -> dict[str, dict]:
    result = run([binary, "-features", features], input=json.dumps(list(specs.values())))
    return dict(zip(specs, json.loads(result.stdout), strict=True))


def test_knative_accepts_the_chart_with_default_feature_flags(helm_cli, knative_validate: Path, tmp_path: Path) -> None:
    verdicts = knative_verdicts(knative_validate, knative_pod_specs(render(helm_cli, tmp_path, "knative")))
    assert {name: v["error"] for name, v in verdicts.items() if v["error"]} == {}
    # No "insecure default" warnings either: every container sets its security context explicitly.
    assert {name: v["warning"] for name, v in verdicts.items() if v["warning"]} == {}


def test_gpu_scheduling_needs_the_nodeselector_and_tolerations_flags(
    helm_cli, knative_validate: Path, tmp_path: Path
) -> None:
    specs = knative_pod_specs(render(helm_cli, tmp_path, "gpu", deploymentMode="Knative"))
    refused = knative_verdicts(knative_validate, specs)
    predictors = [name for name in specs if name.endswith("/predictor")]
    assert predictors
    for name in predictors:
        assert "nodeSelector" in str(refused[name]["error"]) and "tolerations" in str(refused[name]["error"])
    accepted = knative_verdicts(knative_validate, specs, GPU_FLAGS)
    assert {name: v["error"] for name, v in accepted.items() if v["error"]} == {}


def test_a_pod_level_security_context_would_be_refused(knative_validate: Path) -> None:
    """Why the chart sets security at container level: the same settings at pod level are refused by default."""
    spec = {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532},
        "containers": [
            {"image": "ghcr.io/tickserve/predictor:0.1.0", "ports": [{"name": "http1", "containerPort": 8080}]}
        ],
    }
    [verdict] = knative_verdicts(knative_validate, {"pod": spec}).values()
    assert "securityContext.runAsUser" in str(verdict["error"])
