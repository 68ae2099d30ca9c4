"""A variant is one runnable form of the model (the original in torch, or an ONNX file on ONNX Runtime), opened
the way the predictors run it: ONNX sessions with the ONNX runtime's own session options, torch on CPU with
its intra-op threads limited. A runner maps one input batch to the model's first output."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

Runner = Callable[[np.ndarray], np.ndarray]

ORIGINAL = "original"


@dataclass(frozen=True)
class Variant:
    name: str
    runtime: str  # "torch" or "onnxruntime"
    path: str
    provider: str = "CPUExecutionProvider"

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    @property
    def size_bytes(self) -> int:
        return Path(self.path).stat().st_size


def import_runtime(variant: Variant) -> None:
    """Import what `open_runner` needs for `variant`, so that a benchmark can time the model load alone."""
    if variant.runtime == "torch":
        import tickserve.predictors.optimize.source
        import tickserve.predictors.runtimes.torchscript
    else:
        import tickserve.predictors.runtimes.onnx  # noqa: F401


def open_runner(variant: Variant, input_name: str, threads: int) -> Runner:
    if variant.runtime == "torch":
        import torch

        from tickserve.predictors.optimize.source import load_torch
        from tickserve.predictors.runtimes.torchscript import limit_threads

        limit_threads(threads)
        module = load_torch(Path(variant.path))

        def run_torch(batch: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                result = module(torch.from_numpy(batch))
            first = result[0] if isinstance(result, (tuple, list)) else result
            return first.numpy()

        return run_torch
    import onnxruntime as ort

    from tickserve.predictors.runtimes.onnx import session_options

    providers = [variant.provider] + (["CPUExecutionProvider"] if variant.provider != "CPUExecutionProvider" else [])
    session = ort.InferenceSession(variant.path, sess_options=session_options(threads), providers=providers)
    output = session.get_outputs()[0].name

    def run_onnx(batch: np.ndarray) -> np.ndarray:
        return session.run([output], {input_name: batch})[0]

    return run_onnx
