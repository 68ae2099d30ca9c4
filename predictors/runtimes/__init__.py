"""One small runtime per framework, each a `TickPredictor` that turns decoded arrays into output arrays.

Native runtimes (`lightgbm`, `onnx`, `torchscript`, `torch_export`) are the fast path; `pyfunc` serves any other
MLflow flavor, and any model a native runtime refuses with `NotNative` (not exact through it).

A new framework goes here: subclass `tickserve.predictors.base.TickPredictor`, then map its `Framework` to the
class in `tickserve.predictors.repository.PREDICTOR_CLASSES` (imported on demand, so a LightGBM server never
pays for importing torch) and teach `tickserve.predictors.model_dir` to detect it.
"""
