"""Forge `none` (the demo's setting): registry-sync pushes content-addressed branches to a plain bare repository
and opens nothing; the branch name alone keeps it exactly-once, and a newer state deletes the older branch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from gitops_support import VALUES_FILE, Models, git, seed_gitops

from tickserve.processes import free_port
from tickserve.registry_sync.cli import build
from tickserve.registry_sync.metrics import Metrics
from tickserve.registry_sync.values import read_deployment

pytestmark = pytest.mark.integration


def remote_branches(bare: Path) -> dict[str, str]:
    out = git(bare, "for-each-ref", "--format=%(refname:short) %(objectname)", "refs/heads/").stdout
    return dict(line.split() for line in out.splitlines())


def test_forge_none_pushes_one_branch_per_state_and_replaces_it_when_the_state_changes(
    registry: Models, sync_settings, helm: Path, tmp_path: Path
) -> None:
    bare = tmp_path / "gitops.git"
    subprocess.run(["git", "init", "--quiet", "--bare", "-b", "main", str(bare)], check=True)
    seed_gitops(tmp_path / "seed", helm, str(bare))
    first = registry.version()
    registry.alias("challenger", first)
    settings = sync_settings(None, registry, repo={"url": str(bare)}, forge={"kind": "none"})
    controller = build(settings, Metrics())

    assert [o.result for o in controller.run_pass() + controller.run_pass()] == ["proposed", "adopted"]
    branches = {name: sha for name, sha in remote_branches(bare).items() if name != "main"}
    assert len(branches) == 1
    (branch,) = branches
    assert branch.startswith("registry-sync/ticks-1m/")
    values = git(bare, "show", f"{branch}:{VALUES_FILE}").stdout
    assert read_deployment(values, "ticks-1m").canary.version == first

    second = registry.version()
    registry.alias("challenger", second)
    controller.run_pass()
    branches = [name for name in remote_branches(bare) if name != "main"]
    assert len(branches) == 1 and branches[0] != branch
    assert (
        read_deployment(git(bare, "show", f"{branches[0]}:{VALUES_FILE}").stdout, "ticks-1m").canary.version == second
    )


def test_the_once_command_exits_non_zero_naming_the_model_that_failed(
    registry: Models, helm: Path, tmp_path: Path
) -> None:
    bare = tmp_path / "gitops.git"
    subprocess.run(["git", "init", "--quiet", "--bare", "-b", "main", str(bare)], check=True)
    seed_gitops(tmp_path / "seed", helm, str(bare))
    config = tmp_path / "registry-sync.yaml"
    config.write_text(
        f"tracking_uri: http://127.0.0.1:{free_port()}\n"  # nothing listens there
        f"repo: {{url: {bare}, values_file: {VALUES_FILE}}}\n"
        f"models: [{{registered_model: {registry.name}, chart_model: ticks-1m}}]\n"
        "retries: 1\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "tickserve", "registry-sync", "--config", str(config), "--once"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert f"failed to reconcile: {registry.name} (MLflow unavailable" in result.stderr


@pytest.mark.parametrize(
    ("repo_override", "expected"),
    [
        ({"manifests_command": ["bash", "-c", "echo render broke >&2; exit 3"]}, "manifests refresh: bash -c"),
        ({"values_file": "charts/tickserve/ci/missing-values.yaml"}, "values file: charts/tickserve/ci/missing"),
    ],
    ids=["manifests-command-fails", "values-file-missing"],
)
def test_a_broken_repository_fails_the_pass_naming_the_cause_and_pushes_nothing(
    repo_override: dict, expected: str, registry: Models, sync_settings, helm: Path, tmp_path: Path
) -> None:
    bare = tmp_path / "gitops.git"
    subprocess.run(["git", "init", "--quiet", "--bare", "-b", "main", str(bare)], check=True)
    seed_gitops(tmp_path / "seed", helm, str(bare))
    registry.alias("challenger", registry.version())
    settings = sync_settings(None, registry, repo={"url": str(bare), **repo_override}, forge={"kind": "none"})

    (outcome,) = build(settings, Metrics()).run_pass()

    assert outcome.result == "failed" and expected in outcome.detail
    assert list(remote_branches(bare)) == ["main"]
