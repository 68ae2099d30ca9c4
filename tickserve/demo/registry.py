"""An embedded MLflow registry (sqlite and local artifacts) for running tickserve on one machine.

Models are logged with a column signature in feature order, registered under a name, and promoted by the
`production` alias (MLflow 3's replacement for stages; the deprecated `Production` stage is set as well for
tools that still read stages). Serving downloads `models:/<name>@production`, the same MLmodel directory
KServe's storage initializer places at /mnt/models in a cluster.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PRODUCTION_ALIAS = "production"


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    version: str


class LocalRegistry:
    """MLflow tracking and registry in `root` (mlflow.db and artifacts/), created on first use."""

    def __init__(self, root: Path, experiment: str = "tickserve") -> None:
        import mlflow

        root.mkdir(parents=True, exist_ok=True)
        self.tracking_uri = f"sqlite:///{root.resolve() / 'mlflow.db'}"
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        existing = mlflow.get_experiment_by_name(experiment)
        self.experiment_id = (
            existing.experiment_id
            if existing
            else mlflow.create_experiment(experiment, artifact_location=(root.resolve() / "artifacts").as_uri())
        )
        self._mlflow = mlflow
        self._client = mlflow.MlflowClient(self.tracking_uri, self.tracking_uri)

    def log_lightgbm(
        self, name: str, booster: object, example: pd.DataFrame, metrics: dict[str, float]
    ) -> RegisteredModel:
        return self._log(self._mlflow.lightgbm, name, booster, example, metrics)

    def log_onnx(self, name: str, onnx_path: Path, example: pd.DataFrame, metrics: dict[str, float]) -> RegisteredModel:
        import onnx

        # the ONNX graph takes FP32 features, so its signature says so
        return self._log(self._mlflow.onnx, name, onnx.load(str(onnx_path)), example.astype(np.float32), metrics)

    def _log(
        self, flavor: Any, name: str, model: object, example: pd.DataFrame, metrics: dict[str, float]
    ) -> RegisteredModel:
        """Log `model` with a column signature in feature order and [p_down, p_up] outputs, and register it."""
        mlflow = self._mlflow
        signature = mlflow.models.infer_signature(example, np.zeros((len(example), 2), np.float32))
        with mlflow.start_run(experiment_id=self.experiment_id, run_name=name):
            mlflow.log_metrics(metrics)
            info = flavor.log_model(model, name="model", signature=signature, registered_model_name=name)
        return RegisteredModel(name, str(info.registered_model_version))

    def promote(self, model: RegisteredModel) -> None:
        """Point the production alias at `model` (and set the legacy stage)."""
        self._client.set_registered_model_alias(model.name, PRODUCTION_ALIAS, model.version)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            self._client.transition_model_version_stage(model.name, model.version, "Production")

    def name_alias(self, model: RegisteredModel, alias: str) -> None:
        """Point `alias` at `model`, e.g. `challenger`: the version registry-sync would canary."""
        self._client.set_registered_model_alias(model.name, alias, model.version)

    def production(self, name: str) -> RegisteredModel:
        version = self._client.get_model_version_by_alias(name, PRODUCTION_ALIAS)
        return RegisteredModel(name, str(version.version))

    def download(self, name: str, destination: Path, alias: str = PRODUCTION_ALIAS) -> Path:
        """The MLmodel directory of the version holding `alias`, copied to `destination` (what /mnt/models holds)."""
        destination.mkdir(parents=True, exist_ok=True)
        path = self._mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}@{alias}", dst_path=str(destination), tracking_uri=self.tracking_uri
        )
        return Path(path)
