"""torch.export programs (`.pt2`): what `mlflow.pytorch.save_model` writes by default since MLflow 3.

`torch.export.load` restores the ExportedProgram; its placeholders declare the inputs' names, dtypes and shapes
(dimensions exported as dynamic are -1), so requests are checked against what the program really takes. The
program runs as its `module()` on CUDA when present, CPU otherwise, whichever device it was exported on. Outputs are named by the MLflow signature
(the program's own output names are graph node names such as `linear_1`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.export.passes import move_to_device_pass

from tickserve.predictors.datatypes import V2_TO_NUMPY
from tickserve.predictors.runtimes.torch_module import TorchModulePredictor, limit_threads, select_device
from tickserve.predictors.signature import Signature, TensorSpec

TORCH_TO_V2 = {
    torch.float32: "FP32",
    torch.float64: "FP64",
    torch.float16: "FP16",
    torch.int64: "INT64",
    torch.int32: "INT32",
    torch.int16: "INT16",
    torch.int8: "INT8",
    torch.uint8: "UINT8",
    torch.bool: "BOOL",
}


class TorchExportPredictor(TorchModulePredictor):
    PLATFORM = "pytorch_export"

    def load_native(self, model_file: Path) -> None:
        limit_threads(self.threads)
        self.device = select_device()
        # The graph names devices in its factory calls (an LSTM's zero initial state is made on the exporting
        # device): moving only the weights would mix devices, so the program itself is moved.
        self.program = move_to_device_pass(torch.export.load(str(model_file)), self.device)
        self.module = self.program.module()

    def native_signature(self) -> Signature:
        user_inputs = set(self.program.graph_signature.user_inputs)
        specs = []
        for node in self.program.graph.nodes:
            if node.op == "placeholder" and node.name in user_inputs:
                value = node.meta["val"]
                dtype = TORCH_TO_V2.get(value.dtype, "FP32")
                shape = tuple(dim if isinstance(dim, int) else -1 for dim in value.shape)
                specs.append(TensorSpec(node.name, dtype, shape))
        return Signature(inputs=tuple(specs))

    def tabular_dtype(self) -> np.dtype:
        (spec,) = self.native_signature().inputs
        return V2_TO_NUMPY[spec.datatype]
