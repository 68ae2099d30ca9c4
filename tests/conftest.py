"""Shared test plumbing: the tier policy and real servers started as processes.

Tier policy: a test that needs something this machine lacks (a binary, envtest assets) calls
`require(...)`. On a developer's machine it skips with a loud reason; in CI (`CI` set) it fails, so a tier
that cannot run is never silently green.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from servers import ServerProcess, free_port, in_ci


def require(condition: bool, reason: str) -> None:
    """Skip (developer machine) or fail (CI) when `condition` is false."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"required in CI: {reason}", pytrace=False)
    pytest.skip(f"SKIPPED LOUDLY: {reason}")


def require_binary(name: str) -> str:
    path = shutil.which(name)
    require(path is not None, f"`{name}` is not on PATH; `make install` installs it")
    return path  # type: ignore[return-value]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free loopback port, no persistence, for the whole session."""
    binary = require_binary("redis-server")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    with ServerProcess("redis-server", command, cwd=workdir, tcp_port=port):
        yield f"redis://127.0.0.1:{port}/0"
