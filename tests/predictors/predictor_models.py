"""Small real models for the predictor tests, written the way the project writes them (MLflow layouts and plain
files), plus the framework's own prediction to compare the server against."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from tickserve import zoo

FEATURES = ["ret_1", "ret_5", "ret_15", "vol_5", "spread", "imbalance"]
WINDOW = (20, 8)  # timesteps x features of the sequence models


def feature_rows(rows: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, len(FEATURES)))


def train_booster(seed: int, rounds: int = 20, objective: str = "binary") -> lgb.Booster:
    frame = pd.DataFrame(feature_rows(400, seed), columns=FEATURES)
    label = (frame.ret_1 + 0.5 * frame.imbalance > 0).astype(int)
    if objective == "multiclass":
        label = label + (frame.spread > 1).astype(int)
    num_class = 3 if objective == "multiclass" else None
    return zoo.train_lightgbm(frame, label, seed=seed, rounds=rounds, objective=objective, num_class=num_class)


def save_lightgbm_mlflow(path: Path, booster: lgb.Booster, version: str | None = None) -> Path:
    return zoo.save_lightgbm_mlflow(path, booster, pd.DataFrame(feature_rows(5, 0), columns=FEATURES), version=version)


def window_module(seed: int = 0):
    """A small sequence classifier: [N, 20, 8] window -> [N, 2] probabilities."""
    import torch

    torch.manual_seed(seed)

    class WindowMLP(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Flatten(), torch.nn.Linear(WINDOW[0] * WINDOW[1], 16), torch.nn.ReLU(), torch.nn.Linear(16, 2)
            )

        def forward(self, window: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.net(window), dim=-1)

    return WindowMLP().eval()


def window_signature():
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *WINDOW), "window")]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 2), "probabilities")]),
    )


def save_onnx_mlflow(path: Path, module) -> Path:
    import mlflow.onnx
    import onnx
    import torch

    exported = path.parent / f"{path.name}.export.onnx"
    torch.onnx.export(
        module,
        (torch.zeros(2, *WINDOW),),
        str(exported),
        input_names=["window"],
        output_names=["probabilities"],
        dynamic_axes={"window": {0: "rows"}, "probabilities": {0: "rows"}},
        dynamo=False,
    )
    mlflow.onnx.save_model(onnx.load(str(exported)), str(path), signature=window_signature())
    return path


def save_torchscript_mlflow(path: Path, module) -> Path:
    import mlflow.pytorch
    import torch

    scripted = torch.jit.trace(module, torch.zeros(2, *WINDOW))
    mlflow.pytorch.save_model(scripted, str(path), signature=window_signature(), serialization_format="pickle")
    return path


def guarded_module():
    """Fails (a server error, not bad input) on any negative value, so a test can put one failing request into a
    batch of good ones. Answers x * 2 after some busy work, so that a large request keeps the model busy while
    small ones queue up behind it."""
    import torch

    class Guarded(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.eye(256) * 0.5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if bool((x < 0).any()):
                raise ValueError("negative input")
            busy = x.new_ones(x.shape[0], 256)
            for _ in range(40):
                busy = torch.tanh(busy @ self.weight)
            return x * 2.0 + 0.0 * busy.sum(dim=1, keepdim=True)

    return Guarded().eval()


def slow_module(iterations: int = 100):
    """Seconds of CPU per call on a few hundred rows: keeps the model saturated during health checks."""
    import torch

    class Slow(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.randn(256, 256) / 16.0)
            self.iterations = iterations

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for _ in range(self.iterations):
                x = torch.tanh(x @ self.weight)
            return x

    return Slow().eval()


def save_plain_torchscript(path: Path, module, example) -> Path:
    import torch

    path.mkdir(parents=True, exist_ok=True)
    torch.jit.save(
        torch.jit.script(module) if example is None else torch.jit.trace(module, example), str(path / "model.pt")
    )
    return path


def save_tabular_onnx_mlflow(path: Path) -> Path:
    """An ONNX classifier over the named features (one matrix input, like a converted tree model) saved with a
    column signature: requests send packed `features` or the columns, the session gets one [N, F] matrix."""
    import mlflow.onnx
    import onnx
    import torch
    from mlflow.models import infer_signature

    torch.manual_seed(3)
    module = torch.nn.Sequential(torch.nn.Linear(len(FEATURES), 2), torch.nn.Softmax(dim=-1)).eval()
    exported = path.parent / f"{path.name}.export.onnx"
    torch.onnx.export(
        module,
        (torch.zeros(2, len(FEATURES)),),
        str(exported),
        input_names=["float_input"],
        output_names=["probabilities"],
        dynamic_axes={"float_input": {0: "rows"}, "probabilities": {0: "rows"}},
        dynamo=False,
    )
    frame = pd.DataFrame(feature_rows(3, 0).astype(np.float32), columns=FEATURES)
    mlflow.onnx.save_model(onnx.load(str(exported)), str(path), signature=infer_signature(frame))
    return path
