"""The model zoo: one small model of every kind users save with the ordinary MLflow and framework calls, each with
a request it takes and the framework's own prediction for that request.

The predictor tests serve each kind as a process and compare what Triton's clients get back with `expected`;
the bench serves the same LightGBM model through the native and the pyfunc runtime. A kind is built by
`build(kind, path)`; `KINDS` lists them. Kinds that need a package that is not installed (skl2onnx) are left out
of `available_kinds()`.

Models are trained single-threaded on synthetic data with a fixed seed, so a kind is the same model every time.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ROWS = 8  # rows of the request each kind is called with
FEATURES = 15  # width of the tabular kinds (torch_modules.FEATURES)
PIP = ["numpy"]  # skips MLflow's slow requirement inference


@dataclass(frozen=True)
class Tensor:
    """One v2 input tensor of a request."""

    name: str
    array: np.ndarray
    datatype: str


@dataclass(frozen=True)
class ZooModel:
    """A saved model: what runtime should serve it, a request it takes, and what the framework itself predicts."""

    kind: str
    path: Path
    runtime: str
    inputs: tuple[Tensor, ...]
    expected: dict[str, np.ndarray]
    rtol: float = 1e-5
    atol: float = 1e-6


def tabular(
    seed: int, rows: int = 300, width: int = FEATURES, dtype: type = np.float64
) -> tuple[np.ndarray, np.ndarray]:
    """A feature matrix and a 3-class label that depends on its first columns."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, width)).astype(dtype)
    y = (x[:, 0] - x[:, 1] > 0).astype(int) + (x[:, 2] > 1).astype(int)
    return x, y


def columns(x: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(x, columns=[f"f{i:02d}" for i in range(x.shape[1])])


# --- LightGBM ------------------------------------------------------------------------------------------------


def lightgbm_booster_tensor(path: Path) -> ZooModel:
    """A Booster trained on a numpy array: `infer_signature` writes one unnamed FP64 tensor [-1, 15]."""
    import lightgbm as lgb
    import mlflow.lightgbm
    from mlflow.models import infer_signature

    x, y = tabular(seed=1)
    params = {"objective": "binary", "verbose": -1, "num_threads": 1, "seed": 1, "num_leaves": 7}
    booster = lgb.train(params, lgb.Dataset(x, y > 0), num_boost_round=10)
    mlflow.lightgbm.save_model(
        booster, str(path), signature=infer_signature(x, booster.predict(x)), pip_requirements=PIP
    )
    request = x[:ROWS]
    p_up = booster.predict(request)
    expected = {"probabilities": np.column_stack((1 - p_up, p_up)).astype(np.float32)}
    return ZooModel("lightgbm_booster_tensor", path, "lightgbm", (Tensor("features", request, "FP64"),), expected)


def lightgbm_classifier(path: Path) -> ZooModel:
    """`lightgbm.LGBMClassifier` (3 classes) fit on a DataFrame: a column signature; served through its booster."""
    import lightgbm as lgb
    import mlflow.lightgbm
    from mlflow.models import infer_signature

    x, y = tabular(seed=2)
    frame = columns(x)
    model = lgb.LGBMClassifier(n_estimators=10, num_leaves=7, n_jobs=1, random_state=2, verbose=-1).fit(frame, y)
    signature = infer_signature(frame, model.predict_proba(frame))
    mlflow.lightgbm.save_model(model, str(path), signature=signature, pip_requirements=PIP)
    request = frame.head(ROWS)
    expected = {"probabilities": model.predict_proba(request).astype(np.float32)}
    return ZooModel(
        "lightgbm_classifier", path, "lightgbm", (Tensor("features", request.to_numpy(), "FP64"),), expected
    )


def lightgbm_regressor(path: Path) -> ZooModel:
    """`lightgbm.LGBMRegressor` fit on a numpy array: an unnamed tensor signature; served through its booster."""
    import lightgbm as lgb
    import mlflow.lightgbm
    from mlflow.models import infer_signature

    x, _ = tabular(seed=3)
    target = x[:, 0] * 2 + x[:, 3]
    model = lgb.LGBMRegressor(n_estimators=10, num_leaves=7, n_jobs=1, random_state=3, verbose=-1).fit(x, target)
    mlflow.lightgbm.save_model(model, str(path), signature=infer_signature(x, model.predict(x)), pip_requirements=PIP)
    request = x[:ROWS]
    expected = {"predict": model.predict(request)}
    return ZooModel("lightgbm_regressor", path, "lightgbm", (Tensor("features", request, "FP64"),), expected)


def squared_error(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A custom LightGBM objective (gradient, hessian): squared error written in Python."""
    return y_pred - y_true, np.ones_like(y_true)


def lightgbm_custom_objective(path: Path) -> ZooModel:
    """`LGBMRegressor` with a Python objective, saved with cloudpickle: the booster does not carry the objective,
    so only the estimator knows what its predict means; the pyfunc runtime serves it by calling the estimator."""
    import lightgbm as lgb
    import mlflow.lightgbm
    from mlflow.models import infer_signature

    x, _ = tabular(seed=13)
    target = x[:, 0] - x[:, 4]
    model = lgb.LGBMRegressor(n_estimators=10, objective=squared_error, n_jobs=1, random_state=13, verbose=-1)
    model.fit(x, target)
    signature = infer_signature(x, model.predict(x))
    mlflow.lightgbm.save_model(
        model, str(path), signature=signature, serialization_format="cloudpickle", pip_requirements=PIP
    )
    request = x[:ROWS]
    expected = {"predict": model.predict(request)}
    return ZooModel("lightgbm_custom_objective", path, "mlflow_pyfunc", (Tensor("input", request, "FP64"),), expected)


# --- ONNX ----------------------------------------------------------------------------------------------------


def onnx_mlp(path: Path) -> ZooModel:
    """A torch MLP exported to ONNX with input `x`, saved with `infer_signature(X, y)`: the signature's tensor has
    no name, the graph's input is `x`."""
    import mlflow.onnx
    import onnx
    import torch
    from mlflow.models import infer_signature

    from tickserve.zoo.torch_modules import Net, seeded

    x, _ = tabular(seed=4, dtype=np.float32)
    module = seeded(Net, seed=4)
    exported = path.parent / f"{path.name}.export.onnx"
    torch.onnx.export(
        module,
        (torch.zeros(2, FEATURES),),
        str(exported),
        input_names=["x"],
        output_names=["probabilities"],
        dynamic_axes={"x": {0: "rows"}, "probabilities": {0: "rows"}},
        dynamo=False,
    )
    with torch.inference_mode():
        y = module(torch.from_numpy(x)).numpy()
    mlflow.onnx.save_model(onnx.load(str(exported)), str(path), signature=infer_signature(x, y), pip_requirements=PIP)
    exported.unlink()
    expected = {"probabilities": y[:ROWS]}
    return ZooModel("onnx_mlp", path, "onnxruntime", (Tensor("x", x[:ROWS], "FP32"),), expected)


def onnx_sklearn(path: Path) -> ZooModel:
    """An sklearn pipeline (scaler + logistic regression) converted by skl2onnx: two outputs, `label` and
    `probabilities`."""
    import mlflow.onnx
    from mlflow.models import infer_signature
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = tabular(seed=5, dtype=np.float32)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)
    graph = to_onnx(pipeline, x[:1], options={LogisticRegression: {"zipmap": False}}, target_opset=17)
    signature = infer_signature(x, pipeline.predict_proba(x))
    mlflow.onnx.save_model(graph, str(path), signature=signature, pip_requirements=PIP)
    request = x[:ROWS]
    expected = {"label": pipeline.predict(request), "probabilities": pipeline.predict_proba(request).astype(np.float32)}
    return ZooModel(
        "onnx_sklearn", path, "onnxruntime", (Tensor("X", request, "FP32"),), expected, rtol=1e-4, atol=1e-5
    )


def onnx_no_signature(path: Path) -> ZooModel:
    """The torch MLP's ONNX graph saved without a signature: the graph's own inputs and outputs are served."""
    import mlflow.onnx
    import onnx
    import torch

    from tickserve.zoo.torch_modules import Net, seeded

    x, _ = tabular(seed=15, dtype=np.float32)
    module = seeded(Net, seed=15)
    exported = path.parent / f"{path.name}.export.onnx"
    torch.onnx.export(
        module,
        (torch.zeros(2, FEATURES),),
        str(exported),
        input_names=["bars"],
        output_names=["scores"],
        dynamic_axes={"bars": {0: "rows"}, "scores": {0: "rows"}},
        dynamo=False,
    )
    mlflow.onnx.save_model(onnx.load(str(exported)), str(path), pip_requirements=PIP)
    exported.unlink()
    request = x[:ROWS]
    expected = {"scores": _torch_expected(module, request)}
    return ZooModel("onnx_no_signature", path, "onnxruntime", (Tensor("bars", request, "FP32"),), expected)


def onnx_open_width(path: Path) -> ZooModel:
    """The torch MLP's ONNX graph with its width exported as dynamic too, saved without a signature: nothing
    checks the width before ONNX Runtime does."""
    import mlflow.onnx
    import onnx
    import torch

    from tickserve.zoo.torch_modules import Net, seeded

    x, _ = tabular(seed=17, dtype=np.float32)
    module = seeded(Net, seed=17)
    exported = path.parent / f"{path.name}.export.onnx"
    torch.onnx.export(
        module,
        (torch.zeros(2, FEATURES),),
        str(exported),
        input_names=["x"],
        output_names=["probabilities"],
        dynamic_axes={"x": {0: "rows", 1: "width"}, "probabilities": {0: "rows"}},
        dynamo=False,
    )
    mlflow.onnx.save_model(onnx.load(str(exported)), str(path), pip_requirements=PIP)
    exported.unlink()
    request = x[:ROWS]
    expected = {"probabilities": _torch_expected(module, request)}
    return ZooModel("onnx_open_width", path, "onnxruntime", (Tensor("x", request, "FP32"),), expected)


def onnx_sklearn_columns(path: Path) -> ZooModel:
    """The pipeline fit on a DataFrame and converted by skl2onnx from the frame: one graph input per column, saved
    with the frame's column signature."""
    import mlflow.onnx
    from mlflow.models import infer_signature
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    x, y = tabular(seed=14, width=4, dtype=np.float32)
    frame = columns(x)
    pipeline = _sklearn_pipeline(frame, y)
    graph = to_onnx(pipeline, frame.head(1), options={LogisticRegression: {"zipmap": False}}, target_opset=17)
    signature = infer_signature(frame, pipeline.predict_proba(frame))
    mlflow.onnx.save_model(graph, str(path), signature=signature, pip_requirements=PIP)
    request = frame.head(ROWS)
    expected = {"probabilities": pipeline.predict_proba(request).astype(np.float32)}
    return ZooModel(
        "onnx_sklearn_columns",
        path,
        "onnxruntime",
        (Tensor("features", request.to_numpy(), "FP32"),),
        expected,
        rtol=1e-4,
        atol=1e-5,
    )


# --- PyTorch -------------------------------------------------------------------------------------------------


def _torch_expected(module, *arrays: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return module(*(torch.from_numpy(a) for a in arrays)).numpy()


def pytorch_export(path: Path) -> ZooModel:
    """An nn.Module saved with `mlflow.pytorch.save_model(model, path, input_example=X)`: MLflow 3's default pt2
    format (torch.export)."""
    import mlflow.pytorch

    from tickserve.zoo.torch_modules import Net, seeded

    x, _ = tabular(seed=6, dtype=np.float32)
    module = seeded(Net, seed=6)
    mlflow.pytorch.save_model(module, str(path), input_example=x[:5], pip_requirements=PIP)
    request = x[:ROWS]
    expected = {"predict": _torch_expected(module, request)}
    return ZooModel("pytorch_export", path, "pytorch_export", (Tensor("x", request, "FP32"),), expected)


def pytorch_export_fp64(path: Path) -> ZooModel:
    """The pt2 MLP in float64: an FP64 signature and program."""
    import mlflow.pytorch

    from tickserve.zoo.torch_modules import Net, seeded

    x, _ = tabular(seed=7)
    module = seeded(Net, seed=7).double()
    mlflow.pytorch.save_model(module, str(path), input_example=x[:5], pip_requirements=PIP)
    request = x[:ROWS]
    expected = {"predict": _torch_expected(module, request)}
    return ZooModel("pytorch_export_fp64", path, "pytorch_export", (Tensor("x", request, "FP64"),), expected)


def pytorch_sequence(path: Path) -> ZooModel:
    """A sequence model over a [N, 60, 8] window, saved in MLflow's default pt2 format."""
    import mlflow.pytorch

    from tickserve.zoo.torch_modules import WINDOW, Sequence, seeded

    module = seeded(Sequence, seed=8)
    window = np.random.default_rng(8).normal(size=(ROWS, *WINDOW)).astype(np.float32)
    mlflow.pytorch.save_model(module, str(path), input_example=window[:4], pip_requirements=PIP)
    expected = {"predict": _torch_expected(module, window)}
    return ZooModel("pytorch_sequence", path, "pytorch_export", (Tensor("window", window, "FP32"),), expected)


def torchscript_multi_output(path: Path) -> ZooModel:
    """A TorchScript module answering two tensors, saved in MLflow's pickle format with a named signature."""
    import mlflow.pytorch
    import torch
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    from tickserve.zoo.torch_modules import TwoHeads, seeded

    module = torch.jit.script(seeded(TwoHeads, seed=9))
    f32 = np.dtype(np.float32)
    signature = ModelSignature(
        inputs=Schema([TensorSpec(f32, (-1, FEATURES), "x")]),
        outputs=Schema([TensorSpec(f32, (-1, 2), "probabilities"), TensorSpec(f32, (-1, 1), "edge")]),
    )
    mlflow.pytorch.save_model(
        module, str(path), signature=signature, serialization_format="pickle", pip_requirements=PIP
    )
    x, _ = tabular(seed=9, dtype=np.float32)
    request = x[:ROWS]
    with torch.inference_mode():
        probabilities, edge = module(torch.from_numpy(request))
    expected = {"probabilities": probabilities.numpy(), "edge": edge.numpy()}
    return ZooModel("torchscript_multi_output", path, "pytorch_torchscript", (Tensor("x", request, "FP32"),), expected)


def pytorch_pickle(path: Path) -> ZooModel:
    """An nn.Module saved in MLflow's pickle format (not TorchScript): served by the pyfunc runtime."""
    import mlflow.pytorch
    from mlflow.models import infer_signature

    from tickserve.zoo.torch_modules import Net, seeded

    x, _ = tabular(seed=10, dtype=np.float32)
    module = seeded(Net, seed=10)
    expected = _torch_expected(module, x)
    mlflow.pytorch.save_model(
        module, str(path), signature=infer_signature(x, expected), serialization_format="pickle", pip_requirements=PIP
    )
    return ZooModel(
        "pytorch_pickle", path, "mlflow_pyfunc", (Tensor("input", x[:ROWS], "FP32"),), {"predict": expected[:ROWS]}
    )


# --- scikit-learn through pyfunc -----------------------------------------------------------------------------


def _sklearn_pipeline(x: np.ndarray | pd.DataFrame, y: np.ndarray):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)


def sklearn_pipeline_columns(path: Path) -> ZooModel:
    """A scaler in front of a classifier (the realtime-trading design's pipeline), fit on a DataFrame and saved
    with `mlflow.sklearn.save_model(..., pyfunc_predict_fn="predict_proba")`: a column signature, pyfunc."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    x, y = tabular(seed=11)
    frame = columns(x)
    pipeline = _sklearn_pipeline(frame, y)
    signature = infer_signature(frame, pipeline.predict_proba(frame))
    mlflow.sklearn.save_model(
        pipeline, str(path), signature=signature, pyfunc_predict_fn="predict_proba", pip_requirements=PIP
    )
    request = frame.head(ROWS)
    expected = {"predict": pipeline.predict_proba(request)}
    return ZooModel(
        "sklearn_pipeline_columns", path, "mlflow_pyfunc", (Tensor("features", request.to_numpy(), "FP64"),), expected
    )


def sklearn_pipeline_tensor(path: Path) -> ZooModel:
    """The same pipeline fit on a numpy array: an unnamed FP64 tensor signature, pyfunc answering labels."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    x, y = tabular(seed=12)
    pipeline = _sklearn_pipeline(x, y)
    mlflow.sklearn.save_model(
        pipeline, str(path), signature=infer_signature(x, pipeline.predict(x)), pip_requirements=PIP
    )
    request = x[:ROWS]
    expected = {"predict": pipeline.predict(request)}
    return ZooModel("sklearn_pipeline_tensor", path, "mlflow_pyfunc", (Tensor("input", request, "FP64"),), expected)


def sklearn_string_labels(path: Path) -> ZooModel:
    """The pipeline fit on a DataFrame with text labels ("down", "flat", "up"): pyfunc answering BYTES labels."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    x, y = tabular(seed=18)
    frame = columns(x)
    labels = np.array(["down", "flat", "up"])[y]
    pipeline = _sklearn_pipeline(frame, labels)
    mlflow.sklearn.save_model(pipeline, str(path), signature=infer_signature(frame, labels), pip_requirements=PIP)
    request = frame.head(ROWS)
    expected = {"predict": pipeline.predict(request).astype(object)}
    return ZooModel(
        "sklearn_string_labels", path, "mlflow_pyfunc", (Tensor("features", request.to_numpy(), "FP64"),), expected
    )


def sklearn_no_signature(path: Path) -> ZooModel:
    """The pipeline saved without a signature: pyfunc, one input `input` of any shape (FP64)."""
    import mlflow.sklearn

    x, y = tabular(seed=16)
    pipeline = _sklearn_pipeline(x, y)
    mlflow.sklearn.save_model(pipeline, str(path), pip_requirements=PIP)
    request = x[:ROWS]
    expected = {"predict": pipeline.predict(request)}
    return ZooModel("sklearn_no_signature", path, "mlflow_pyfunc", (Tensor("input", request, "FP64"),), expected)


KINDS: dict[str, Callable[[Path], ZooModel]] = {
    builder.__name__: builder
    for builder in (
        lightgbm_booster_tensor,
        lightgbm_classifier,
        lightgbm_regressor,
        lightgbm_custom_objective,
        onnx_mlp,
        onnx_no_signature,
        onnx_open_width,
        onnx_sklearn,
        onnx_sklearn_columns,
        pytorch_export,
        pytorch_export_fp64,
        pytorch_sequence,
        torchscript_multi_output,
        pytorch_pickle,
        sklearn_pipeline_columns,
        sklearn_pipeline_tensor,
        sklearn_string_labels,
        sklearn_no_signature,
    )
}
NEEDS = {"onnx_sklearn": "skl2onnx", "onnx_sklearn_columns": "skl2onnx"}


def available_kinds() -> list[str]:
    """The kinds whose builder's packages are installed."""
    return [kind for kind in KINDS if importlib.util.find_spec(NEEDS.get(kind, "numpy")) is not None]


def build(kind: str, path: Path) -> ZooModel:
    """Save a `kind` model at `path` (which must not exist yet)."""
    return KINDS[kind](Path(path))
