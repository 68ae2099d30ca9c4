"""Gitea (and Forgejo) through its REST API v1 (`/api/v1`), with an access token."""

from __future__ import annotations

from typing import Any

import httpx

from tickserve.registry_sync.forges.base import ForgeUnavailable, Marker, PullRequest, ours


class GiteaForge:
    name = "gitea"

    def __init__(self, api_url: str, repository: str, token: str | None, timeout: float = 10.0) -> None:
        self.repository = repository
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"token {token}"
        self.http = httpx.Client(base_url=f"{api_url.rstrip('/')}/api/v1", headers=headers, timeout=timeout)

    def _call(self, method: str, path: str, ok: tuple[int, ...] = (200, 201, 204), **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, f"/repos/{self.repository}{path}", **kwargs)
        except httpx.HTTPError as error:
            raise ForgeUnavailable(f"gitea {method} {path}: {type(error).__name__}: {error}") from error
        if response.status_code not in ok:
            raise ForgeUnavailable(f"gitea {method} {path}: HTTP {response.status_code}: {response.text[:300]}")
        return response

    @staticmethod
    def _pr(data: dict[str, Any]) -> PullRequest:
        return PullRequest(
            number=int(data["number"]),
            url=str(data.get("html_url") or ""),
            branch=str(data["head"]["ref"]),
            state="open" if data["state"] == "open" else "closed",
            merged=bool(data.get("merged")),
            marker=Marker.parse(data.get("body")),
            body=str(data.get("body") or ""),
        )

    def _all(self, state: str) -> list[PullRequest]:
        prs: list[PullRequest] = []
        page = 1
        while True:
            batch = self._call("GET", "/pulls", params={"state": state, "page": page, "limit": 50}).json()
            prs += [self._pr(item) for item in batch]
            if len(batch) < 50:
                return prs
            page += 1

    def pull_requests(self, model: str) -> list[PullRequest]:
        return ours(self._all("all"), model)

    def open_pull_request(self, branch: str, base: str, title: str, body: str) -> tuple[PullRequest, bool]:
        response = self._call(
            "POST", "/pulls", ok=(201, 409, 422), json={"head": branch, "base": base, "title": title, "body": body}
        )
        if response.status_code == 201:
            return self._pr(response.json()), False
        # "pull request already exists for these targets": adopt it.
        for pr in self._all("open"):
            if pr.branch == branch:
                return pr, True
        raise ForgeUnavailable(f"gitea refused the PR for {branch} and none is open: {response.text[:300]}")

    def comment(self, pr: PullRequest, text: str) -> None:
        self._call("POST", f"/issues/{pr.number}/comments", json={"body": text})

    def close(self, pr: PullRequest) -> None:
        self._call("PATCH", f"/pulls/{pr.number}", json={"state": "closed", "body": pr.retired_body()})

    def delete_branch(self, branch: str) -> None:
        self._call("DELETE", f"/branches/{branch}", ok=(204, 404))
