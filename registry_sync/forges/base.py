"""What registry-sync needs from a forge, and the PR marker that makes its PRs findable.

Every PR registry-sync opens carries a marker line in its body:

    <!-- tickserve-registry-sync {"model": "ticks-1m", "change": "3f2a…", "fingerprint": "9c1d…"} -->

`model` is the chart model, `change` the content hash of the desired state (also the branch suffix),
`fingerprint` the registry state the change was planned from (see planner.fingerprint). When registry-sync closes a
PR itself (superseded, or no longer wanted) it adds `"retired": true`, so that only a human's close counts as a
rejection. The marker, not the title or the branch, identifies a PR as ours, so humans may retitle PRs freely.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal, Protocol

MARKER_PREFIX = "<!-- tickserve-registry-sync "
_MARKER = re.compile(r"<!-- tickserve-registry-sync (\{.*?\}) -->")


class ForgeUnavailable(RuntimeError):
    """The forge API could not be reached or answered with an unexpected error."""


@dataclass(frozen=True)
class Marker:
    model: str
    change: str
    fingerprint: str
    # set when registry-sync itself closed the PR (superseded or obsolete): not a human's rejection
    retired: bool = False

    def render(self) -> str:
        data: dict[str, object] = {"model": self.model, "change": self.change, "fingerprint": self.fingerprint}
        if self.retired:
            data["retired"] = True
        return f"{MARKER_PREFIX}{json.dumps(data, sort_keys=True)} -->"

    @classmethod
    def parse(cls, body: str | None) -> Marker | None:
        match = _MARKER.search(body or "")
        if not match:
            return None
        try:
            data = json.loads(match.group(1))
            return cls(
                str(data["model"]), str(data["change"]), str(data.get("fingerprint", "")), bool(data.get("retired"))
            )
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class PullRequest:
    number: int
    url: str
    branch: str
    state: Literal["open", "closed"]
    merged: bool
    marker: Marker | None
    body: str = ""

    @property
    def rejected(self) -> bool:
        """Closed without merging by a human (registry-sync marks the PRs it closes itself as retired)."""
        return self.state == "closed" and not self.merged and self.marker is not None and not self.marker.retired

    def retired_body(self) -> str:
        """The body with its marker flagged as retired, sent with the close so both happen in one request."""
        if self.marker is None:
            return self.body
        retired = Marker(self.marker.model, self.marker.change, self.marker.fingerprint, retired=True)
        return _MARKER.sub(lambda _: retired.render(), self.body, count=1)


class Forge(Protocol):
    """A forge as registry-sync uses it. Implementations: gitea, github, gitlab, none."""

    name: str

    def pull_requests(self, model: str) -> list[PullRequest]:
        """Every PR (open and closed) whose marker names `model`."""
        ...

    def open_pull_request(self, branch: str, base: str, title: str, body: str) -> tuple[PullRequest, bool]:
        """Open a PR from `branch`; when the forge says one already exists for it, adopt that one.
        Returns the PR and whether it was adopted."""
        ...

    def comment(self, pr: PullRequest, text: str) -> None: ...

    def close(self, pr: PullRequest) -> None:
        """Close without merging, flagging the marker as retired (`pr.retired_body()`)."""
        ...

    def delete_branch(self, branch: str) -> None: ...


def ours(prs: list[PullRequest], model: str) -> list[PullRequest]:
    return [pr for pr in prs if pr.marker is not None and pr.marker.model == model]
