"""manifests/ (kustomize, `kubectl apply -k`) is rendered from the chart: it must not drift from a fresh render, and
every directory must apply with server-side apply and read back as written. kubeconform checks the custom
resources against the pinned CRD schemas without a cluster."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from kube import ControlPlane, InstalledCrds, Tools, pinned_crd_files, run
from ruamel.yaml import YAML
from ruamel.yaml.constructor import SafeConstructor

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
RENDER_SCRIPT = REPO / "hack" / "render-manifests.sh"
VALUE_SETS = sorted(path.name.removesuffix("-values.yaml") for path in (REPO / "charts/tickserve/ci").glob("*.yaml"))


def yaml_loader() -> YAML:
    """A safe loader that reads "=" as the plain string it is. Both ruamel loaders take the bare value `=` for the YAML
    1.1 value tag (the pure one only where it is not nested): it appears in prometheus-operator's CRDs as an enum
    value and in the chart's AlertmanagerConfig as `matchType: =`, which kustomize writes unquoted."""
    loader = YAML(typ="safe", pure=True)
    loader.constructor.add_constructor("tag:yaml.org,2002:value", SafeConstructor.construct_yaml_str)
    return loader


def files_under(root: Path) -> dict[str, str]:
    return {str(path.relative_to(root)): path.read_text() for path in sorted(root.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def fresh_render(k8s_tools: Tools, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("manifests")
    run(["bash", RENDER_SCRIPT], env={"HELM": str(k8s_tools.helm), "MANIFESTS_DIR": str(out)})
    return out


def test_one_manifest_directory_per_value_set() -> None:
    assert sorted(path.name for path in MANIFESTS.iterdir() if path.is_dir()) == VALUE_SETS


def test_manifests_equal_a_fresh_render_of_the_chart(fresh_render: Path) -> None:
    committed, fresh = files_under(MANIFESTS), files_under(fresh_render)
    assert committed.keys() == fresh.keys(), "manifests/ has other files than the chart renders; run `make manifests`"
    drifted = [name for name in committed if committed[name] != fresh[name]]
    assert not drifted, f"manifests/ drifted from charts/tickserve in {drifted}; run `make manifests`"


def test_drift_is_detected(fresh_render: Path, tmp_path: Path) -> None:
    """The comparison above can fail: a hand edit of a rendered file makes the trees differ."""
    edited = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, edited)
    target = edited / "cpu" / "tickserve.yaml"
    target.write_text(target.read_text().replace("minReplicas: 1", "minReplicas: 2", 1))
    assert files_under(edited) != files_under(fresh_render)


def kustomize_into(control_plane: ControlPlane, value_set: str, namespace: str, workdir: Path) -> str:
    """`kubectl kustomize` of manifests/<set> with the namespace overridden, as a user applying it elsewhere would."""
    overlay = workdir / value_set
    shutil.copytree(MANIFESTS / value_set, overlay)
    kustomization = overlay / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text() + f"namespace: {namespace}\n")
    return control_plane.kubectl("kustomize", str(overlay)).stdout


def is_subset(written: object, stored: object, path: str = "") -> list[str]:
    """Paths where `stored` lacks or changes what `written` set (the server may add defaults, never drop fields)."""
    if isinstance(written, dict):
        if not isinstance(stored, dict):
            return [path]
        return [miss for key, value in written.items() for miss in is_subset(value, stored.get(key), f"{path}.{key}")]
    if isinstance(written, list):
        if not isinstance(stored, list) or len(stored) != len(written):
            return [path]
        return [miss for i, item in enumerate(written) for miss in is_subset(item, stored[i], f"{path}[{i}]")]
    return [] if written == stored else [f"{path}: wrote {written!r}, stored {stored!r}"]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_manifests_apply_server_side_and_read_back_as_written(
    control_plane: ControlPlane, crds: InstalledCrds, namespace: str, value_set: str, tmp_path: Path
) -> None:
    built = kustomize_into(control_plane, value_set, namespace, tmp_path)
    applied = control_plane.kubectl(
        "apply", "--server-side", "--field-manager=tickserve-manifests", "--validate=strict", "-o", "name", "-f", "-",
        input=built,
    ).stdout.split()  # fmt: skip
    written = [doc for doc in yaml_loader().load_all(built) if doc]
    assert len(applied) == len(written)
    stored = json.loads(control_plane.kubectl("get", "-o", "json", "-f", "-", input=built).stdout)["items"]
    for mine, theirs in zip(written, stored, strict=True):
        assert theirs["metadata"]["namespace"] == namespace
        missing = is_subset(mine, theirs)
        assert not missing, f"{mine['kind']}/{mine['metadata']['name']} did not read back as written: {missing}"


def test_read_back_comparison_can_fail() -> None:
    assert is_subset({"spec": {"a": 1, "b": [1, 2]}}, {"spec": {"a": 1, "b": [1, 2], "c": 3}}) == []
    assert is_subset({"spec": {"a": 1}}, {"spec": {}}) == [".spec.a: wrote 1, stored None"]
    assert is_subset({"spec": {"b": [1, 2]}}, {"spec": {"b": [1]}}) == [".spec.b"]


@pytest.fixture(scope="module")
def crd_json_schemas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pinned CRDs' openAPIV3Schemas as kubeconform schema files: <group>/<kind>_<version>.json."""
    out = tmp_path_factory.mktemp("crd-schemas")
    loader = yaml_loader()
    for source in pinned_crd_files():
        for crd in loader.load_all(source.file.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            kind, group = crd["spec"]["names"]["kind"].lower(), out / crd["spec"]["group"]
            group.mkdir(exist_ok=True)
            for version in crd["spec"]["versions"]:
                schema = version["schema"]["openAPIV3Schema"]
                (group / f"{kind}_{version['name']}.json").write_text(json.dumps(schema))
    return out


def schema_location(schemas: Path) -> str:
    return str(schemas) + "/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_kubeconform_validates_custom_resources_against_the_crds(
    k8s_tools: Tools, crd_json_schemas: Path, value_set: str
) -> None:
    """Core kinds have no offline schema here (the API-server test above validates them); the KServe and
    prometheus-operator kinds are checked against the very CRDs the cluster installs."""
    location = schema_location(crd_json_schemas)
    result = run(
        [k8s_tools.kubeconform, "-strict", "-summary", "-output", "json", "-schema-location", location,
         "-skip", "ServiceAccount,Role,RoleBinding,Service,Deployment,NetworkPolicy,ConfigMap",
         str(MANIFESTS / value_set / "tickserve.yaml")],
        check=False,
    )  # fmt: skip
    report = json.loads(result.stdout)
    assert result.returncode == 0, report
    assert report["summary"]["invalid"] == 0 and report["summary"]["errors"] == 0
    assert report["summary"]["valid"] >= 2  # at least one InferenceService and one PodMonitor


def test_kubeconform_rejects_a_bad_inference_service(k8s_tools: Tools, crd_json_schemas: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata: {name: x}\n"
        "spec:\n  predictor:\n    canaryTrafficPercent: ten\n"
    )
    location = schema_location(crd_json_schemas)
    result = run([k8s_tools.kubeconform, "-strict", "-schema-location", location, str(bad)], check=False)
    assert result.returncode != 0
    assert "canaryTrafficPercent" in result.stdout
