"""GitLab merge requests through its REST API v4, with a project access token (`PRIVATE-TOKEN`).

GitLab cannot run on the test machines: the provider is tested against a fake of these endpoints whose shapes follow
GitLab's API documentation (tests/registry_sync/test_registry_sync_gitlab.py). git pushes use HTTP user `oauth2` with the token (set `repo.git_username: oauth2`)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from tickserve.registry_sync.forges.base import ForgeUnavailable, Marker, PullRequest, ours


class GitLabForge:
    name = "gitlab"

    def __init__(self, api_url: str, repository: str, token: str | None, timeout: float = 10.0) -> None:
        headers = {"PRIVATE-TOKEN": token} if token else {}
        project = quote(repository, safe="")
        self.http = httpx.Client(
            base_url=f"{api_url.rstrip('/')}/api/v4/projects/{project}", headers=headers, timeout=timeout
        )

    def _call(self, method: str, path: str, ok: tuple[int, ...] = (200, 201, 204), **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise ForgeUnavailable(f"gitlab {method} {path}: {type(error).__name__}: {error}") from error
        if response.status_code not in ok:
            raise ForgeUnavailable(f"gitlab {method} {path}: HTTP {response.status_code}: {response.text[:300]}")
        return response

    @staticmethod
    def _pr(data: dict[str, Any]) -> PullRequest:
        return PullRequest(
            number=int(data["iid"]),
            url=str(data.get("web_url") or ""),
            branch=str(data["source_branch"]),
            state="open" if data["state"] == "opened" else "closed",
            merged=data["state"] == "merged",
            marker=Marker.parse(data.get("description")),
            body=str(data.get("description") or ""),
        )

    def _all(self, state: str) -> list[PullRequest]:
        found: list[PullRequest] = []
        page = 1
        while True:
            batch = self._call("GET", "/merge_requests", params={"state": state, "per_page": 100, "page": page}).json()
            found += [self._pr(item) for item in batch]
            if len(batch) < 100:
                return found
            page += 1

    def pull_requests(self, model: str) -> list[PullRequest]:
        return ours(self._all("all"), model)

    def open_pull_request(self, branch: str, base: str, title: str, body: str) -> tuple[PullRequest, bool]:
        payload = {"source_branch": branch, "target_branch": base, "title": title, "description": body}
        response = self._call("POST", "/merge_requests", ok=(201, 409), json=payload)
        if response.status_code == 201:
            return self._pr(response.json()), False
        for pr in self._all("opened"):
            if pr.branch == branch:
                return pr, True
        raise ForgeUnavailable(f"gitlab refused the MR for {branch} and none is open: {response.text[:300]}")

    def comment(self, pr: PullRequest, text: str) -> None:
        self._call("POST", f"/merge_requests/{pr.number}/notes", json={"body": text})

    def close(self, pr: PullRequest) -> None:
        self._call(
            "PUT", f"/merge_requests/{pr.number}", json={"state_event": "close", "description": pr.retired_body()}
        )

    def delete_branch(self, branch: str) -> None:
        self._call("DELETE", f"/repository/branches/{quote(branch, safe='')}", ok=(204, 404))
