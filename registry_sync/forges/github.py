"""GitHub (and GitHub Enterprise, through `api_url`) via PyGithub, with a token that may write pull requests and
contents of the GitOps repository."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from github import Auth, Github, GithubException

from tickserve.registry_sync.forges.base import ForgeUnavailable, Marker, PullRequest, ours

T = TypeVar("T")
DEFAULT_API = "https://api.github.com"


class GitHubForge:
    name = "github"

    def __init__(self, repository: str, token: str | None, api_url: str | None = None, timeout: float = 10.0) -> None:
        self.repository = repository
        self.owner = repository.split("/", 1)[0]
        auth = Auth.Token(token) if token else None
        self.github = Github(auth=auth, base_url=(api_url or DEFAULT_API).rstrip("/"), timeout=int(timeout), retry=None)
        self._repo: Any = None

    def _do(self, what: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except GithubException as error:
            raise ForgeUnavailable(f"github {what}: HTTP {error.status}: {error.data}") from error
        except OSError as error:
            raise ForgeUnavailable(f"github {what}: {type(error).__name__}: {error}") from error

    def _repository(self) -> Any:
        if self._repo is None:
            self._repo = self._do("get repository", lambda: self.github.get_repo(self.repository))
        return self._repo

    @staticmethod
    def _pr(pull: Any) -> PullRequest:
        return PullRequest(
            number=pull.number,
            url=pull.html_url,
            branch=pull.head.ref,
            state="open" if pull.state == "open" else "closed",
            merged=bool(pull.merged_at),
            marker=Marker.parse(pull.body),
            body=pull.body or "",
        )

    def pull_requests(self, model: str) -> list[PullRequest]:
        pulls = self._do("list pulls", lambda: [self._pr(p) for p in self._repository().get_pulls(state="all")])
        return ours(pulls, model)

    def open_pull_request(self, branch: str, base: str, title: str, body: str) -> tuple[PullRequest, bool]:
        repo = self._repository()
        try:
            return self._pr(repo.create_pull(base=base, head=branch, title=title, body=body)), False
        except GithubException as error:
            if error.status != 422 or "already exists" not in str(error.data):
                raise ForgeUnavailable(f"github create pull: HTTP {error.status}: {error.data}") from error
        pulls = self._do("find pull", lambda: list(repo.get_pulls(state="open", head=f"{self.owner}:{branch}")))
        if not pulls:
            raise ForgeUnavailable(f"github says a PR for {branch} exists but none is open")
        return self._pr(pulls[0]), True

    def comment(self, pr: PullRequest, text: str) -> None:
        self._do("comment", lambda: self._repository().get_issue(pr.number).create_comment(text))

    def close(self, pr: PullRequest) -> None:
        self._do("close", lambda: self._repository().get_pull(pr.number).edit(state="closed", body=pr.retired_body()))

    def delete_branch(self, branch: str) -> None:
        try:
            self._repository().get_git_ref(f"heads/{branch}").delete()
        except GithubException as error:
            if error.status not in (404, 422):
                raise ForgeUnavailable(f"github delete branch {branch}: HTTP {error.status}: {error.data}") from error
