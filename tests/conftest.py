"""Shared fixtures: real servers started as processes. The tier policy (`require`) lives in tiers.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tiers import require_binary

from tickserve.launch import RedisServer


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free loopback port, no persistence, for the whole session."""
    binary = require_binary("redis-server")
    with RedisServer(binary, cwd=tmp_path_factory.mktemp("redis")) as server:
        yield server.url
