"""A real Kubernetes control plane for tests, started the way controller-runtime's envtest does it.

etcd and kube-apiserver run as child processes on free loopback ports with certificates generated per session;
there is no scheduler, controller-manager or kubelet, so objects are stored, validated (OpenAPI and CRD schemas,
admission, RBAC) and never reconciled: Deployments get no Pods, deleted namespaces stay Terminating.
The binaries come from hack/envtest-assets.sh (`make envtest-assets`) or from KUBEBUILDER_ASSETS; the CRDs from
hack/crds.sh. tests/k8s/conftest.py turns these pieces into fixtures; this module holds no pytest code.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
import re
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import kubernetes
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from tickserve.processes import ServerProcess, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS_GO_MOD = REPO_ROOT / "hack" / "tools" / "go.mod"
CRDS_SCRIPT = REPO_ROOT / "hack" / "crds.sh"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
# The first address of the service range: the in-cluster `kubernetes` Service, named in the serving certificate.
KUBERNETES_SERVICE_IP = "10.0.0.1"

# Which module's version each tool is built from (hack/envtest-assets.sh names binaries <tool>-<version>).
TOOL_MODULES = {
    "etcd": "go.etcd.io/etcd/server/v3",
    "kube-apiserver": "k8s.io/kubernetes",
    "kubectl": "k8s.io/kubernetes",
    "helm": "helm.sh/helm/v3",
    "kubeconform": "github.com/yannh/kubeconform",
}
ENVTEST_TOOLS = ("etcd", "kube-apiserver", "kubectl")


class CommandFailed(RuntimeError):
    """A tool exited non-zero; the message carries the command and its stderr so the test report explains it."""

    def __init__(self, result: subprocess.CompletedProcess[str]) -> None:
        self.result = result
        command = " ".join(str(part) for part in result.args)
        super().__init__(f"`{command}` exited {result.returncode}:\n{result.stderr.strip() or result.stdout.strip()}")


def run(
    command: list[str | Path], *, env: dict[str, str] | None = None, input: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a tool to completion with text I/O; raise CommandFailed (with stderr) when `check` and it fails."""
    result = subprocess.run(
        [str(part) for part in command],
        input=input,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )
    if check and result.returncode != 0:
        raise CommandFailed(result)
    return result


# --- which binaries ------------------------------------------------------------------------------------------------


def tools_cache_dir() -> Path:
    """The same default as the Makefile's TOOLS_CACHE, so `make envtest-assets` and pytest agree without setup."""
    if explicit := os.environ.get("TOOLS_CACHE"):
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tickserve"


def pinned_versions(go_mod: Path = TOOLS_GO_MOD) -> dict[str, str]:
    """Module -> version from the `require` lines of hack/tools/go.mod (replace lines have `=>` and never match)."""
    text = go_mod.read_text()
    versions = {}
    for module in set(TOOL_MODULES.values()):
        match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)\s*(?://.*)?$", text, re.MULTILINE)
        if match is None:
            raise ValueError(f"{go_mod} does not require {module}")
        versions[module] = match.group(1)
    return versions


@dataclass(frozen=True)
class Tools:
    """Absolute paths of the binaries the k8s tier runs, and the module versions they were built from."""

    etcd: Path
    kube_apiserver: Path
    kubectl: Path
    helm: Path
    kubeconform: Path
    versions: dict[str, str]

    @property
    def kubernetes_version(self) -> str:
        return self.versions["k8s.io/kubernetes"]


def find_tools(cache_dir: Path | None = None) -> tuple[Tools | None, list[str]]:
    """Resolve every tool; return (Tools, []) or (None, names of what is missing).

    KUBEBUILDER_ASSETS wins for etcd, kube-apiserver and kubectl when it holds them (setup-envtest's layout);
    everything else is CACHE/bin/<tool>-<pinned version>.
    """
    versions = pinned_versions()
    bin_dir = (cache_dir or tools_cache_dir()) / "bin"
    assets = Path(os.environ["KUBEBUILDER_ASSETS"]) if os.environ.get("KUBEBUILDER_ASSETS") else None
    paths: dict[str, Path] = {}
    missing = []
    for tool, module in TOOL_MODULES.items():
        candidates = [bin_dir / f"{tool}-{versions[module]}"]
        if assets is not None and tool in ENVTEST_TOOLS:
            candidates.insert(0, assets / tool)
        found = next((path for path in candidates if os.access(path, os.X_OK)), None)
        if found is None:
            missing.append(f"{tool} ({' or '.join(str(path) for path in candidates)})")
        else:
            paths[tool.replace("-", "_")] = found
    if missing:
        return None, missing
    return Tools(**paths, versions=versions), []


# --- certificates --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """Files of a throw-away PKI: a CA, the API server's serving pair, the admin client pair, the SA signing key."""

    ca_cert: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    service_account_key: Path
    service_account_public_key: Path


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _certificate(
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer: x509.Name,
    signing_key: ec.EllipticCurvePrivateKey,
    *,
    is_ca: bool = False,
    server_names: list[x509.GeneralName] | None = None,
    client: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    if is_ca:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        usages = [x509.ExtendedKeyUsageOID.CLIENT_AUTH] if client else [x509.ExtendedKeyUsageOID.SERVER_AUTH]
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if server_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(server_names), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def generate_pki(directory: Path) -> Pki:
    """Write a fresh CA, serving and admin certificates and the service-account key pair into `directory`.

    The admin certificate is in group system:masters, which RBAC always allows (and which may impersonate),
    so tests act as cluster-admin while every other identity is checked by real RBAC.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tickserve-test-ca")])
    ca = _certificate(ca_name, ca_key.public_key(), ca_name, ca_key, is_ca=True)

    serving_key = ec.generate_private_key(ec.SECP256R1())
    dns_names = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"]
    server_names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    server_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", KUBERNETES_SERVICE_IP)]
    serving = _certificate(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
        serving_key.public_key(),
        ca_name,
        ca_key,
        server_names=server_names,
    )

    admin_key = ec.generate_private_key(ec.SECP256R1())
    admin_subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
            x509.NameAttribute(NameOID.COMMON_NAME, "tickserve-test-admin"),
        ]
    )
    admin = _certificate(admin_subject, admin_key.public_key(), ca_name, ca_key, client=True)

    # Service-account tokens are signed with RS256 by default, so this key is RSA.
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa_public = sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    files = {
        "ca.crt": ca.public_bytes(serialization.Encoding.PEM),
        "apiserver.crt": serving.public_bytes(serialization.Encoding.PEM),
        "apiserver.key": _pem_key(serving_key),
        "admin.crt": admin.public_bytes(serialization.Encoding.PEM),
        "admin.key": _pem_key(admin_key),
        "sa.key": _pem_key(sa_key),
        "sa.pub": sa_public,
    }
    for name, content in files.items():
        (directory / name).write_bytes(content)
        (directory / name).chmod(0o600)
    return Pki(
        ca_cert=directory / "ca.crt",
        serving_cert=directory / "apiserver.crt",
        serving_key=directory / "apiserver.key",
        admin_cert=directory / "admin.crt",
        admin_key=directory / "admin.key",
        service_account_key=directory / "sa.key",
        service_account_public_key=directory / "sa.pub",
    )


def write_kubeconfig(path: Path, server: str, pki: Pki, context: str = "envtest") -> Path:
    """A self-contained admin kubeconfig (certificates inlined). JSON is valid YAML, so kubectl and helm read it."""

    def inline(file: Path) -> str:
        return base64.b64encode(file.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": context, "cluster": {"server": server, "certificate-authority-data": inline(pki.ca_cert)}}
        ],
        "users": [
            {
                "name": "admin",
                "user": {
                    "client-certificate-data": inline(pki.admin_cert),
                    "client-key-data": inline(pki.admin_key),
                },
            }
        ],
        "contexts": [{"name": context, "context": {"cluster": context, "user": "admin", "namespace": "default"}}],
        "current-context": context,
    }
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)
    return path


# --- the control plane ---------------------------------------------------------------------------------------------


@dataclass
class ControlPlane:
    """etcd + kube-apiserver on loopback, an admin kubeconfig, and runners for kubectl and helm against them.

    Use as a context manager, or call start() and stop(). `workdir` holds the PKI, etcd's data, the logs
    (etcd.log, kube-apiserver.log) and the isolated kubectl/helm caches.
    """

    tools: Tools
    workdir: Path
    start_timeout: float = 120.0
    kubeconfig: Path = field(init=False)
    server: str = field(init=False)
    pki: Pki = field(init=False)
    started_in: float = field(init=False, default=0.0)
    _processes: list[ServerProcess] = field(init=False, default_factory=list)
    _api_client: kubernetes.client.ApiClient | None = field(init=False, default=None)

    def start(self) -> ControlPlane:
        began = time.monotonic()
        self.pki = generate_pki(self.workdir / "pki")
        try:
            etcd_url = self._start_etcd()
            self._start_apiserver(etcd_url)
        except BaseException:
            self.stop()
            raise
        self.kubeconfig = write_kubeconfig(self.workdir / "kubeconfig", self.server, self.pki)
        self.started_in = time.monotonic() - began
        return self

    def _start_etcd(self) -> str:
        client_port, peer_port = free_port(), free_port()
        client_url, peer_url = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
        command = [
            str(self.tools.etcd),
            f"--data-dir={self.workdir / 'etcd-data'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=default={peer_url}",
            # Test data is thrown away, so durability buys nothing and fsync costs seconds on a busy disk.
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]
        etcd = ServerProcess(
            "etcd", command, cwd=self.workdir, ready_url=f"{client_url}/health", timeout=self.start_timeout
        )
        self._processes.append(etcd)
        etcd.start()
        return client_url

    def _start_apiserver(self, etcd_url: str) -> None:
        port = free_port()
        self.server = f"https://127.0.0.1:{port}"
        command = [
            str(self.tools.kube_apiserver),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={port}",
            f"--tls-cert-file={self.pki.serving_cert}",
            f"--tls-private-key-file={self.pki.serving_key}",
            f"--client-ca-file={self.pki.ca_cert}",
            f"--service-account-issuer={self.server}",
            f"--service-account-key-file={self.pki.service_account_public_key}",
            f"--service-account-signing-key-file={self.pki.service_account_key}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            # RBAC so that SubjectAccessReviews and `kubectl auth can-i` answer what a real cluster would.
            "--authorization-mode=RBAC",
            "--allow-privileged=true",
            # Without a controller-manager no `default` ServiceAccount is ever created, and this plugin would
            # reject every Pod; envtest disables it for the same reason. Everything else stays at its default.
            "--disable-admission-plugins=ServiceAccount",
            "--profiling=false",
            "--v=1",
        ]
        apiserver = ServerProcess(
            "kube-apiserver", command, cwd=self.workdir, tcp_port=port, timeout=self.start_timeout
        )
        self._processes.append(apiserver)
        apiserver.start()
        self._wait_ready(apiserver)

    def _wait_ready(self, apiserver: ServerProcess) -> None:
        """Poll /readyz (readable anonymously) until every post-start hook, RBAC bootstrap included, is done."""
        deadline = time.monotonic() + self.start_timeout
        last = "no answer"
        with httpx.Client(verify=ssl.create_default_context(cafile=self.pki.ca_cert), timeout=2.0) as client:
            while time.monotonic() < deadline:
                if not apiserver.alive():
                    raise RuntimeError(f"kube-apiserver exited:\n{apiserver.log_tail()}")
                try:
                    response = client.get(f"{self.server}/readyz")
                    if response.status_code == 200:
                        return
                    last = f"{response.status_code} {response.text[-500:]}"
                except httpx.HTTPError as error:
                    last = repr(error)
                time.sleep(0.2)
        raise TimeoutError(f"kube-apiserver not ready after {self.start_timeout}s ({last}):\n{apiserver.log_tail()}")

    def stop(self) -> None:
        if self._api_client is not None:
            self._api_client.close()
            self._api_client = None
        for process in reversed(self._processes):
            process.stop()
        self._processes.clear()

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def api_client(self) -> kubernetes.client.ApiClient:
        """A `kubernetes` Python ApiClient authenticated as the admin (one per control plane, closed on stop)."""
        if self._api_client is None:
            self._api_client = kubernetes.config.new_client_from_config(config_file=str(self.kubeconfig))
        return self._api_client

    def tool_env(self) -> dict[str, str]:
        """KUBECONFIG plus per-session caches, so tests never read or write the developer's ~/.kube or helm dirs."""
        home = self.workdir / "tool-home"
        return {
            "KUBECONFIG": str(self.kubeconfig),
            "KUBECACHEDIR": str(home / "kube-cache"),
            "HELM_CACHE_HOME": str(home / "helm-cache"),
            "HELM_CONFIG_HOME": str(home / "helm-config"),
            "HELM_DATA_HOME": str(home / "helm-data"),
        }

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this control plane; with check=True a failure raises CommandFailed (with stderr)."""
        return run([self.tools.kubectl, *args], env=self.tool_env(), input=input, check=check)

    def helm(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run helm against this control plane (install/upgrade/template alike) with isolated helm dirs."""
        return run([self.tools.helm, *args], env=self.tool_env(), input=input, check=check)


# --- CRDs ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CrdSource:
    module: str
    version: str
    file: Path


def pinned_crd_files() -> list[CrdSource]:
    """The CRD files hack/crds.sh resolves from the Go module cache (downloading them on first use)."""
    result = run(["bash", CRDS_SCRIPT])
    sources = []
    for line in result.stdout.splitlines():
        module, version, file = line.split(" ", 2)
        sources.append(CrdSource(module, version, Path(file)))
    return sources


@dataclass(frozen=True)
class InstalledCrds:
    """What the `crds` fixture installed: CRD names (e.g. inferenceservices.serving.kserve.io) and module versions."""

    names: list[str]
    versions: dict[str, str]
    sources: list[CrdSource]


def install_crds(control_plane: ControlPlane, sources: list[CrdSource], timeout: float = 120.0) -> InstalledCrds:
    """Server-side apply the CRDs (client-side apply would overflow the last-applied annotation on these large
    schemas) and wait until the API server serves them (condition Established)."""
    files = [arg for source in sources for arg in ("-f", str(source.file))]
    applied = control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-o", "name", *files)
    names = [line.split("/", 1)[1] for line in applied.stdout.split()]
    wait_established(control_plane, names, timeout)
    versions = {source.module: source.version for source in sources}
    return InstalledCrds(names=names, versions=versions, sources=sources)


def wait_established(control_plane: ControlPlane, names: list[str], timeout: float) -> None:
    """Poll the CRDs' conditions. Not `kubectl wait`: it fails outright when it reads a CRD whose status has no
    conditions yet, which is the normal state for a few milliseconds after creation."""
    extensions = kubernetes.client.ApiextensionsV1Api(control_plane.api_client)
    pending = set(names)
    deadline = time.monotonic() + timeout
    while pending:
        for crd in extensions.list_custom_resource_definition().items:
            conditions = crd.status.conditions or []
            if any(c.type == "Established" and c.status == "True" for c in conditions):
                pending.discard(crd.metadata.name)
        if pending and time.monotonic() > deadline:
            raise TimeoutError(f"CRDs not Established after {timeout}s: {sorted(pending)}")
        if pending:
            time.sleep(0.1)


def write_kubeconform_schemas(control_plane: ControlPlane, crd_names: list[str], dest: Path) -> str:
    """Write the installed CRDs' schemas as kubeconform JSON schemas (<group>/<kind>_<version>.json) and return the
    matching `-schema-location` template. Read back from the API server (JSON, milliseconds) rather than parsed
    from the multi-megabyte YAML files, so kubeconform checks exactly the schemas the cluster enforces."""
    wanted = set(crd_names)
    stored = json.loads(control_plane.kubectl("get", "customresourcedefinitions", "-o", "json").stdout)["items"]
    for crd in stored:
        if crd["metadata"]["name"] not in wanted:
            continue
        group_dir = dest / crd["spec"]["group"]
        group_dir.mkdir(parents=True, exist_ok=True)
        kind = crd["spec"]["names"]["kind"].lower()
        for version in crd["spec"]["versions"]:
            schema = version["schema"]["openAPIV3Schema"]
            (group_dir / f"{kind}_{version['name']}.json").write_text(json.dumps(schema))
    return f"{dest}/{{{{ .Group }}}}/{{{{ .ResourceKind }}}}_{{{{ .ResourceAPIVersion }}}}.json"


# --- helpers for tests -----------------------------------------------------------------------------------------------


def server_side_apply(
    control_plane: ControlPlane, manifests: str, *, namespace: str | None = None, field_manager: str = "tickserve-tests"
) -> list[str]:
    """Server-side apply a YAML stream (strict field validation: unknown fields are refused, as on a real cluster)
    and return the applied objects as `kind.group/name`. Raises CommandFailed with the server's message."""
    args = ["apply", "--server-side", f"--field-manager={field_manager}", "--validate=strict", "-o", "name", "-f", "-"]
    if namespace is not None:
        args += ["--namespace", namespace]
    return control_plane.kubectl(*args, input=manifests).stdout.split()


def read_back(control_plane: ControlPlane, resource: str, name: str, namespace: str | None = None) -> dict:
    """The object as the API server stores it (defaults applied, unknown fields pruned), as a dict."""
    args = ["get", resource, name, "-o", "json"]
    if namespace is not None:
        args += ["--namespace", namespace]
    return json.loads(control_plane.kubectl(*args).stdout)


def can_i(
    api_client: kubernetes.client.ApiClient,
    *,
    service_account: str,
    namespace: str,
    verb: str,
    resource: str,
    group: str = "",
    target_namespace: str | None = None,
    subresource: str = "",
    name: str = "",
) -> bool:
    """Ask RBAC (SubjectAccessReview) whether ServiceAccount `namespace/service_account` may `verb` the
    `resource` in API `group` ("" is core) in `target_namespace` (None: cluster-scoped or all namespaces)."""
    user = f"system:serviceaccount:{namespace}:{service_account}"
    groups = ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"]
    review = kubernetes.client.V1SubjectAccessReview(
        spec=kubernetes.client.V1SubjectAccessReviewSpec(
            user=user,
            groups=groups,
            resource_attributes=kubernetes.client.V1ResourceAttributes(
                verb=verb,
                resource=resource,
                group=group,
                namespace=target_namespace,
                subresource=subresource or None,
                name=name or None,
            ),
        )
    )
    answer = kubernetes.client.AuthorizationV1Api(api_client).create_subject_access_review(review)
    return bool(answer.status.allowed)
