"""The real PyTorch models the optimiser is tested on: an MLP and an LSTM over a [60, F] bar window, each a
direction classifier answering `probabilities` [N, 2] ([p_down, p_up]), saved with `mlflow.pytorch` as users
save them. The classes are defined inside the builders, so MLflow's cloudpickle stores them by value and a
fresh process (the optimiser's benchmark workers) loads the model without importing this file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

WINDOW = 60


def window_mlp(features: int, *, seed: int, hidden: int = 64):
    """flatten -> two dense ReLU layers -> softmax."""
    import torch

    torch.manual_seed(seed)

    class WindowMLP(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Flatten(),
                torch.nn.Linear(WINDOW * features, hidden),
                torch.nn.ReLU(),
                torch.nn.Linear(hidden, hidden),
                torch.nn.ReLU(),
                torch.nn.Linear(hidden, 2),
            )

        def forward(self, window: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.net(window), dim=-1)

    return WindowMLP().eval()


def window_lstm(features: int, *, seed: int, hidden: int = 32):
    """One LSTM layer; its last state -> dense -> softmax."""
    import torch

    torch.manual_seed(seed)

    class WindowLSTM(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(features, hidden, batch_first=True)
            self.head = torch.nn.Linear(hidden, 2)

        def forward(self, window: torch.Tensor) -> torch.Tensor:
            states, _ = self.lstm(window)
            return torch.softmax(self.head(states[:, -1]), dim=-1)

    return WindowLSTM().eval()


def windows(rows: int, features: int, seed: int) -> np.ndarray:
    """Random bar windows [rows, 60, features] (FP32), a held-out sample or an input example."""
    return np.random.default_rng(seed).normal(size=(rows, WINDOW, features)).astype(np.float32)


def window_signature(features: int):
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, WINDOW, features), "window")]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 2), "probabilities")]),
    )


def save_torch_mlflow(path: Path, module, features: int, example: np.ndarray | None, *, script: bool = False) -> Path:
    """`mlflow.pytorch.save_model` of `module` (traced to TorchScript when `script`), with the window signature
    and `example` as the input example when given."""
    import mlflow.pytorch
    import torch

    model = torch.jit.trace(module, torch.zeros(2, WINDOW, features)) if script else module
    mlflow.pytorch.save_model(
        model,
        str(path),
        signature=window_signature(features),
        input_example=example,
        serialization_format="pickle",
        pip_requirements=["torch"],
    )
    return path
