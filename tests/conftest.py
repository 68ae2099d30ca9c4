"""Shared fixtures: real servers started as processes once per session, whichever test folder asks first. The
tier policy (`require`) lives in tiers.py; the launchers in tickserve.launch and forge_servers.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from forge_servers import Gitea, MlflowServer, gitea_dir, start_gitea, start_mlflow
from tiers import require, require_binary

from tickserve.launch import RedisServer


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free loopback port, no persistence, for the whole session."""
    binary = require_binary("redis-server")
    with RedisServer(binary, cwd=tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real `mlflow server` (sqlite, local artifacts, webhooks to loopback allowed) for the whole session."""
    with start_mlflow(tmp_path_factory.mktemp("mlflow")) as server:
        yield server


@pytest.fixture(scope="session")
def gitea(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gitea]:
    """A real headless Gitea (built by `make gitea`) with an admin and API token, for the whole session."""
    require(
        (gitea_dir() / "gitea").exists(), f"no Gitea at {gitea_dir()}; `make install` builds it (hack/build-gitea.sh)"
    )
    with start_gitea(tmp_path_factory.mktemp("gitea")) as server:
        yield server
