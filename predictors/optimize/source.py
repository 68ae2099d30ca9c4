"""The model to optimise, as the serving stack finds it: PyTorch (an nn.Module or TorchScript) or ONNX, with one
input, its MLflow signature and input example when the model has them.

The model file is found by `tickserve.predictors.model_dir.locate`, the predictors' own detection, so
`optimize` accepts exactly the directories `tickserve predictor` serves. A PyTorch file is tried as TorchScript
first (what the TorchScript runtime serves), then as a pickled nn.Module (mlflow.pytorch's default format).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from tickserve.predictors.model_dir import Framework, ModelDirError, locate
from tickserve.predictors.signature import Signature


class UnsupportedModel(ValueError):
    """Not a model `optimize` can turn into ONNX variants; the message says what it is and what is accepted."""


@dataclass(frozen=True)
class Source:
    kind: str  # "pytorch" or "onnx"
    model_file: Path
    model_dir: Path
    signature: Signature | None
    mlflow_signature: object | None
    input_name: str
    output_names: tuple[str, ...]
    example: np.ndarray | None


def load_torch(model_file: Path):
    """A TorchScript module or a pickled nn.Module from `model_file`, in eval mode."""
    import torch

    try:
        return torch.jit.load(str(model_file), map_location="cpu").eval()
    except RuntimeError:
        pass
    try:
        module = torch.load(str(model_file), map_location="cpu", weights_only=False)
    except Exception as error:
        raise UnsupportedModel(f"{model_file} is neither TorchScript nor a pickled torch module: {error}") from error
    if not isinstance(module, torch.nn.Module):
        raise UnsupportedModel(f"{model_file} holds a {type(module).__name__}, not a torch nn.Module")
    return module.eval()


def inspect(model_path: Path) -> Source:
    """Describe the model at `model_path`; UnsupportedModel for other frameworks or several inputs."""
    try:
        artifact = locate(model_path)
    except ModelDirError as error:
        raise UnsupportedModel(str(error)) from error
    model_dir = model_path if model_path.is_dir() else model_path.parent
    mlflow_signature, example, pickled_module = _mlmodel_extras(model_dir)
    if artifact.framework == Framework.PYFUNC and pickled_module is not None:
        artifact = replace(artifact, framework=Framework.TORCHSCRIPT, model_file=pickled_module)
    if artifact.framework not in (Framework.TORCHSCRIPT, Framework.ONNX):
        raise UnsupportedModel(
            f"{model_path} is a {artifact.framework} model ({artifact.reason}); optimize takes PyTorch (an nn.Module "
            "or TorchScript) or ONNX"
        )
    signature = artifact.signature
    if artifact.framework == Framework.ONNX:
        import onnx

        graph = onnx.load(str(artifact.model_file), load_external_data=False).graph
        initialisers = {init.name for init in graph.initializer}
        inputs = [node.name for node in graph.input if node.name not in initialisers]
        outputs = tuple(node.name for node in graph.output)
        kind = "onnx"
    else:
        # a tabular model takes the packed [N, F] feature matrix
        inputs = ["input"] if signature is None else ["features"] if signature.tabular else signature.input_names
        outputs = tuple(spec.name for spec in signature.outputs) if signature and signature.outputs else ("output",)
        kind = "pytorch"
    if len(inputs) != 1:
        raise UnsupportedModel(f"{model_path} takes {len(inputs)} inputs ({inputs}); optimize handles one-input models")
    return Source(kind, artifact.model_file, model_dir, signature, mlflow_signature, inputs[0], outputs, example)


def _mlmodel_extras(model_dir: Path) -> tuple[object | None, np.ndarray | None, Path | None]:
    """From an MLflow model directory: its signature, its input example (as one FP32 array) and, for the pytorch
    flavor, the model file (the predictors serve a pickled nn.Module through pyfunc; optimize loads it itself)."""
    if not (model_dir / "MLmodel").is_file():
        return None, None, None
    from mlflow.models import Model

    mlmodel = Model.load(str(model_dir / "MLmodel"))
    example = mlmodel.load_input_example(str(model_dir)) if mlmodel.saved_input_example_info else None
    if isinstance(example, dict):
        example = next(iter(example.values())) if len(example) == 1 else None
    if example is not None and hasattr(example, "to_numpy"):
        example = example.to_numpy()
    pickled = None
    if "pytorch" in mlmodel.flavors:
        data = model_dir / mlmodel.flavors["pytorch"]["model_data"]
        pickled = next((data / name for name in ("model.pth", "model.pt") if (data / name).is_file()), None)
    return mlmodel.signature, None if example is None else np.asarray(example, dtype=np.float32), pickled
