"""ONNX Runtime: TensorRT or CUDA execution providers when the runtime offers them, CPU otherwise.

Session options are set for a latency-sensitive server sharing its cores with an event loop and possibly
other workers: `threads` intra-op threads, one inter-op thread (sequential execution), full graph
optimisation, and no spin-waiting between requests.

The graph declares its inputs' names, types and shapes: they win over the MLflow signature's (see
`signature.reconcile`), so a model exported with input `x` and saved with an unnamed signature takes `x`.
A column signature packs the columns into the graph's one matrix input, or hands each column to the graph
input of its name (skl2onnx converts a DataFrame into one input per column).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

from tickserve.predictors.base import TickPredictor
from tickserve.predictors.batching import Arrays
from tickserve.predictors.datatypes import V2_TO_NUMPY
from tickserve.predictors.signature import Signature, TensorSpec
from tickserve.v2.names import PACKED_FEATURES

logger = logging.getLogger(__name__)

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
    PLATFORM = "onnxruntime"
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

    def interface(self, declared: Signature | None) -> Signature:
        """A column signature serves only if the graph takes its columns: one matrix of that width, or one input
        per column; otherwise the graph's own inputs are served."""
        nodes = self.session.get_inputs()
        if declared is not None and declared.tabular:
            width = nodes[0].shape[-1] if len(nodes) == 1 and len(nodes[0].shape) == 2 else None
            whole = width is not None and (not isinstance(width, int) or width == len(declared.inputs))
            if whole or {node.name for node in nodes} <= set(declared.input_names):
                return declared
            logger.warning("model %s: its column signature does not fit the graph's inputs; serving those", self.name)
            declared = None
        return super().interface(declared)

    def output_specs(self) -> tuple[TensorSpec, ...]:
        native = {spec.name: spec for spec in self.native_signature().outputs}
        return tuple(native[name] for name in self.output_names)

    def predict_arrays(self, inputs: Arrays) -> Arrays:
        if self.signature.tabular:
            inputs = self._feed_columns(inputs[PACKED_FEATURES])
        results = self.session.run(self.output_names, inputs)
        return {name: np.asarray(result) for name, result in zip(self.output_names, results, strict=True)}

    def _feed_columns(self, matrix: np.ndarray) -> Arrays:
        """The packed [N, F] matrix as the graph takes it: whole (a converted tree or linear model), or one [N, 1]
        column per graph input named after its column."""
        nodes = self.session.get_inputs()
        if len(nodes) == 1:
            return {nodes[0].name: matrix.astype(_numpy_type(nodes[0]), copy=False)}
        position = {name: i for i, name in enumerate(self.signature.input_names)}
        return {node.name: matrix[:, position[node.name], None].astype(_numpy_type(node), copy=False) for node in nodes}

    def client_fault(self, error: Exception, inputs: Arrays) -> str | None:
        """ONNX Runtime's INVALID_ARGUMENT is about the inputs it was given (dimensions the graph leaves symbolic,
        index values out of range): those are the request's; any other failure is the server's."""
        return str(error).split("INVALID_ARGUMENT :", 1)[-1].strip() if isinstance(error, InvalidArgument) else None


def _numpy_type(node: ort.NodeArg) -> np.dtype:
    return V2_TO_NUMPY[ONNX_TO_V2.get(node.type, "FP32")]


def _spec(node: ort.NodeArg) -> TensorSpec:
    shape = tuple(dim if isinstance(dim, int) else -1 for dim in node.shape)
    return TensorSpec(node.name, ONNX_TO_V2.get(node.type, "BYTES"), shape)
