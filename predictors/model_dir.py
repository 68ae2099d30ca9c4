"""Find the model inside a directory (MLflow `MLmodel` layout or a plain file) and what framework it needs.

KServe's storage initializer puts the model at /mnt/models; registries write MLflow layouts, people copy plain
files. Detection goes by the MLmodel flavors first, then by file extension. A native runtime serves the flavors it
can serve exactly (LightGBM, ONNX, TorchScript, torch.export programs); any other MLflow model with a
`python_function` flavor is served by the generic `mlflow.pyfunc` runtime. The artifact says which and why
(`reason`, logged at load and shown by the metadata endpoint).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from tickserve.predictors.signature import Signature, from_mlflow


class Framework(StrEnum):
    LIGHTGBM = "lightgbm"
    ONNX = "onnx"
    TORCHSCRIPT = "torchscript"
    TORCH_EXPORT = "torch_export"
    PYFUNC = "pyfunc"


EXTENSIONS: dict[str, Framework] = {
    ".txt": Framework.LIGHTGBM,
    ".lgb": Framework.LIGHTGBM,
    ".onnx": Framework.ONNX,
    ".pt": Framework.TORCHSCRIPT,
    ".pth": Framework.TORCHSCRIPT,
    ".pt2": Framework.TORCH_EXPORT,
}
LIGHTGBM_BOOSTER = "lightgbm.basic.Booster"
LIGHTGBM_SKLEARN = ("lightgbm.sklearn.LGBMClassifier", "lightgbm.sklearn.LGBMRegressor")


class ModelDirError(ValueError):
    """The directory holds no model this server can serve; the message says what was found."""


@dataclass(frozen=True)
class ModelArtifact:
    """What to load: `model_file` for a native runtime, `mlflow_dir` (the MLmodel's directory) for pyfunc;
    `flavor` is the MLmodel's configuration of the flavor served; `reason` says why this runtime was chosen."""

    framework: Framework
    model_file: Path
    signature: Signature | None
    version: str | None
    reason: str = ""
    mlflow_dir: Path | None = None
    flavor: dict[str, Any] = field(default_factory=dict)

    def with_runtime(self, framework: Framework, reason: str) -> ModelArtifact:
        return replace(self, framework=framework, reason=reason)


def locate(model_dir: str | Path) -> ModelArtifact:
    """Resolve `model_dir` (a directory or a single model file) to the file to load and its metadata."""
    path = Path(model_dir)
    if path.is_file():
        return ModelArtifact(_framework_of_file(path), path, None, None, f"model file {path.name}")
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
    return ModelArtifact(
        _framework_of_file(candidates[0]), candidates[0], None, None, f"model file {candidates[0].name}"
    )


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
    framework, model_file, flavor, reason = _native_flavor(path, flavors)
    if framework is None:
        if "python_function" not in flavors:
            raise ModelDirError(
                f"{path}: MLmodel flavors {sorted(flavors)} include none of lightgbm, onnx, pytorch, python_function"
            )
        framework, model_file, flavor = Framework.PYFUNC, path / "MLmodel", flavors["python_function"]
    if not model_file.exists():
        raise ModelDirError(f"{path}: the MLmodel names {model_file.name}, which is missing")
    signature = from_mlflow(mlmodel.signature)
    return ModelArtifact(framework, model_file, signature, _mlmodel_version(mlmodel), reason, path, flavor)


def _native_flavor(path: Path, flavors: dict[str, Any]) -> tuple[Framework | None, Path, dict[str, Any], str]:
    """The native runtime for the MLmodel's flavors, or None (and why not) for the pyfunc fallback."""
    if "lightgbm" in flavors:
        flavor = flavors["lightgbm"]
        model_class = flavor.get("model_class", LIGHTGBM_BOOSTER)
        if model_class == LIGHTGBM_BOOSTER:
            return Framework.LIGHTGBM, path / flavor["data"], flavor, "lightgbm flavor, native Booster"
        if model_class in LIGHTGBM_SKLEARN:
            return Framework.LIGHTGBM, path / flavor["data"], flavor, f"lightgbm flavor, {model_class} via its booster"
        return None, path, flavor, f"lightgbm flavor with model class {model_class}, which has no native runtime"
    if "onnx" in flavors:
        return Framework.ONNX, path / flavors["onnx"]["data"], flavors["onnx"], "onnx flavor"
    if "pytorch" in flavors:
        flavor = flavors["pytorch"]
        data = path / flavor["model_data"]
        if (data / "model.pt2").is_file():
            return Framework.TORCH_EXPORT, data / "model.pt2", flavor, "pytorch flavor, torch.export program (pt2)"
        model_file = _single_file(data)
        if _is_torchscript(model_file):
            return Framework.TORCHSCRIPT, model_file, flavor, "pytorch flavor, TorchScript module"
        return None, model_file, flavor, f"pytorch flavor, {model_file.name} is a pickled nn.Module, not TorchScript"
    return None, path, {}, f"flavors {', '.join(sorted(flavors))} have no native runtime"


def _is_torchscript(model_file: Path) -> bool:
    """torch.jit.save writes a zip with the module's code; torch.save of an nn.Module writes only pickles."""
    try:
        with zipfile.ZipFile(model_file) as archive:
            return any("/code/" in name for name in archive.namelist())
    except zipfile.BadZipFile:
        return False


def _single_file(data: Path) -> Path:
    """mlflow.pytorch writes `data/model.pth` next to bookkeeping files."""
    if data.is_file():
        return data
    for name in ("model.pth", "model.pt"):
        if (data / name).is_file():
            return data / name
    raise ModelDirError(f"{data} holds no model.pth / model.pt / model.pt2")


def _mlmodel_version(mlmodel: object) -> str | None:
    """Registered version if the registry wrote one, else the training run id."""
    extra = getattr(mlmodel, "metadata", None) or {}
    for key in ("registered_model_version", "model_version", "version"):
        if extra.get(key) is not None:
            return str(extra[key])
    run_id = getattr(mlmodel, "run_id", None)
    return str(run_id) if run_id else None
