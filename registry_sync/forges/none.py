"""Forge `none`: registry-sync pushes the content-addressed branch and opens nothing (a local bare repository in
the demo, or a forge whose PRs another tool makes). The branches stand in for PRs: each remote branch
`<prefix>/<model>/<change>` is an open "PR", superseding deletes it, and exactly-once holds through the name."""

from __future__ import annotations

from tickserve.registry_sync.forges.base import Marker, PullRequest
from tickserve.registry_sync.git import GitRepo


class NoForge:
    name = "none"

    def __init__(self, repo: GitRepo, branch_prefix: str) -> None:
        self.repo = repo
        self.branch_prefix = branch_prefix

    def _as_pr(self, model: str, branch: str) -> PullRequest:
        change = branch.rsplit("/", 1)[-1]
        return PullRequest(0, "", branch, "open", False, Marker(model, change, ""))

    def pull_requests(self, model: str) -> list[PullRequest]:
        prefix = f"{self.branch_prefix}/{model}/"
        return [self._as_pr(model, branch) for branch in sorted(self.repo.remote_branches(prefix))]

    def open_pull_request(self, branch: str, base: str, title: str, body: str) -> tuple[PullRequest, bool]:
        model = branch.removeprefix(f"{self.branch_prefix}/").rsplit("/", 1)[0]
        return self._as_pr(model, branch), False

    def comment(self, pr: PullRequest, text: str) -> None:
        return None

    def close(self, pr: PullRequest) -> None:
        return None

    def delete_branch(self, branch: str) -> None:
        self.repo.delete_remote_branch(branch)
