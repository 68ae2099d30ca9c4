"""The model files the servers load: a LightGBM booster on named features and two PyTorch networks (an LSTM and
a dense MLP) over a feature window.

Everything is trained on synthetic data with fixed seeds, built once per output directory and reused, so
repeated `make bench` runs measure the same models. The LightGBM booster is written once by
`mlflow.lightgbm.save_model` (what tickserve loads) and MLServer gets a byte-identical copy of that text
model file, so both servers evaluate exactly the same trees.
"""

from __future__ import annotations

import filecmp
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

N_FEATURES = 40
FEATURE_NAMES = [f"feature_{index:02d}" for index in range(N_FEATURES)]
WINDOW_SHAPE = (60, 110)
WINDOW_INPUT = "window"
WINDOW_OUTPUT = "probabilities"
SEED = 7


@dataclass(frozen=True)
class BenchModels:
    """Paths of the model directories, one per server and format."""

    lightgbm_mlflow: Path
    lightgbm_text: Path
    windows: dict[str, WindowModel]  # by network name: "lstm", "mlp"


@dataclass(frozen=True)
class WindowModel:
    """One window network exported twice, from the same weights."""

    onnx: Path
    torchscript: Path


def synthetic_features(rows: int, seed: int = SEED) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, N_FEATURES)).astype(np.float32)


def synthetic_windows(rows: int, seed: int = SEED) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, *WINDOW_SHAPE)).astype(np.float32)


def build_lightgbm(root: Path) -> tuple[Path, Path]:
    """Train a binary booster (200 trees, 31 leaves) and save it as an MLflow model plus MLServer's copy."""
    import pandas as pd

    from tickserve import zoo

    mlflow_dir = root / "lightgbm-mlflow"
    text_file = root / "lightgbm-mlserver" / "model.txt"
    if not (mlflow_dir / "MLmodel").exists():
        features = synthetic_features(20_000)
        weights = np.random.default_rng(SEED + 1).normal(size=N_FEATURES)
        labels = (features @ weights + 0.5 * np.sin(features[:, 0] * 3) > 0).astype(np.int32)
        frame = pd.DataFrame(features, columns=FEATURE_NAMES)
        booster = zoo.train_lightgbm(frame, labels, seed=SEED, rounds=200, num_leaves=31)
        shutil.rmtree(mlflow_dir, ignore_errors=True)
        zoo.save_lightgbm_mlflow(mlflow_dir, booster, frame.head(100))
    booster_file = mlflow_dir / "model.lgb"
    if not text_file.exists() or not filecmp.cmp(booster_file, text_file, shallow=False):
        text_file.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(booster_file, text_file)
    return mlflow_dir, text_file


LSTM_LAYERS = 2
LSTM_HIDDEN = 128


MLP_HIDDEN = (2048, 512)


def lstm_network():  # -> torch.nn.Module (torch is imported lazily: it is slow to import)
    """A trading-style LSTM over the [60, 110] feature window: 2 layers, hidden 128, the last step's hidden state
    into a 2-class softmax head (~0.3M weights).

    Its per-call cost is the 60 sequential steps, each a small matrix product that a batch widens: one window
    alone costs ~0.4 ms (ONNX Runtime) / ~0.85 ms (TorchScript) on one thread here, ~0.2 ms per window in a
    batch of 16-64. That in-process gain (the bench records it as `batching_ceiling_in_process`; 1.8x ONNX,
    3.4x TorchScript in the README's run) is the ceiling micro-batching can reach.
    """
    import torch

    class WindowLSTM(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(WINDOW_SHAPE[1], LSTM_HIDDEN, num_layers=LSTM_LAYERS, batch_first=True)
            self.head = torch.nn.Linear(LSTM_HIDDEN, 2)

        def forward(self, window: torch.Tensor) -> torch.Tensor:
            sequence, _ = self.lstm(window)
            return torch.softmax(self.head(sequence[:, -1]), dim=-1)

    torch.manual_seed(SEED)
    return WindowLSTM().eval()


def mlp_network():  # -> torch.nn.Module
    """A dense MLP over the flattened [60, 110] window: 6,600 inputs, hidden 2048 and 512, a 2-class softmax head
    (~14.6M weights, 58 MB in FP32).

    Its per-call cost is reading the weights: one window alone streams all 58 MB from memory (~1.3 ms ONNX
    Runtime, ~2.1 ms TorchScript on one thread here), while a batch reuses every weight it loads for all its
    rows (~0.15 / 0.3 ms per window at 64): an in-process gain of ~8x / ~7x. That is the regime micro-batching
    is for (and the usual one on a GPU, where a single row leaves the device idle).
    """
    import torch

    layers: list[torch.nn.Module] = [torch.nn.Flatten()]
    width = WINDOW_SHAPE[0] * WINDOW_SHAPE[1]
    for hidden in MLP_HIDDEN:
        layers += [torch.nn.Linear(width, hidden), torch.nn.ReLU()]
        width = hidden
    layers += [torch.nn.Linear(width, 2), torch.nn.Softmax(dim=-1)]
    torch.manual_seed(SEED)
    return torch.nn.Sequential(*layers).eval()


WINDOW_NETWORKS = {"lstm": lstm_network, "mlp": mlp_network}


def _window_signature():
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *WINDOW_SHAPE), WINDOW_INPUT)]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 2), WINDOW_OUTPUT)]),
    )


def build_window_model(root: Path, network_name: str) -> WindowModel:
    """Export the same network weights as ONNX (dynamic batch axis) and as TorchScript, each an MLflow-style dir."""
    onnx_dir, torchscript_dir = root / f"window-{network_name}-onnx", root / f"window-{network_name}-torchscript"
    if (onnx_dir / "MLmodel").exists() and (torchscript_dir / "MLmodel").exists():
        return WindowModel(onnx_dir, torchscript_dir)
    import mlflow.onnx
    import mlflow.pytorch
    import onnx
    import torch

    network = WINDOW_NETWORKS[network_name]()
    example = torch.from_numpy(synthetic_windows(2))
    signature = _window_signature()

    batch = torch.export.Dim("batch", min=1, max=1024)
    with tempfile.TemporaryDirectory() as scratch:
        onnx_file = Path(scratch) / "window.onnx"
        torch.onnx.export(
            network,
            (example,),
            str(onnx_file),
            input_names=[WINDOW_INPUT],
            output_names=[WINDOW_OUTPUT],
            dynamic_shapes=({0: batch},),
            verbose=False,
            external_data=False,
        )
        onnx_model = onnx.load(str(onnx_file))
    shutil.rmtree(onnx_dir, ignore_errors=True)
    mlflow.onnx.save_model(
        onnx_model,
        str(onnx_dir),
        signature=signature,
        save_as_external_data=False,
        pip_requirements=["onnxruntime"],
    )

    with torch.no_grad():
        traced = torch.jit.trace(network, example)
    shutil.rmtree(torchscript_dir, ignore_errors=True)
    # A ScriptModule given to mlflow.pytorch is written with torch.jit's own format (data/model.pth).
    mlflow.pytorch.save_model(
        traced, str(torchscript_dir), signature=signature, serialization_format="pickle", pip_requirements=["torch"]
    )
    return WindowModel(onnx_dir, torchscript_dir)


def build_all(root: Path) -> BenchModels:
    root.mkdir(parents=True, exist_ok=True)
    lightgbm_mlflow, lightgbm_text = build_lightgbm(root)
    windows = {name: build_window_model(root, name) for name in WINDOW_NETWORKS}
    return BenchModels(lightgbm_mlflow, lightgbm_text, windows)
