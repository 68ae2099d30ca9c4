"""Shared fixtures: real servers started as processes. The tier policy (`require`) lives in tiers.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from servers import ServerProcess, free_port
from tiers import require_binary


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free loopback port, no persistence, for the whole session."""
    binary = require_binary("redis-server")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    with ServerProcess("redis-server", command, cwd=workdir, tcp_port=port):
        yield f"redis://127.0.0.1:{port}/0"
