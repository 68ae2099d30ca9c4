"""A FAKE of the GitHub REST API, because GitHub cannot run here: just the endpoints registry-sync's PyGithub
provider calls, answering with the shapes GitHub documents and returns (fields trimmed to those PyGithub reads),
including its 422 "A pull request already exists" refusal. State lives in memory. Used only by
test_registry_sync_github.py; the same behaviour is tested against a real forge (Gitea) elsewhere."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


class FakeGitHub:
    def __init__(self, owner: str = "tickserve", repo: str = "gitops") -> None:
        self.owner, self.repo = owner, repo
        self.pulls: list[dict[str, Any]] = []
        self.comments: dict[int, list[str]] = {}
        self.branches: set[str] = {"main"}
        self.requests: list[str] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.repo_url = f"{self.url}/repos/{owner}/{repo}"

    def __enter__(self) -> FakeGitHub:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _pull_json(self, pull: dict[str, Any]) -> dict[str, Any]:
        number = pull["number"]
        return {
            "url": f"{self.repo_url}/pulls/{number}",
            "html_url": f"https://github.com/{self.owner}/{self.repo}/pull/{number}",
            "issue_url": f"{self.repo_url}/issues/{number}",
            "number": number,
            "state": pull["state"],
            "title": pull["title"],
            "body": pull["body"],
            "head": {"ref": pull["head"], "label": f"{self.owner}:{pull['head']}"},
            "base": {"ref": pull["base"], "label": f"{self.owner}:{pull['base']}"},
            "merged": pull["merged"],
            "merged_at": "2026-01-01T00:00:00Z" if pull["merged"] else None,
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self
        prefix = f"/repos/{fake.owner}/{fake.repo}"

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                return None

            def _send(self, status: int, payload: Any = None) -> None:
                body = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _json(self) -> dict[str, Any]:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length) or b"{}")

            def _route(self, method: str) -> None:
                parsed = urlparse(self.path)
                path, query = parsed.path, parse_qs(parsed.query)
                fake.requests.append(f"{method} {path}")
                if self.headers.get("Authorization") != "token fake-github-token":
                    self._send(401, {"message": "Bad credentials"})
                    return
                if method == "GET" and path == prefix:
                    self._send(200, {"url": fake.repo_url, "full_name": f"{fake.owner}/{fake.repo}", "name": fake.repo,
                                     "owner": {"login": fake.owner}})  # fmt: skip
                elif method == "GET" and path == f"{prefix}/pulls":
                    state = query.get("state", ["open"])[0]
                    head = query.get("head", [None])[0]
                    found = [
                        fake._pull_json(p)
                        for p in fake.pulls
                        if state in ("all", p["state"]) and (head is None or head == f"{fake.owner}:{p['head']}")
                    ]
                    self._send(200, found)
                elif method == "POST" and path == f"{prefix}/pulls":
                    data = self._json()
                    if any(p["head"] == data["head"] and p["state"] == "open" for p in fake.pulls):
                        message = f"A pull request already exists for {fake.owner}:{data['head']}."
                        self._send(422, {"message": "Validation Failed", "errors": [
                            {"resource": "PullRequest", "code": "custom", "message": message}]})  # fmt: skip
                        return
                    pull = {"number": len(fake.pulls) + 1, "state": "open", "merged": False, "title": data["title"],
                            "body": data["body"], "head": data["head"], "base": data["base"]}  # fmt: skip
                    fake.pulls.append(pull)
                    self._send(201, fake._pull_json(pull))
                elif match := re.fullmatch(rf"{prefix}/pulls/(\d+)", path):
                    pull = fake.pulls[int(match.group(1)) - 1]
                    if method == "PATCH":
                        pull.update({k: v for k, v in self._json().items() if k in ("state", "title", "body")})
                    self._send(200, fake._pull_json(pull))
                elif method == "GET" and (match := re.fullmatch(rf"{prefix}/issues/(\d+)", path)):
                    number = int(match.group(1))
                    self._send(200, {"url": f"{fake.repo_url}/issues/{number}", "number": number})
                elif method == "POST" and (match := re.fullmatch(rf"{prefix}/issues/(\d+)/comments", path)):
                    fake.comments.setdefault(int(match.group(1)), []).append(self._json()["body"])
                    self._send(201, {"id": 1, "body": "ok"})
                elif match := re.fullmatch(rf"{prefix}/git/refs?/heads/(.+)", path):
                    branch = match.group(1)
                    if branch not in fake.branches:
                        self._send(404, {"message": "Not Found"})
                    elif method == "DELETE":
                        fake.branches.discard(branch)
                        self._send(204)
                    else:
                        self._send(200, {"ref": f"refs/heads/{branch}", "url": f"{fake.repo_url}/git/refs/heads/{branch}",
                                         "object": {"sha": "0" * 40, "type": "commit"}})  # fmt: skip
                else:
                    self._send(404, {"message": "Not Found"})

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

            def do_PATCH(self) -> None:
                self._route("PATCH")

            def do_DELETE(self) -> None:
                self._route("DELETE")

        return Handler
