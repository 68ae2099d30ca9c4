"""The GitOps repository through the git CLI: one working clone, branches cut from the freshly fetched base.

    repo = GitRepo.ensure(url, workdir, token=..., username="x-access-token")
    base_sha = repo.fetch_base("main")
    repo.branch_from("registry-sync/ticks-1m/abc123", base_sha)
    ... edit files in repo.path ...
    sha = repo.commit_all("message", author=("name", "mail"))
    repo.push("registry-sync/ticks-1m/abc123", expect=None)   # raises PushRejected

The token travels as an HTTP header through GIT_CONFIG_* environment variables: it is never part of a URL, a
command line (visible in `ps`), `.git/config` or an error message.
"""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path


class GitError(RuntimeError):
    """A git command failed; the message holds the command and git's stderr."""


class PushRejected(GitError):
    """The remote refused the push (the branch moved under us, or a hook refused it)."""


class CommandFailed(RuntimeError):
    """A repository command (the manifests refresh) failed in the clone; the message holds its output's tail."""


class GitRepo:
    def __init__(self, path: Path, *, token: str | None = None, username: str = "x-access-token") -> None:
        self.path = path
        self._env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
        if token:
            basic = base64.b64encode(f"{username}:{token}".encode()).decode()
            self._env.update(
                {
                    "GIT_CONFIG_COUNT": "1",
                    "GIT_CONFIG_KEY_0": "http.extraHeader",
                    "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}",
                }
            )
        self._secrets = [s for s in (token,) if s]

    @classmethod
    def ensure(cls, url: str, path: Path, *, token: str | None = None, username: str = "x-access-token") -> GitRepo:
        """A clone of `url` at `path`, reused when it already is one (the clone is a cache, never state)."""
        repo = cls(path, token=token, username=username)
        if not (path / ".git").is_dir():
            path.mkdir(parents=True, exist_ok=True)
            repo.git("init", "--quiet")
            repo.git("remote", "add", "origin", url)
        else:
            # A process killed mid-command leaves the lock behind; nothing else uses this clone.
            (path / ".git" / "index.lock").unlink(missing_ok=True)
            repo.git("remote", "set-url", "origin", url)
        return repo

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["git", *args], cwd=self.path, env=self._env, capture_output=True, text=True, timeout=300
        )
        if check and result.returncode != 0:
            raise GitError(f"git {' '.join(args)} failed ({result.returncode}): {self._redact(result.stderr.strip())}")
        return result

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def fetch_base(self, base: str) -> str:
        """Fetch `base` and return its commit."""
        self.git("fetch", "--quiet", "--prune", "origin", f"+refs/heads/{base}:refs/remotes/origin/{base}")
        return self.rev_parse(f"refs/remotes/origin/{base}")

    def rev_parse(self, ref: str) -> str:
        return self.git("rev-parse", "--verify", ref).stdout.strip()

    def remote_sha(self, branch: str) -> str | None:
        """The branch's commit on the remote right now, None when it does not exist."""
        out = self.git("ls-remote", "--heads", "origin", f"refs/heads/{branch}").stdout.split()
        return out[0] if out else None

    def show(self, commit: str, path: str) -> str:
        return self.git("show", f"{commit}:{path}").stdout

    def branch_from(self, branch: str, commit: str) -> None:
        """Check out `branch` at `commit` with a clean work tree (whatever a crashed pass left is discarded)."""
        self.git("checkout", "--quiet", "--force", "-B", branch, commit)
        self.git("clean", "--quiet", "-fdx")

    def commit_all(self, message: str, author: tuple[str, str]) -> str:
        name, email = author
        self.git("add", "--all")
        self.git(
            "-c", f"user.name={name}", "-c", f"user.email={email}", "commit", "--quiet", "--no-verify", "-m", message
        )
        return self.rev_parse("HEAD")

    def parent_of(self, commit: str) -> str | None:
        """The first parent of `commit`; None for a root commit."""
        result = self.git("rev-parse", "--verify", "--quiet", f"{commit}^", check=False)
        return result.stdout.strip() or None

    def push(self, branch: str, *, expect: str | None) -> None:
        """Push HEAD to `branch`, only if the remote branch is still at `expect` (None: must not exist)."""
        lease = f"--force-with-lease=refs/heads/{branch}:{expect or ''}"
        result = self.git("push", "--quiet", "--porcelain", lease, "origin", f"HEAD:refs/heads/{branch}", check=False)
        if result.returncode != 0:
            detail = self._redact((result.stdout + result.stderr).strip())
            if "rejected" in detail or "stale info" in detail:
                raise PushRejected(f"push of {branch} rejected: {detail}")
            raise GitError(f"push of {branch} failed ({result.returncode}): {detail}")

    def delete_remote_branch(self, branch: str) -> None:
        self.git("push", "--quiet", "origin", f":refs/heads/{branch}", check=False)

    def remote_branches(self, prefix: str) -> dict[str, str]:
        """Remote branches under `prefix` -> commit."""
        out = self.git("ls-remote", "--heads", "origin", f"refs/heads/{prefix}*").stdout
        branches = {}
        for line in out.splitlines():
            sha, ref = line.split()
            branches[ref.removeprefix("refs/heads/")] = sha
        return branches

    def run(self, command: list[str], env: dict[str, str] | None = None) -> None:
        """Run a repository command (the manifests refresh) in the clone."""
        result = subprocess.run(
            command, cwd=self.path, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=600
        )
        if result.returncode != 0:
            tail = (result.stdout + result.stderr).strip()[-2000:]
            raise CommandFailed(f"{' '.join(command)} failed ({result.returncode}) in the clone: {tail}")
