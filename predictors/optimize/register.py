"""Register the chosen variant as a new version of a registered model, carrying its evidence.

The variant is logged with `mlflow.onnx` (so `tickserve predictor` serves it with the ONNX runtime) in a run
whose metrics are the parity and benchmark figures; the new model version gets the same figures as tags plus
`tickserve.optimized_from` (the source version) and `tickserve.variant`, which is what registry-sync and a
reviewer see when the version is promoted to canary like any other.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TAG_PREFIX = "tickserve."


class RegisterError(RuntimeError):
    """MLflow refused the registration; the message carries its reason."""


def tensor_signature(input_name: str, sample: np.ndarray, output_names: tuple[str, ...], output: np.ndarray):
    """An MLflow tensor signature whose names are the ONNX graph's, so the ONNX runtime maps inputs by name."""
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *sample.shape[1:]), input_name)]),
        outputs=Schema([TensorSpec(np.dtype(output.dtype), (-1, *output.shape[1:]), output_names[0])]),
    )


def register(
    model_file: Path,
    name: str,
    signature: object,
    figures: dict[str, float],
    tags: dict[str, str],
    tracking_uri: str | None,
) -> str:
    """Log `model_file` and register it under `name`; returns the new version number."""
    import mlflow
    import mlflow.onnx
    import onnx
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient()
    try:
        with mlflow.start_run(run_name=f"optimize {name} {tags.get(TAG_PREFIX + 'variant', '')}".strip()):
            mlflow.log_metrics(figures)
            mlflow.set_tags(tags)
            info = mlflow.onnx.log_model(
                onnx.load(str(model_file)),
                name="model",
                signature=signature,
                registered_model_name=name,
                pip_requirements=["onnxruntime"],
            )
        version = str(info.registered_model_version)
        for key, value in {**tags, **{TAG_PREFIX + k: f"{v:.6g}" for k, v in figures.items()}}.items():
            client.set_model_version_tag(name, version, key, value)
    except MlflowException as error:
        raise RegisterError(f"registering {model_file.name} as {name}: {error.message}") from error
    return version
