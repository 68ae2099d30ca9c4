"""Fixtures of the predictor tests: model dirs built once per session, and real predictor servers
(`tickserve predictor`, from `tickserve.launch`) started as processes on free ports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
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

from tickserve import launch

StartPredictor = Callable[..., launch.Server]


@pytest.fixture(scope="session")
def start_predictor() -> StartPredictor:
    """start_predictor(model_dir, name="model", env={...}, args=[...]) -> a predictor Server: use it in `with`.
    Its `model_name` is the v2 model name, `http` / `grpc` the addresses tritonclient takes."""

    def start(
        model_dir: Path, name: str = "model", env: dict[str, str] | None = None, args: tuple[str, ...] = ()
    ) -> launch.Server:
        return launch.predictor(name, model_dir, env=env, args=args)

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
def lightgbm_server(start_predictor: StartPredictor, lightgbm_dir: Path) -> Iterator[launch.Server]:
    with start_predictor(
        lightgbm_dir, name="signal", env={"TICKSERVE_TRACK": "canary", "TICKSERVE_MAX_REQUEST_ROWS": "256"}
    ) as predictor:
        yield predictor
