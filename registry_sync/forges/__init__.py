"""Forges registry-sync opens PRs on: `make_forge(settings, repo)` picks the one `forge.kind` names."""

from __future__ import annotations

from tickserve.registry_sync.forges.base import Forge, ForgeUnavailable, Marker, PullRequest
from tickserve.registry_sync.git import GitRepo
from tickserve.registry_sync.settings import RegistrySyncSettings

__all__ = ["Forge", "ForgeUnavailable", "Marker", "PullRequest", "make_forge"]


def make_forge(settings: RegistrySyncSettings, repo: GitRepo) -> Forge:
    forge = settings.forge
    token = forge.resolved_token()
    timeout = settings.request_timeout_seconds
    if forge.kind == "gitea":
        from tickserve.registry_sync.forges.gitea import GiteaForge

        assert forge.api_url and forge.repository  # checked by ForgeSettings
        return GiteaForge(forge.api_url, forge.repository, token, timeout)
    if forge.kind == "github":
        from tickserve.registry_sync.forges.github import GitHubForge

        assert forge.repository
        return GitHubForge(forge.repository, token, forge.api_url, timeout)
    if forge.kind == "gitlab":
        from tickserve.registry_sync.forges.gitlab import GitLabForge

        assert forge.api_url and forge.repository
        return GitLabForge(forge.api_url, forge.repository, token, timeout)
    from tickserve.registry_sync.forges.none import NoForge

    return NoForge(repo, settings.repo.branch_prefix)
