"""Fixtures of the `k8s` tier: a real kube-apiserver + etcd (envtest style), the KServe and prometheus-operator
CRDs, helm, kubectl and kubeconform. This docstring is the contract for tests in tests/k8s/.

Every test collected from this folder is marked `k8s` (`pytest -m k8s` runs the tier, `-m "not k8s"` skips it).
Binaries come from KUBEBUILDER_ASSETS (etcd, kube-apiserver, kubectl) or from `make envtest-assets`, which builds
them with Go into ${TOOLS_CACHE:-${XDG_CACHE_HOME:-~/.cache}/tickserve}/bin. When they are missing, the fixtures
skip loudly on a developer machine and fail in CI (`from tiers import require`).

Fixtures (all session-scoped except `namespace` and `kserve_namespace`):

- `k8s_tools` -> kube.Tools: paths `.etcd .kube_apiserver .kubectl .helm .kubeconform` and `.versions`
  (module -> version from hack/tools/go.mod; `.kubernetes_version` e.g. "v1.34.4"). Needs no cluster: use it
  for `helm template` / `helm lint` / kubeconform via `helm_cli` below, or `kube.run([k8s_tools.kubeconform, ...])`.
- `helm_cli(*args, input=None, check=True)` -> CompletedProcess[str]: helm with throw-away HELM_*_HOME dirs and
  no cluster (render/lint). For install/upgrade use `control_plane.helm`.
- `control_plane` -> kube.ControlPlane, started once per session:
    .server        "https://127.0.0.1:<port>"
    .kubeconfig    Path of an admin kubeconfig (client cert in group system:masters: cluster-admin, may impersonate)
    .api_client    kubernetes.client.ApiClient as admin, e.g. kubernetes.client.CoreV1Api(control_plane.api_client)
    .kubectl(*args, input=None, check=True) and .helm(*args, input=None, check=True): CompletedProcess[str]
                   with text stdout/stderr; KUBECONFIG and isolated caches set; check=True raises
                   kube.CommandFailed whose message carries stderr (use check=False to assert a refusal).
    .tools         the kube.Tools above; .workdir holds etcd.log and kube-apiserver.log for debugging.
  What it is: RBAC authorization, default admission plugins except ServiceAccount, service CIDR 10.0.0.0/24,
  strict OpenAPI/CRD validation. What it is not: no controllers, scheduler or kubelet, so nothing reconciles
  (no Pods from Deployments, no ServiceAccount tokens, namespaces stay Terminating after delete) and no
  KServe/prometheus-operator webhooks. `predictor.canaryTrafficPercent` has no bounds in KServe v0.20.0's CRD
  (nor in its webhook), so the API server here accepts 150; the chart's values.schema.json bounds it.
- `crds` -> kube.InstalledCrds: depends on control_plane; the CRDs from hack/crds.sh, read from the Go module cache,
  applied and Established (about 15 s, most of it the 0.6 MB InferenceService schema): every KServe v0.20.0
  config/crd/full CRD plus ClusterStorageContainer (config/crd/full/clusterstoragecontainer, which KServe's
  controller needs to reconcile any predictor with a storage URI), and prometheus-operator v0.85.0's PodMonitor, ServiceMonitor, PrometheusRule and Probe
  (add a file name to hack/crds.sh if the chart ever ships another monitoring.coreos.com kind).
  `.names` (e.g. "inferenceservices.serving.kserve.io", "servicemonitors.monitoring.coreos.com"),
  `.versions` (module -> version). Request it whenever a test creates KServe or monitoring.coreos.com objects.
- `kubeconform_crd_schemas` -> str: a kubeconform `-schema-location` template for the installed CRDs (schemas
  read back from the API server into <group>/<kind>_<version>.json; about a second). Core kinds have no
  offline kubeconform schema here (kubeconform's default location is on GitHub, unreachable in CI); pass
  `-skip` for them and validate them with a server-side apply or `kubectl apply --dry-run=server`.
- `namespace` (function scope) -> str: a fresh namespace named after the test, deleted afterwards. Objects from
  one test never collide with another's; as there is no namespace controller, deletion only marks it Terminating.
- `kserve_controller` -> kserve_controller.KServeController: KServe's own controller manager (cmd/manager of the
  KServe version hack/crds.sh pins, built by `make kserve-manager` into CACHE/bin/kserve-manager-<version>),
  started once per session on a control plane of its own, so that its webhooks, finalizers and reconciled objects
  never reach the tests above (which assert that the API server stores exactly what they wrote); sessions that do
  not request it never start it. Its plane has the same CRDs as `crds`, the `kserve` namespace with the module's
  `inferenceservice-config` (defaultDeploymentMode Standard, ingress.disableIstioVirtualHost true), and KServe's
  InferenceService defaulting and validating webhooks registered by URL (https://127.0.0.1:<port>, self-signed
  certificate under the manager's $TMPDIR/k8s-webhook-server/serving-certs; the webhook server listens on every
  interface, controller-runtime's default), so objects pass KServe's real admission (test_k8s_admission uses it
  for that). About 25 s to start, almost all of it the CRDs.
    .control_plane   its kube.ControlPlane (.kubectl, .helm, .api_client as above; objects go into `kserve_namespace`)
    .api_client      the admin ApiClient of that plane; .version e.g. "v0.20.0"; .log the manager's log file
    .started_in      seconds from the manager's launch to admission answering
  The manager reconciles Standard-mode InferenceServices into Deployments, Services, HPAs and an Ingress, but with
  no kubelet or kube-controller-manager there are no Pods and no garbage collection: call
  `kserve_controller.mark_deployments_ready(api_client, namespace)` (a finished rollout's status on every Deployment
  that lacks one) until the InferenceServices are Ready; `kserve_controller.wait_for(description, check, timeout)`
  polls. Knative-mode InferenceServices are admitted but not reconciled (no Knative Serving).
- `flux` -> flux.Flux: Flux's source-controller and kustomize-controller (v1.9.6, built by `make flux` into
  CACHE/flux-v1.9.6/) on the `kserve_controller`'s plane, with Flux's CRDs and the `flux-system` namespace where the
  tests' GitRepositories and Kustomizations go. `.git_repository(name, url, username, token)`,
  `.kustomization(name, source, path, target_namespace)`, `.sync(source, kustomization, sha)` (forced reconciles,
  then waits for `status.lastAppliedRevision`), `.request_reconcile(kind, name)`, `.get(kind, name)`.
- `kserve_namespace` (function scope) -> str: like `namespace`, on the `kserve_controller`'s plane, with a name short
  enough for KServe's Ingress hosts (`<isvc>-<component>-<namespace>` must fit one 63-character DNS label).

Helpers in tests/k8s/kube.py: `server_side_apply(cp, yaml_text, namespace=None) -> ["kind.group/name", ...]`,
`read_back(cp, resource, name, namespace) -> dict`, `can_i(cp.api_client, service_account=, namespace=, verb=,
resource=, group="", target_namespace=None, subresource="", name="") -> bool` (a SubjectAccessReview),
`run(command, env=, input=, check=)`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import kubernetes
import pytest
from flux import FLUX_VERSION, Flux
from flux import built as flux_built
from kserve_controller import KSERVE_MODULE, KServeController, manager_binary
from kube import (
    ControlPlane,
    InstalledCrds,
    Tools,
    find_tools,
    install_crds,
    pinned_crd_files,
    run,
    write_kubeconform_schemas,
)
from tiers import require

K8S_DIR = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/k8s as `k8s`; this hook sees the whole session, hence the path check."""
    for item in items:
        if K8S_DIR in item.path.parents:
            item.add_marker(pytest.mark.k8s)


@pytest.fixture(scope="session")
def k8s_tools() -> Tools:
    tools, missing = find_tools()
    require(
        tools is not None,
        "k8s tier: envtest assets missing: "
        + ", ".join(missing)
        + ". Run `make envtest-assets` (builds them with Go, several minutes once) or set KUBEBUILDER_ASSETS",
    )
    return tools  # type: ignore[return-value]


@pytest.fixture(scope="session")
def helm_cli(
    k8s_tools: Tools, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., subprocess.CompletedProcess[str]]:
    home = tmp_path_factory.mktemp("helm-home")
    env = {
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
        # No cluster: a stray developer kubeconfig must not leak into rendering.
        "KUBECONFIG": str(home / "no-cluster"),
    }

    def helm(*args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([k8s_tools.helm, *args], env=env, input=input, check=check)

    return helm


@pytest.fixture(scope="session")
def control_plane(k8s_tools: Tools, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with ControlPlane(k8s_tools, tmp_path_factory.mktemp("control-plane")) as plane:
        yield plane


@pytest.fixture(scope="session")
def crds(control_plane: ControlPlane) -> InstalledCrds:
    go_found = shutil.which("go") is not None or Path("/usr/local/go/bin/go").exists()
    require(go_found, "k8s tier: Go is needed to resolve the pinned CRD modules (hack/crds.sh); install Go")
    return install_crds(control_plane, pinned_crd_files())


@pytest.fixture(scope="session")
def kubeconform_crd_schemas(
    control_plane: ControlPlane, crds: InstalledCrds, tmp_path_factory: pytest.TempPathFactory
) -> str:
    return write_kubeconform_schemas(control_plane, crds.names, tmp_path_factory.mktemp("kubeconform-schemas"))


def fresh_namespace(plane: ControlPlane, request: pytest.FixtureRequest, slug_length: int = 48) -> Iterator[str]:
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:slug_length].strip("-")
    name = f"{slug}-{uuid.uuid4().hex[:6]}"
    core = kubernetes.client.CoreV1Api(plane.api_client)
    core.create_namespace(kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    yield from fresh_namespace(control_plane, request)


@pytest.fixture(scope="session")
def kserve_controller(k8s_tools: Tools, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KServeController]:
    go_found = shutil.which("go") is not None or Path("/usr/local/go/bin/go").exists()
    require(go_found, "k8s tier: Go is needed to resolve the pinned KServe module (hack/crds.sh); install Go")
    sources = pinned_crd_files()
    version = next(source.version for source in sources if source.module == KSERVE_MODULE)
    binary = manager_binary(version)
    require(
        os.access(binary, os.X_OK),
        f"k8s tier: KServe's controller manager {version} is not built ({binary}). Run `make kserve-manager` "
        "(builds it with Go, about 2.5 minutes once)",
    )
    workdir = tmp_path_factory.mktemp("kserve-controller")
    (workdir / "control-plane").mkdir()
    with ControlPlane(k8s_tools, workdir / "control-plane") as plane:
        crds = install_crds(plane, sources)
        with KServeController(plane, crds, binary, version, workdir) as controller:
            yield controller


@pytest.fixture(scope="session")
def flux(kserve_controller: KServeController, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flux]:
    require(
        flux_built(),
        f"k8s tier: Flux's controllers {FLUX_VERSION} are not built. Run `make flux` (builds source-controller and "
        "kustomize-controller with Go, about 5 minutes once)",
    )
    with Flux(kserve_controller.control_plane, tmp_path_factory.mktemp("flux")) as controllers:
        yield controllers


@pytest.fixture
def kserve_namespace(kserve_controller: KServeController, request: pytest.FixtureRequest) -> Iterator[str]:
    # KServe puts `<isvc>-<component>-<namespace>` into one DNS label of its Ingress hosts (63 characters at most).
    yield from fresh_namespace(kserve_controller.control_plane, request, slug_length=16)
