"""Train the demo's signal models on features computed by the serving engine, and register them in MLflow.

Training uses `FeatureEngine` itself over a synthetic market, so the features a model learns from are the
ones ingest will write at serving time (no training/serving skew). A label is "the close `h` bars later is
higher than now", so each model answers [p_down, p_up] for its horizon.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from tickserve.transformers.features.engine import FeatureConfig, FeatureEngine
from tickserve.transformers.ingest.synthetic import SyntheticMarket


@dataclass(frozen=True)
class Dataset:
    """Feature rows in `FeatureConfig.names` order and, per horizon in bars, the up/down label of each row."""

    features: pd.DataFrame
    labels: dict[int, np.ndarray]

    def split(
        self, horizon_bars: int, holdout: float = 0.2
    ) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray]:
        """Chronological split (no shuffling: the holdout lies after the training rows, as it would in trading)."""
        cut = int(len(self.features) * (1 - holdout))
        y = self.labels[horizon_bars]
        return self.features.iloc[:cut], y[:cut], self.features.iloc[cut:], y[cut:]


def synthetic_dataset(
    market: SyntheticMarket, config: FeatureConfig, bars: int, horizons_bars: list[int], interval_seconds: float = 1.0
) -> Dataset:
    """Run `bars` bars of `market` through the engine; keep rows whose features are ready and whose every
    horizon has a realised close."""
    engine = FeatureEngine(config)
    ids = engine.symbol_ids(market.symbols)
    closes = np.empty((bars, len(ids)))
    rows = np.full((bars, len(ids), len(config.names)), np.nan)
    for step in tqdm(range(bars), desc="features", unit="bar", leave=False):
        batch = market.bars(step * interval_seconds)
        close = np.array([bar.close for bar in batch])
        volume = np.array([bar.volume for bar in batch])
        closes[step] = close
        rows[step] = engine.update(ids, close, volume).values
    longest = max(horizons_bars)
    usable = rows[: bars - longest]  # every horizon is realised for these steps
    ready = ~np.isnan(usable).any(axis=2)
    features = pd.DataFrame(usable[ready], columns=config.names)
    labels = {
        h: (closes[h : bars - longest + h] > closes[: bars - longest])[ready].astype(np.int32) for h in horizons_bars
    }
    return Dataset(features, labels)


def train_lightgbm(train_x: pd.DataFrame, train_y: np.ndarray, rounds: int = 150) -> lgb.Booster:
    """A small binary classifier; few leaves and early rounds are enough for a demo and keep inference fast."""
    params = {"objective": "binary", "learning_rate": 0.05, "num_leaves": 15, "min_data_in_leaf": 50, "verbose": -1}
    progress = tqdm(total=rounds, desc="lightgbm", unit="round", leave=False)

    def advance(_: object) -> None:
        progress.update(1)

    booster = lgb.train(params, lgb.Dataset(train_x, train_y), num_boost_round=rounds, callbacks=[advance])
    progress.close()
    return booster


def accuracy(probability_up: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean((probability_up > 0.5) == (labels == 1)))


def train_mlp_onnx(
    train_x: pd.DataFrame, train_y: np.ndarray, path: Path, epochs: int = 10, invert: bool = False
) -> Path:
    """A small PyTorch MLP exported to ONNX with input `features` [N, F] and output `probabilities` [N, 2].

    Inputs are standardised inside the network, so the served model takes raw engine features like LightGBM.
    `invert` exports a deliberately bad model: the trained network with its two answers swapped, so it is about as
    wrong as the trained one is right (the demo's bad canary).
    """
    import torch
    from torch import nn

    torch.manual_seed(0)
    x = torch.tensor(np.nan_to_num(train_x.to_numpy(np.float32)))
    y = torch.tensor(train_y, dtype=torch.long)
    mean, std = x.mean(0), x.std(0) + 1e-6

    class Signal(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", mean)
            self.register_buffer("std", std)
            self.layers = nn.Sequential(nn.Linear(x.shape[1], 32), nn.ReLU(), nn.Linear(32, 2))
            self.inverted = False

        def forward(self, features: torch.Tensor) -> torch.Tensor:
            probabilities = torch.softmax(self.layers((features - self.mean) / self.std), dim=1)
            return probabilities.flip(1) if self.inverted else probabilities

    model = Signal()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = nn.NLLLoss()
    for _ in tqdm(range(epochs), desc="mlp", unit="epoch", leave=False):
        for batch in torch.randperm(len(x)).split(1024):
            optimiser.zero_grad()
            loss = loss_fn(torch.log(model(x[batch]) + 1e-9), y[batch])
            loss.backward()
            optimiser.step()
    model.eval()
    model.inverted = invert
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (x[:1],),
            str(path),
            input_names=["features"],
            output_names=["probabilities"],
            dynamic_axes={"features": {0: "batch"}, "probabilities": {0: "batch"}},
            dynamo=False,
        )
    return path


def onnx_probability_up(path: Path, features: pd.DataFrame) -> np.ndarray:
    """p_up of an exported model on `features`, through onnxruntime as the predictor runs it."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"features": np.nan_to_num(features.to_numpy(np.float32))})[0][:, 1]
