"""Crash safety: `tickserve registry-sync --once` is SIGKILLed at each step of a pass (the documented test hook
TICKSERVE_REGISTRY_SYNC_CRASH_AT, see controller.STEPS) and then run again; the end state is always exactly one
open PR for the newest desired state, with the older PR superseded. Also: a base that moves during a pass, and a
push refused by its lease, are rebuilt on the new base."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from gitops_support import VALUES_FILE, GitOps, Models, git
from ruamel.yaml import YAML

from tickserve.registry_sync.cli import build
from tickserve.registry_sync.controller import CRASH_ENV, STEPS, Reconciler
from tickserve.registry_sync.metrics import Metrics
from tickserve.registry_sync.values import read_deployment

pytestmark = pytest.mark.integration


def run_once(config: Path, token: str, cwd: Path, crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TICKSERVE_REGISTRY_SYNC_FORGE__TOKEN": token}
    env.pop(CRASH_ENV, None)
    if crash_at:
        env[CRASH_ENV] = crash_at
    return subprocess.run(
        [sys.executable, "-m", "tickserve", "registry-sync", "--config", str(config), "--once"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def write_config(settings, path: Path) -> Path:
    data = settings.model_dump(mode="json", exclude_none=True)
    data["forge"].pop("token", None)
    YAML(typ="safe").dump(data, path)
    return path


@pytest.mark.parametrize("step", STEPS)
def test_a_kill_at_any_step_and_a_restart_end_with_exactly_one_pr(
    step: str, gitops: GitOps, registry: Models, sync_settings, tmp_path: Path
) -> None:
    older = registry.version()
    registry.alias("challenger", older)
    settings = sync_settings(gitops, registry)
    build(settings, Metrics()).run_pass()
    (superseded,) = gitops.pulls("open")
    newer = registry.version()
    registry.alias("challenger", newer)
    config = write_config(settings, tmp_path / "registry-sync.yaml")

    crashed = run_once(config, gitops.gitea.token, tmp_path, crash_at=step)
    assert crashed.returncode == -9, crashed.stderr[-2000:]
    recovered = run_once(config, gitops.gitea.token, tmp_path)
    assert recovered.returncode == 0, recovered.stderr[-2000:]
    again = run_once(config, gitops.gitea.token, tmp_path)
    assert again.returncode == 0 and "adopted" in again.stdout

    open_prs = gitops.pulls("open")
    assert len(open_prs) == 1
    (current,) = open_prs
    assert (
        read_deployment(gitops.read(VALUES_FILE, f"origin/{current['head']['ref']}"), "ticks-1m").canary.version
        == newer
    )
    assert len(gitops.pulls("all")) == 2  # the superseded one and the current one, never a duplicate
    assert gitops.branches() == sorted(["main", current["head"]["ref"]])
    assert superseded["head"]["ref"] != current["head"]["ref"]
    assert registry.tags(newer)["tickserve.pr"] == current["html_url"]


def test_a_base_that_moves_during_a_pass_is_rebuilt_on_the_new_base(
    gitops: GitOps, registry: Models, sync_settings
) -> None:
    version = registry.version()
    registry.alias("challenger", version)
    moved: list[str] = []

    def move_main_once(step: str) -> None:
        if step == "before-push" and not moved:
            values = gitops.read(VALUES_FILE).replace("minReplicas: 2", "minReplicas: 3")
            moved.append(gitops.commit_to_main(VALUES_FILE, values, "someone scales the predictor"))

    controller = build(sync_settings(gitops, registry), Metrics())
    reconciler: Reconciler = controller.reconciler
    reconciler.hook = move_main_once

    (outcome,) = controller.run_pass()

    assert outcome.result == "proposed" and moved
    (pr,) = gitops.pulls("open")
    branch = f"origin/{pr['head']['ref']}"
    values = gitops.read(VALUES_FILE, branch)
    assert git(gitops.checkout, "rev-parse", f"{branch}^").stdout.strip() == moved[0]
    assert "minReplicas: 3" in values and read_deployment(values, "ticks-1m").canary.version == version
    assert "minReplicas: 3" in gitops.read("manifests/prod/tickserve.yaml", branch)


def test_a_push_refused_by_its_lease_is_rebuilt_and_still_one_pr(
    gitops: GitOps, registry: Models, sync_settings
) -> None:
    """Another writer (a second replica, say) pushes the same branch between our build and our push."""
    version = registry.version()
    registry.alias("challenger", version)
    raced: list[str] = []
    controller = build(sync_settings(gitops, registry), Metrics())
    reconciler: Reconciler = controller.reconciler

    def race(step: str) -> None:
        if step == "before-push" and not raced:
            branch = reconciler.repo.git("rev-parse", "--abbrev-ref", "HEAD").stdout.strip()
            git(gitops.checkout, "push", "--quiet", "--force", "origin", f"origin/main:refs/heads/{branch}")
            raced.append(branch)

    reconciler.hook = race
    (outcome,) = controller.run_pass()

    assert outcome.result == "proposed" and raced
    (pr,) = gitops.pulls("open")
    assert pr["head"]["ref"] == raced[0]
    assert read_deployment(gitops.read(VALUES_FILE, f"origin/{raced[0]}"), "ticks-1m").canary.version == version
