"""Real control-path servers for tests, as plain Python (no pytest): a headless Gitea built by
hack/build-gitea.sh and an MLflow tracking server with webhooks enabled. The registry-sync tests use them through
tests/registry_sync/conftest.py; the rollback tests can reuse them the same way.

    with start_gitea(workdir) as gitea:            # admin user + API token made with `gitea admin`
        url = gitea.create_repo("gitops")          # empty repository, clone URL without credentials
    with start_mlflow(workdir) as mlflow_server:   # sqlite backend, local artifacts
        client = MlflowClient(mlflow_server.url)
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tickserve.processes import ServerProcess, free_port

GITEA_VERSION = "v1.26.0"
GITEA_ADMIN = "tickserve"


def tools_cache() -> Path:
    return Path(
        os.environ.get("TOOLS_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tickserve"
    )


def gitea_dir(cache: Path | None = None) -> Path:
    """Where hack/build-gitea.sh leaves the binary and STATIC_ROOT_PATH (templates/, options/, public/)."""
    return (cache or tools_cache()) / f"gitea-{GITEA_VERSION}"


@dataclass
class Gitea:
    url: str
    token: str
    admin: str
    password: str
    process: ServerProcess

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.url}/api/v1", headers={"Authorization": f"token {self.token}"}, timeout=30.0
        )

    def create_repo(self, name: str) -> str:
        """An empty repository owned by the admin; returns its HTTP clone URL (no credentials in it)."""
        with self.api() as api:
            response = api.post("/user/repos", json={"name": name, "default_branch": "main", "auto_init": False})
            response.raise_for_status()
            return response.json()["clone_url"]

    def wait_until_pushed(self, name: str, branch: str = "main", timeout: float = 30.0) -> None:
        """Gitea marks a repository non-empty in its post-receive hook, after `git push` returns; until then its
        pulls API answers 404. Wait for that."""
        deadline = time.monotonic() + timeout
        with self.api() as api:
            while time.monotonic() < deadline:
                repo = api.get(f"/repos/{self.admin}/{name}")
                pushed = repo.status_code == 200 and not repo.json().get("empty", True)
                if pushed and api.get(f"/repos/{self.admin}/{name}/branches/{branch}").status_code == 200:
                    return
                time.sleep(0.1)
        raise TimeoutError(f"gitea: {name}@{branch} still empty {timeout}s after the push")

    def authenticated_url(self, clone_url: str) -> str:
        """The clone URL with the admin's credentials, for the test's own git commands (never the product's)."""
        return clone_url.replace("://", f"://{self.admin}:{self.password}@", 1)


def _gitea_ini(workdir: Path, static_root: Path, port: int) -> str:
    return f"""APP_NAME = tickserve-test
RUN_MODE = prod
RUN_USER = {os.environ.get("USER") or subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()}
WORK_PATH = {workdir}
I_AM_BEING_UNSAFE_RUNNING_AS_ROOT = true

[server]
PROTOCOL = http
HTTP_ADDR = 127.0.0.1
HTTP_PORT = {port}
ROOT_URL = http://127.0.0.1:{port}/
LOCAL_ROOT_URL = http://127.0.0.1:{port}/
DISABLE_SSH = true
START_SSH_SERVER = false
OFFLINE_MODE = true
LFS_START_SERVER = false
STATIC_ROOT_PATH = {static_root}
APP_DATA_PATH = {workdir}/data

[database]
DB_TYPE = sqlite3
PATH = {workdir}/data/gitea.db
SQLITE_JOURNAL_MODE = WAL

[repository]
ROOT = {workdir}/repositories
DEFAULT_BRANCH = main

[security]
INSTALL_LOCK = true
SECRET_KEY = {secrets.token_hex(32)}
INTERNAL_TOKEN = {secrets.token_hex(52)}

[oauth2]
JWT_SECRET = {secrets.token_urlsafe(32)[:43]}

[service]
DISABLE_REGISTRATION = true

[mailer]
ENABLED = false

[indexer]
ISSUE_INDEXER_TYPE = db
REPO_INDEXER_ENABLED = false

[cron]
ENABLED = false

[log]
MODE = console
LEVEL = Warn
ROOT_PATH = {workdir}/log
"""


@contextmanager
def start_gitea(workdir: Path, cache: Path | None = None) -> Iterator[Gitea]:
    """A headless Gitea on a free loopback port with an admin and an access token (all scopes)."""
    home = gitea_dir(cache)
    binary = home / "gitea"
    if not binary.exists():
        raise FileNotFoundError(f"{binary} missing: run `make install` (hack/build-gitea.sh)")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    ini = workdir / "app.ini"
    ini.write_text(_gitea_ini(workdir, home, port))
    env = {
        **os.environ,
        "GITEA_WORK_DIR": str(workdir),
        "GITEA_I_AM_BEING_UNSAFE_RUNNING_AS_ROOT": "true",
        "HOME": str(workdir),
    }

    def gitea(*args: str) -> str:
        result = subprocess.run(
            [str(binary), *args, "--config", str(ini)],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"gitea {' '.join(args)} failed ({result.returncode}): {result.stderr}{result.stdout}")
        return result.stdout

    gitea("migrate")
    password = secrets.token_urlsafe(16)
    out = gitea(
        "admin", "user", "create", "--admin", "--username", GITEA_ADMIN, "--password", password,
        "--email", f"{GITEA_ADMIN}@example.invalid", "--must-change-password=false", "--access-token",
    )  # fmt: skip
    token = out.strip().rsplit(" ", 1)[-1]
    process = ServerProcess(
        "gitea",
        [str(binary), "web", "--config", str(ini)],
        cwd=workdir,
        env={"GITEA_WORK_DIR": str(workdir), "GITEA_I_AM_BEING_UNSAFE_RUNNING_AS_ROOT": "true", "HOME": str(workdir)},
        ready_url=f"http://127.0.0.1:{port}/api/v1/version",
        timeout=90,
    )
    with process:
        yield Gitea(f"http://127.0.0.1:{port}", token, GITEA_ADMIN, password, process)


@dataclass
class MlflowServer:
    url: str
    workdir: Path
    process: ServerProcess
    port: int


def mlflow_server_process(workdir: Path, port: int) -> ServerProcess:
    """`mlflow server` (sqlite backend, local artifacts) with webhooks allowed to http loopback receivers.
    Restartable on the same port and store, for the outage tests."""
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
        "--default-artifact-root", (workdir / "artifacts").as_uri(),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    env = {
        # webhooks to http://127.0.0.1 receivers: allowed for tests only (MLflow refuses both by default)
        "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
        "MLFLOW_WEBHOOK_CACHE_TTL": "1",
        "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": (workdir / "fernet.key").read_text().strip(),
    }
    return ServerProcess(
        "mlflow-server", command, cwd=workdir, env=env, ready_url=f"http://127.0.0.1:{port}/health", timeout=120
    )


@contextmanager
def start_mlflow(workdir: Path) -> Iterator[MlflowServer]:
    from cryptography.fernet import Fernet

    workdir.mkdir(parents=True, exist_ok=True)
    key = workdir / "fernet.key"
    if not key.exists():
        key.write_text(Fernet.generate_key().decode())
    port = free_port()
    process = mlflow_server_process(workdir, port)
    with process:
        yield MlflowServer(f"http://127.0.0.1:{port}", workdir, process, port)
