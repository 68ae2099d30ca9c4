"""The GitLab provider against a FAKE GitLab REST API v4 (GitLab cannot run here): merge requests found by marker,
"already exists" (409) adopted, notes, close with the marker retired, branch deletion. The fake answers with the
fields GitLab documents for these endpoints and nothing more; the real-forge behaviour is tested on Gitea."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import pytest

from tickserve.registry_sync.forges.base import Marker
from tickserve.registry_sync.forges.gitlab import GitLabForge

PROJECT = "/api/v4/projects/platform%2Fgitops"


class FakeGitLab:
    def __init__(self) -> None:
        self.mrs: list[dict[str, Any]] = []
        self.notes: dict[int, list[str]] = {}
        self.branches = {"main", "registry-sync/ticks-1m/abc"}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return None

            def _send(self, status: int, payload: Any = None) -> None:
                body = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _route(self, method: str) -> None:
                raw_path = self.path.split("?", 1)[0]
                query = parse_qs(urlparse(self.path).query)
                data = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if self.headers.get("PRIVATE-TOKEN") != "glpat-fake" or not raw_path.startswith(PROJECT):
                    self._send(401, {"message": "401 Unauthorized"})
                    return
                path = raw_path.removeprefix(PROJECT)
                if path == "/merge_requests" and method == "GET":
                    state = query.get("state", ["all"])[0]
                    self._send(200, [mr for mr in fake.mrs if state in ("all", mr["state"])])
                elif path == "/merge_requests" and method == "POST":
                    if any(mr["source_branch"] == data["source_branch"] and mr["state"] == "opened" for mr in fake.mrs):
                        self._send(
                            409, {"message": ["Another open merge request already exists for this source branch"]}
                        )
                        return
                    iid = len(fake.mrs) + 1
                    mr = {"iid": iid, "state": "opened", "source_branch": data["source_branch"],
                          "target_branch": data["target_branch"], "title": data["title"],
                          "description": data["description"], "web_url": f"https://gitlab.example/mr/{iid}"}  # fmt: skip
                    fake.mrs.append(mr)
                    self._send(201, mr)
                elif (match := re.fullmatch(r"/merge_requests/(\d+)/notes", path)) and method == "POST":
                    fake.notes.setdefault(int(match.group(1)), []).append(data["body"])
                    self._send(201, {"id": 1})
                elif (match := re.fullmatch(r"/merge_requests/(\d+)", path)) and method == "PUT":
                    mr = fake.mrs[int(match.group(1)) - 1]
                    if data.get("state_event") == "close":
                        mr["state"] = "closed"
                    mr["description"] = data.get("description", mr["description"])
                    self._send(200, mr)
                elif (match := re.fullmatch(r"/repository/branches/(.+)", path)) and method == "DELETE":
                    branch = unquote(match.group(1))
                    if branch in fake.branches:
                        fake.branches.discard(branch)
                        self._send(204)
                    else:
                        self._send(404, {"message": "404 Branch Not Found"})
                else:
                    self._send(404, {"message": "404 Not Found"})

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

            def do_PUT(self) -> None:
                self._route("PUT")

            def do_DELETE(self) -> None:
                self._route("DELETE")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def gitlab() -> Iterator[FakeGitLab]:
    fake = FakeGitLab()
    threading.Thread(target=fake.httpd.serve_forever, daemon=True).start()
    yield fake
    fake.httpd.shutdown()
    fake.httpd.server_close()


def test_the_gitlab_provider_opens_adopts_finds_comments_closes_and_deletes(gitlab: FakeGitLab) -> None:
    forge = GitLabForge(gitlab.url, "platform/gitops", "glpat-fake")
    branch, marker = "registry-sync/ticks-1m/abc", Marker("ticks-1m", "abc", "fff")

    opened, adopted = forge.open_pull_request(branch, "main", "registry-sync: ticks-1m", f"x\n{marker.render()}")
    again, adopted_again = forge.open_pull_request(branch, "main", "registry-sync: ticks-1m", f"x\n{marker.render()}")

    assert (adopted, adopted_again) == (False, True) and opened.number == again.number == 1
    (found,) = forge.pull_requests("ticks-1m")
    assert found.marker == marker and found.state == "open"
    forge.comment(found, "Superseded by !2")
    forge.close(found)
    forge.delete_branch(branch)
    forge.delete_branch(branch)
    (closed,) = forge.pull_requests("ticks-1m")
    assert closed.state == "closed" and not closed.rejected and closed.marker is not None and closed.marker.retired
    assert gitlab.notes[1] == ["Superseded by !2"] and branch not in gitlab.branches
