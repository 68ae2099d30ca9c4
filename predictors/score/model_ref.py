"""A model named on the command line: a local model directory (or file), or a registered MLflow version.

`models:/name/7` and `models:/name@alias` are resolved to a version number through the registry first, so the
output and any tags name the exact version scored or optimised, never a moving alias; its artifacts are then
downloaded into `workdir`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REGISTRY_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w-]+))$")


class ModelRefError(ValueError):
    """The reference names no model that can be fetched; the message says which and why."""


@dataclass(frozen=True)
class ModelRef:
    path: Path
    name: str
    version: str | None
    registered: bool


def resolve(reference: str, workdir: Path, tracking_uri: str | None = None) -> ModelRef:
    """A local path as is, or a registry version downloaded into `workdir`."""
    if not reference.startswith("models:/"):
        path = Path(reference)
        if not path.exists():
            raise ModelRefError(f"model {reference} does not exist (give a model directory or models:/name/version)")
        return ModelRef(path, path.stem if path.is_file() else path.resolve().name, None, False)
    match = REGISTRY_URI.match(reference)
    if match is None:
        raise ModelRefError(f"{reference!r} is not models:/<name>/<version> or models:/<name>@<alias>")
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    name = match["name"]
    try:
        if match["alias"]:
            version = client.get_model_version_by_alias(name, match["alias"]).version
        else:
            version = client.get_model_version(name, match["version"]).version
        workdir.mkdir(parents=True, exist_ok=True)
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}/{version}", dst_path=str(workdir), tracking_uri=tracking_uri
        )
    except MlflowException as error:
        raise ModelRefError(f"{reference}: {error.message}") from error
    return ModelRef(Path(local), name, str(version), True)
