"""Fixtures of the predictor tests: model dirs built once per session, and real predictor servers
(`python -m tickserve.predictors`) started as processes on free ports."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from predictor_models import (
    guarded_module,
    save_lightgbm_mlflow,
    save_onnx_mlflow,
    save_plain_torchscript,
    save_torchscript_mlflow,
    slow_module,
    train_booster,
    window_module,
)
from servers import ServerProcess, free_port


@dataclass
class Predictor:
    name: str
    http: str  # host:port, as tritonclient wants it
    grpc: str
    process: ServerProcess

    @property
    def url(self) -> str:
        return f"http://{self.http}"


StartPredictor = Callable[..., contextlib.AbstractContextManager[Predictor]]


@pytest.fixture(scope="session")
def start_predictor() -> StartPredictor:
    """start_predictor(model_dir, name="model", env={...}, args=[...]) -> context manager of a running Predictor."""

    @contextlib.contextmanager
    def start(model_dir: Path, name: str = "model", env: dict[str, str] | None = None, args: tuple[str, ...] = ()):
        http_port, grpc_port = free_port(), free_port()
        command = [
            sys.executable, "-m", "tickserve.predictors", "--model_name", name, "--model_dir", str(model_dir),
            "--http_port", str(http_port), "--grpc_port", str(grpc_port), *args,
        ]  # fmt: skip
        ready = f"http://127.0.0.1:{http_port}/v2/models/{name}/ready"
        with ServerProcess(f"predictor-{name}", command, ready_url=ready, tcp_port=grpc_port, env=env) as process:
            yield Predictor(name, f"127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}", process)

    return start


@pytest.fixture(scope="session")
def models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("predictor-models")


@pytest.fixture(scope="session")
def booster():
    return train_booster(seed=1)


@pytest.fixture(scope="session")
def lightgbm_dir(models_root: Path, booster) -> Path:
    return save_lightgbm_mlflow(models_root / "lightgbm", booster, version="3")


@pytest.fixture(scope="session")
def window_torch():
    return window_module(seed=0)


@pytest.fixture(scope="session")
def onnx_dir(models_root: Path, window_torch) -> Path:
    return save_onnx_mlflow(models_root / "onnx", window_torch)


@pytest.fixture(scope="session")
def torchscript_dir(models_root: Path, window_torch) -> Path:
    return save_torchscript_mlflow(models_root / "torchscript", window_torch)


@pytest.fixture(scope="session")
def guarded_dir(models_root: Path) -> Path:
    return save_plain_torchscript(models_root / "guarded", guarded_module(), example=None)


@pytest.fixture(scope="session")
def slow_dir(models_root: Path) -> Path:
    return save_plain_torchscript(models_root / "slow", slow_module(), example=None)


@pytest.fixture(scope="module")
def lightgbm_server(start_predictor: StartPredictor, lightgbm_dir: Path) -> Iterator[Predictor]:
    with start_predictor(
        lightgbm_dir, name="signal", env={"TICKSERVE_TRACK": "canary", "TICKSERVE_MAX_REQUEST_ROWS": "256"}
    ) as predictor:
        yield predictor
