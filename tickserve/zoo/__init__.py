"""Small real models, built and saved the way users build and save them: the one builder behind the tests, the
benchmarks and the end-to-end models, so that every tier serves the same kind of artefact.

`signal_model` is the canonical fixture: a LightGBM direction classifier over named features, saved with
`mlflow.lightgbm.save_model` and a signature whose `probabilities` output is [N, 2] (what the transformer
expects). Its features can be listed in a shuffled order, so a client that sends them in any order but the
signature's gets different answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd


def train_lightgbm(
    frame: pd.DataFrame,
    labels: np.ndarray | pd.Series,
    *,
    seed: int,
    rounds: int,
    num_leaves: int = 7,
    objective: str = "binary",
    num_class: int | None = None,
) -> lgb.Booster:
    """A native Booster trained single-threaded (deterministic for a seed, and polite on a shared machine)."""
    params: dict[str, object] = {
        "objective": objective, "verbose": -1, "num_leaves": num_leaves, "seed": seed, "num_threads": 1,
    }  # fmt: skip
    if num_class is not None:
        params["num_class"] = num_class
    return lgb.train(params, lgb.Dataset(frame, labels), num_boost_round=rounds)


def save_lightgbm_mlflow(
    path: Path,
    booster: lgb.Booster,
    example: pd.DataFrame,
    *,
    version: str | None = None,
    probabilities: bool = False,
) -> Path:
    """`mlflow.lightgbm.save_model` with a column signature inferred from `example`. The output schema is the
    booster's own prediction, or [N, 2] class probabilities with `probabilities=True`."""
    import mlflow.lightgbm
    from mlflow.models import infer_signature

    output = booster.predict(example)
    if probabilities:
        output = np.stack([1 - output, output], axis=1)
    mlflow.lightgbm.save_model(
        booster,
        str(path),
        signature=infer_signature(example, output),
        metadata={"model_version": version} if version else None,
        pip_requirements=["lightgbm"],  # skips MLflow's slow requirement inference
    )
    return path


def train_signal_booster(
    feature_names: Sequence[str],
    *,
    seed: int,
    rows: int = 600,
    rounds: int = 15,
    num_leaves: int = 7,
    shuffle: bool = True,
) -> tuple[lgb.Booster, pd.DataFrame]:
    """A direction classifier over `feature_names` on synthetic data; returns it and its training frame, whose
    columns are the features in the model's order (shuffled by `seed` when `shuffle`)."""
    rng = np.random.default_rng(seed)
    order = [str(name) for name in (rng.permutation(feature_names) if shuffle else feature_names)]
    frame = pd.DataFrame(rng.normal(size=(rows, len(order))), columns=order)
    first, second, third = (frame[name] for name in list(feature_names)[:3])
    labels = (first - second + 0.3 * third > 0).astype(int)
    return train_lightgbm(frame, labels, seed=seed, rounds=rounds, num_leaves=num_leaves), frame


def signal_model(
    path: Path,
    feature_names: Sequence[str],
    *,
    seed: int,
    version: str,
    rows: int = 600,
    rounds: int = 15,
    num_leaves: int = 7,
    shuffle: bool = True,
) -> list[str]:
    """Save a `train_signal_booster` model as an MLflow model at `path`; returns its feature order."""
    booster, frame = train_signal_booster(
        feature_names, seed=seed, rows=rows, rounds=rounds, num_leaves=num_leaves, shuffle=shuffle
    )
    save_lightgbm_mlflow(path, booster, frame.head(5), version=version, probabilities=True)
    return list(frame.columns)
