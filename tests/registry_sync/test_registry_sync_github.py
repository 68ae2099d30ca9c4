"""The GitHub provider (PyGithub) against a FAKE GitHub API (tests/registry_sync/github_fake.py): GitHub cannot run
here. It checks the provider's side of the contract the Gitea tests check for real: find by marker, adopt on
"already exists", comment, close, delete the branch."""

from __future__ import annotations

import pytest
from github_fake import FakeGitHub

from tickserve.registry_sync.forges.base import ForgeUnavailable, Marker
from tickserve.registry_sync.forges.github import GitHubForge

MARKER = Marker("ticks-1m", "abc123abc123", "f1f1f1f1f1f1")


def test_the_github_provider_opens_adopts_finds_comments_closes_and_deletes() -> None:
    with FakeGitHub() as fake:
        forge = GitHubForge("tickserve/gitops", "fake-github-token", api_url=fake.url)
        branch = "registry-sync/ticks-1m/abc123abc123"
        fake.branches.add(branch)
        body = f"canary 7\n\n{MARKER.render()}"

        opened, adopted = forge.open_pull_request(branch, "main", "registry-sync: ticks-1m", body)
        again, adopted_again = forge.open_pull_request(branch, "main", "registry-sync: ticks-1m", body)

        assert not adopted and adopted_again and again.number == opened.number == 1
        assert len(fake.pulls) == 1
        (found,) = forge.pull_requests("ticks-1m")
        assert found.marker == MARKER and found.state == "open" and found.branch == branch
        assert forge.pull_requests("ticks-15m") == []

        forge.comment(found, "Superseded by #2")
        forge.close(found)
        forge.delete_branch(branch)
        forge.delete_branch(branch)  # already gone: not an error

        (closed,) = forge.pull_requests("ticks-1m")
        assert closed.state == "closed" and closed.marker is not None and closed.marker.retired
        assert not closed.rejected, "a PR registry-sync closed itself is not a human's rejection"
        assert fake.comments[1] == ["Superseded by #2"] and branch not in fake.branches
        fake.pulls.append({**fake.pulls[0], "number": 2, "state": "closed", "body": body})  # a human closed this one
        assert [pr.rejected for pr in forge.pull_requests("ticks-1m")] == [False, True]


def test_a_bad_token_is_reported_as_forge_unavailable_with_the_status() -> None:
    with FakeGitHub() as fake:
        forge = GitHubForge("tickserve/gitops", "wrong", api_url=fake.url)
        with pytest.raises(ForgeUnavailable, match="401"):
            forge.pull_requests("ticks-1m")
