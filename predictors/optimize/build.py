"""The ONNX variants: export from PyTorch, ORT's offline graph optimisation, dynamic INT8, FP16 (GPU only).

- Export uses the TorchScript-based exporter (`dynamo=False`), which takes nn.Modules and TorchScript alike,
  with the batch dimension dynamic so one file serves any batch size.
- The optimised model is ONNX Runtime's own optimiser run offline at the EXTENDED level and saved: the level
  ORT recommends for files that must stay portable (ALL adds layout changes tied to the machine). Serving it
  skips those passes at load time; a session loading the plain export applies them online.
- INT8 is `onnxruntime.quantization.quantize_dynamic` (weights INT8, activations quantised per call), which
  needs no calibration data and covers MatMul/Gemm and LSTM.
- FP16 (`onnxruntime.transformers.float16`, inputs and outputs kept FP32) only pays on a GPU execution
  provider; on CPU ONNX Runtime would insert casts around kernels it lacks, so it is skipped with a message.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort

GPU_PROVIDERS = ("CUDAExecutionProvider",)


class ExportError(RuntimeError):
    """The PyTorch model cannot be exported to ONNX (typically an operator ONNX has no equivalent for)."""


def export(module, example: np.ndarray, path: Path, input_name: str, output_names: tuple[str, ...], opset: int) -> Path:
    """Export `module` traced on `example` (two rows suffice) with a dynamic batch dimension."""
    import torch

    dynamic = {name: {0: "rows"} for name in (input_name, *output_names)}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter warns about every LSTM batch_first and deprecations
            torch.onnx.export(
                module,
                (torch.from_numpy(np.ascontiguousarray(example[:2])),),
                str(path),
                input_names=[input_name],
                output_names=list(output_names),
                dynamic_axes=dynamic,
                opset_version=opset,
                dynamo=False,
            )
    except torch.onnx.errors.UnsupportedOperatorError as error:
        raise ExportError(f"an operator of the model has no ONNX export: {error}") from error
    except (torch.onnx.errors.OnnxExporterError, RuntimeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ExportError(f"torch.onnx.export failed: {first}") from error
    return path


def optimise_graph(source: Path, path: Path) -> Path:
    """Run ONNX Runtime's graph optimiser once and save the result."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(path)
    ort.InferenceSession(str(source), sess_options=options, providers=["CPUExecutionProvider"])
    return path


def quantise_int8(source: Path, path: Path) -> Path:
    """Dynamic INT8 quantisation of the FP32 export (weights signed INT8)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(path), weight_type=QuantType.QInt8)
    return path


def gpu_provider() -> str | None:
    """The GPU execution provider this onnxruntime build offers, if any."""
    return next((p for p in GPU_PROVIDERS if p in ort.get_available_providers()), None)


def convert_fp16(source: Path, path: Path) -> Path:
    """FP16 weights and compute with FP32 inputs and outputs, so callers send the same tensors."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx.save(convert_float_to_float16(onnx.load(str(source)), keep_io_types=True), str(path))
    return path
