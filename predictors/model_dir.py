"""Find the model inside a directory (MLflow `MLmodel` layout or a plain file) and what framework it needs.

KServe's storage initializer puts the model at /mnt/models; registries write MLflow layouts, people copy plain
files. Detection goes by the MLmodel flavors first, then by file extension.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from tickserve.predictors.signature import Signature, from_mlflow


class Framework(StrEnum):
    LIGHTGBM = "lightgbm"
    ONNX = "onnx"
    TORCHSCRIPT = "torchscript"


EXTENSIONS: dict[str, Framework] = {
    ".txt": Framework.LIGHTGBM,
    ".lgb": Framework.LIGHTGBM,
    ".onnx": Framework.ONNX,
    ".pt": Framework.TORCHSCRIPT,
    ".pth": Framework.TORCHSCRIPT,
}


class ModelDirError(ValueError):
    """The directory holds no model this server can serve; the message says what was found."""


@dataclass(frozen=True)
class ModelArtifact:
    framework: Framework
    model_file: Path
    signature: Signature | None
    version: str | None


def locate(model_dir: str | Path) -> ModelArtifact:
    """Resolve `model_dir` (a directory or a single model file) to the file to load and its metadata."""
    path = Path(model_dir)
    if path.is_file():
        return ModelArtifact(_framework_of_file(path), path, None, None)
    if not path.is_dir():
        raise ModelDirError(f"model dir {path} does not exist")
    if (path / "MLmodel").is_file():
        return _from_mlmodel(path)
    candidates = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in EXTENSIONS)
    if len(candidates) != 1:
        found = ", ".join(p.name for p in candidates) or "no model file"
        raise ModelDirError(
            f"{path} has no MLmodel file and needs exactly one model file ({', '.join(EXTENSIONS)}); found {found}"
        )
    return ModelArtifact(_framework_of_file(candidates[0]), candidates[0], None, None)


def _framework_of_file(path: Path) -> Framework:
    try:
        return EXTENSIONS[path.suffix]
    except KeyError:
        raise ModelDirError(
            f"cannot tell the framework of {path.name}: expected one of {', '.join(EXTENSIONS)}"
        ) from None


def _from_mlmodel(path: Path) -> ModelArtifact:
    from mlflow.models import Model  # heavy import, only needed for MLflow layouts

    mlmodel = Model.load(str(path / "MLmodel"))
    flavors = mlmodel.flavors
    if "lightgbm" in flavors:
        flavor = flavors["lightgbm"]
        if flavor.get("model_class", "lightgbm.basic.Booster") != "lightgbm.basic.Booster":
            raise ModelDirError(
                f"{path}: LightGBM model class {flavor['model_class']} is pickled; save the native Booster "
                "(model.booster_) with mlflow.lightgbm.save_model"
            )
        framework, model_file = Framework.LIGHTGBM, path / flavor["data"]
    elif "onnx" in flavors:
        framework, model_file = Framework.ONNX, path / flavors["onnx"]["data"]
    elif "pytorch" in flavors:
        framework, model_file = Framework.TORCHSCRIPT, _single_file(path / flavors["pytorch"]["model_data"])
    else:
        raise ModelDirError(f"{path}: MLmodel flavors {sorted(flavors)} include none of lightgbm, onnx, pytorch")
    if not model_file.is_file():
        raise ModelDirError(f"{path}: the MLmodel names {model_file.name}, which is missing")
    return ModelArtifact(framework, model_file, from_mlflow(mlmodel.signature), _mlmodel_version(mlmodel))


def _single_file(data: Path) -> Path:
    """mlflow.pytorch writes `data/model.pth` next to bookkeeping files."""
    if data.is_file():
        return data
    for name in ("model.pth", "model.pt"):
        if (data / name).is_file():
            return data / name
    raise ModelDirError(f"{data} holds no model.pth / model.pt")


def _mlmodel_version(mlmodel: object) -> str | None:
    """Registered version if the registry wrote one, else the training run id."""
    extra = getattr(mlmodel, "metadata", None) or {}
    for key in ("registered_model_version", "model_version", "version"):
        if extra.get(key) is not None:
            return str(extra[key])
    run_id = getattr(mlmodel, "run_id", None)
    return str(run_id) if run_id else None
