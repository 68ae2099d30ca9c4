"""ONNX Runtime: TensorRT or CUDA execution providers when the runtime offers them, CPU otherwise.

Session options are set for a latency-sensitive server sharing its cores with an event loop and possibly
other workers: `threads` intra-op threads, one inter-op thread (sequential execution), full graph
optimisation, and no spin-waiting between requests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
from tickserve.predictors.base import TickPredictor
from tickserve.predictors.batching import Arrays
from tickserve.predictors.datatypes import V2_TO_NUMPY
from tickserve.predictors.signature import Signature, TensorSpec

from tickserve.v2.names import PACKED_FEATURES

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")

ONNX_TO_V2 = {
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(float16)": "FP16",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(uint8)": "UINT8",
    "tensor(bool)": "BOOL",
    "tensor(string)": "BYTES",
}


def select_providers(available: list[str], *, tensorrt: bool = False) -> list[str]:
    """Execution providers in preference order: GPU ones the runtime offers (TensorRT only when asked for,
    since it compiles engines on first use), then CPU as the fallback ONNX Runtime always has."""
    wanted = [p for p in GPU_PROVIDERS if p in available and (tensorrt or p != "TensorrtExecutionProvider")]
    return [*wanted, "CPUExecutionProvider"]


def session_options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class ONNXPredictor(TickPredictor):
    session: ort.InferenceSession

    def load_native(self, model_file: Path) -> None:
        providers = select_providers(ort.get_available_providers(), tensorrt=self.settings.onnx_tensorrt)
        self.session = ort.InferenceSession(
            str(model_file), sess_options=session_options(self.threads), providers=providers
        )
        self.output_names = [output.name for output in self.session.get_outputs()]

    def native_signature(self) -> Signature:
        return Signature(
            inputs=tuple(_spec(node) for node in self.session.get_inputs()),
            outputs=tuple(_spec(node) for node in self.session.get_outputs()),
        )

    def output_specs(self) -> tuple[TensorSpec, ...]:
        native = {spec.name: spec for spec in self.native_signature().outputs}
        return tuple(native[name] for name in self.output_names)

    def predict_arrays(self, inputs: Arrays) -> Arrays:
        if self.signature.tabular:  # e.g. a converted tree model: the session takes the packed feature matrix
            (node,) = self.session.get_inputs()
            dtype = V2_TO_NUMPY[ONNX_TO_V2.get(node.type, "FP32")]
            inputs = {node.name: inputs[PACKED_FEATURES].astype(dtype, copy=False)}
        results = self.session.run(self.output_names, inputs)
        return {name: np.asarray(result) for name, result in zip(self.output_names, results, strict=True)}


def _spec(node: ort.NodeArg) -> TensorSpec:
    shape = tuple(dim if isinstance(dim, int) else -1 for dim in node.shape)
    return TensorSpec(node.name, ONNX_TO_V2.get(node.type, "BYTES"), shape)
