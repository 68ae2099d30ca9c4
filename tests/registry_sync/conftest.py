"""Fixtures of the registry-sync tests: a real MLflow tracking server and a real Gitea (session-scoped), a fresh
GitOps repository on that Gitea per test (the tickserve chart, hack/render-manifests.sh and rendered manifests/),
and helpers to drive the registry. The rollback tests can reuse them by importing from here or forge_servers.py.

- `mlflow_server` (tests/conftest.py, session) -> forge_servers.MlflowServer (.url, .port, .workdir, .process); webhooks to http loopback allowed.
- `gitea` (tests/conftest.py, session) -> forge_servers.Gitea (.url, .token, .admin, .password, .api(), .create_repo(name)).
- `helm` -> path of the cached helm (`make install`), which hack/render-manifests.sh finds on its own.
- `gitops` -> GitOps: a repository on Gitea whose `main` holds charts/tickserve with one value set
  ci/prod-values.yaml (ticks-1m stable version 1, no canary) and the manifests rendered from it.
- `registry` -> Models: a registered model (unique name per test) whose version 1 is `champion` (what the GitOps
  repository deploys as stable); `.version(metrics)`, `.alias`, `.unalias`, `.tag`, `.tags`, `.storage_uri`.
- `sync_settings(gitops, model, **overrides)` -> RegistrySyncSettings for that repository and model.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from forge_servers import Gitea, MlflowServer, tools_cache
from gitops_support import VALUES_FILE, GitOps, Models, seed_gitops
from tiers import require

from tickserve.registry_sync.settings import RegistrySyncSettings


@pytest.fixture(scope="session")
def helm() -> Path:
    found = sorted((tools_cache() / "bin").glob("helm-v*"))
    require(bool(found), f"no helm in {tools_cache() / 'bin'}; `make install` builds it")
    return found[-1]


@pytest.fixture
def gitops(gitea: Gitea, helm: Path, tmp_path: Path) -> GitOps:
    name = f"gitops-{uuid.uuid4().hex[:8]}"
    clone_url = gitea.create_repo(name)
    checkout = tmp_path / "gitops-checkout"
    seed_gitops(checkout, helm, gitea.authenticated_url(clone_url))
    gitea.wait_until_pushed(name)
    return GitOps(name, clone_url, checkout, gitea)


@pytest.fixture
def registry(mlflow_server: MlflowServer) -> Models:
    return Models(mlflow_server)


@pytest.fixture
def sync_settings(
    mlflow_server: MlflowServer, helm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., RegistrySyncSettings]:
    monkeypatch.setenv("HELM", str(helm))  # hack/render-manifests.sh in the clone uses it

    def make(gitops: GitOps | None, models: Models, **overrides: Any) -> RegistrySyncSettings:
        """Settings for `gitops` on Gitea (or, with gitops None, whatever `repo`/`forge` overrides say)."""
        forge: dict[str, Any] = {"kind": "none"}
        if gitops is not None:
            forge = {
                "kind": "gitea",
                "api_url": gitops.gitea.url,
                "repository": f"{gitops.gitea.admin}/{gitops.name}",
                "token": gitops.gitea.token,
            }
        data: dict[str, Any] = {
            "tracking_uri": mlflow_server.url,
            "repo": {
                "url": gitops.clone_url if gitops else "",
                "values_file": VALUES_FILE,
                "manifests_command": ["bash", "hack/render-manifests.sh"],
                "workdir": tmp_path / "registry-sync-clone",
            },
            "forge": forge,
            "models": [{"registered_model": models.name, "chart_model": "ticks-1m"}],
            "retries": 2,
            "retry_backoff_seconds": 0.1,
            "request_timeout_seconds": 5,
            "metrics_port": None,
        }
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        return RegistrySyncSettings(**data)

    return make
