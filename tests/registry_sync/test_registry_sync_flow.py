"""registry-sync against a real MLflow tracking server and a real Gitea: every registry change becomes exactly one
pull request whose commit edits the chart values and re-renders manifests/ (the drift check still holds)."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

import pytest
from gitops_support import VALUES_FILE, GitOps, Models, git

from tickserve.registry_sync.cli import build
from tickserve.registry_sync.controller import Controller
from tickserve.registry_sync.forges.base import Marker
from tickserve.registry_sync.metrics import Metrics
from tickserve.registry_sync.values import Canary, Slot, read_deployment

pytestmark = pytest.mark.integration

MANIFESTS = "manifests/prod/tickserve.yaml"


def controller_for(sync_settings, gitops: GitOps, registry: Models, **overrides) -> Controller:
    return build(sync_settings(gitops, registry, **overrides), Metrics())


def single_open_pr(gitops: GitOps) -> dict:
    open_prs = gitops.pulls("open")
    assert len(open_prs) == 1, [pr["title"] for pr in open_prs]
    return open_prs[0]


def branch_deployment(gitops: GitOps, pr: dict):
    return read_deployment(gitops.read(VALUES_FILE, f"origin/{pr['head']['ref']}"), "ticks-1m")


def assert_manifests_match_the_chart(gitops: GitOps, ref: str, helm: Path, tmp_path: Path) -> None:
    """The drift check: re-rendering the branch's chart reproduces the branch's manifests/ byte for byte."""
    worktree = tmp_path / f"render-{ref.replace('/', '-')}"
    git(gitops.checkout, "worktree", "add", "--force", "--detach", str(worktree), ref)
    subprocess.run(["bash", "hack/render-manifests.sh"], cwd=worktree, check=True, capture_output=True,
                   env={**os.environ, "HELM": str(helm)})  # fmt: skip
    assert git(worktree, "status", "--porcelain").stdout == ""


def test_a_challenger_alias_opens_exactly_one_pr_with_the_canary_and_rendered_manifests(
    gitops: GitOps, registry: Models, sync_settings, helm: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    version = registry.version()
    registry.alias("challenger", version)
    controller = controller_for(sync_settings, gitops, registry)

    with caplog.at_level(logging.DEBUG):
        outcomes = controller.run_pass() + controller.run_pass()

    assert [o.result for o in outcomes] == ["proposed", "adopted"]
    pr = single_open_pr(gitops)
    deployment = branch_deployment(gitops, pr)
    assert deployment.canary == Canary(version, registry.storage_uri(version), 10)
    assert deployment.stable == Slot("1", "s3://tickserve-models/ticks-1m/1")
    branch = pr["head"]["ref"]
    manifests = gitops.read(MANIFESTS, f"origin/{branch}")
    assert registry.storage_uri(version) in manifests and "canary" in manifests
    assert_manifests_match_the_chart(gitops, f"origin/{branch}", helm, tmp_path)
    marker = Marker.parse(pr["body"])
    assert marker is not None and marker.model == "ticks-1m" and branch.endswith(marker.change)
    assert f"canary version {version} at 10%" in pr["title"]
    assert "sharpe 1.7 (> 1.2)" in pr["body"] and f"/#/models/{registry.name}/versions/{version}" in pr["body"]
    assert registry.tags(version)["tickserve.pr"] == pr["html_url"]
    assert registry.tags(version)["tickserve.gate"] == "passed"
    assert (
        controller.metrics.value("tickserve_registry_sync_pull_requests_total", model="ticks-1m", action="opened") == 1
    )
    token = gitops.gitea.token
    assert token not in caplog.text and token not in pr["body"] and token not in pr["title"]
    assert token not in (controller.reconciler.repo.path / ".git" / "config").read_text()


def test_after_merging_the_canary_champion_promotes_it_and_a_further_pass_does_nothing(
    gitops: GitOps, registry: Models, sync_settings
) -> None:
    version = registry.version()
    registry.alias("challenger", version)
    controller = controller_for(sync_settings, gitops, registry)
    controller.run_pass()
    gitops.merge(single_open_pr(gitops)["number"])
    assert [o.result for o in controller.run_pass()] == ["in_sync"]

    registry.alias("champion", version)
    controller.run_pass()

    pr = single_open_pr(gitops)
    deployment = branch_deployment(gitops, pr)
    assert deployment.stable == Slot(version, registry.storage_uri(version)) and deployment.canary is None
    assert f"promote version {version} to stable" in pr["title"]
    gitops.merge(pr["number"])
    assert [o.result for o in controller.run_pass()] == ["in_sync"]
    assert gitops.pulls("open") == []


def test_removing_the_challenger_retires_the_canary(gitops: GitOps, registry: Models, sync_settings) -> None:
    version = registry.version()
    registry.alias("challenger", version)
    controller = controller_for(sync_settings, gitops, registry)
    controller.run_pass()
    gitops.merge(single_open_pr(gitops)["number"])

    registry.unalias("challenger")
    controller.run_pass()

    pr = single_open_pr(gitops)
    assert branch_deployment(gitops, pr).canary is None and f"retire canary {version}" in pr["title"]


def test_a_traffic_tag_steps_the_canary(gitops: GitOps, registry: Models, sync_settings) -> None:
    version = registry.version()
    registry.alias("challenger", version)
    controller = controller_for(sync_settings, gitops, registry)
    controller.run_pass()
    gitops.merge(single_open_pr(gitops)["number"])

    registry.tag(version, "tickserve.traffic", "25")
    controller.run_pass()

    pr = single_open_pr(gitops)
    assert branch_deployment(gitops, pr).canary == Canary(version, registry.storage_uri(version), 25)
    assert "traffic 10% -> 25%" in pr["title"]


def test_a_version_failing_a_gate_gets_its_reason_as_a_tag_and_no_pr(
    gitops: GitOps, registry: Models, sync_settings
) -> None:
    version = registry.version({"test_accuracy": 0.61, "sharpe": 0.91})
    registry.alias("challenger", version)
    controller = controller_for(sync_settings, gitops, registry)

    outcomes = controller.run_pass() + controller.run_pass()

    assert [o.result for o in outcomes] == ["in_sync", "in_sync"]
    assert gitops.pulls() == []
    assert registry.tags(version)["tickserve.gate"] == "sharpe 0.91 < 1.2"
    assert controller.metrics.value("tickserve_registry_sync_gate_refusals_total", model="ticks-1m") == 1


def test_a_rejected_pr_is_not_proposed_again_until_the_registry_changes(
    gitops: GitOps, registry: Models, sync_settings
) -> None:
    version = registry.version()
    registry.alias("challenger", version)
    controller = controller_for(sync_settings, gitops, registry)
    controller.run_pass()
    gitops.close(single_open_pr(gitops)["number"])

    assert [o.result for o in controller.run_pass() + controller.run_pass()] == ["rejected", "rejected"]
    assert gitops.pulls("open") == []

    newer = registry.version()
    registry.alias("challenger", newer)
    controller.run_pass()
    assert branch_deployment(gitops, single_open_pr(gitops)).canary.version == newer


def test_a_newer_state_supersedes_the_open_pr_with_a_comment_and_deletes_its_branch(
    gitops: GitOps, registry: Models, sync_settings
) -> None:
    first = registry.version()
    registry.alias("challenger", first)
    controller = controller_for(sync_settings, gitops, registry)
    controller.run_pass()
    old = single_open_pr(gitops)

    second = registry.version()
    registry.alias("challenger", second)
    controller.run_pass()

    new = single_open_pr(gitops)
    assert new["number"] != old["number"] and branch_deployment(gitops, new).canary.version == second
    assert any(new["html_url"] in comment and "Superseded" in comment for comment in gitops.comments(old["number"]))
    assert old["head"]["ref"] not in gitops.branches()
    assert (
        controller.metrics.value("tickserve_registry_sync_pull_requests_total", model="ticks-1m", action="superseded")
        == 1
    )


def test_a_change_registry_sync_superseded_itself_is_not_mistaken_for_a_rejection(
    gitops: GitOps, registry: Models, sync_settings
) -> None:
    version = registry.version()
    registry.alias("challenger", version)
    controller = controller_for(sync_settings, gitops, registry)
    controller.run_pass()
    gitops.merge(single_open_pr(gitops)["number"])
    registry.tag(version, "tickserve.traffic", "25")
    controller.run_pass()
    registry.tag(version, "tickserve.traffic", "50")
    controller.run_pass()  # supersedes the 25% PR

    registry.tag(version, "tickserve.traffic", "25")  # the registry is back where the superseded PR came from
    (outcome,) = controller.run_pass()

    assert outcome.result == "proposed"
    assert branch_deployment(gitops, single_open_pr(gitops)).canary.traffic_percent == 25
