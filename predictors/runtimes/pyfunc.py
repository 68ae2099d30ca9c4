"""The generic runtime: any MLflow model with a `python_function` flavor (an sklearn pipeline with a scaler in
front, xgboost, a pickled nn.Module, a custom PythonModel ...), served through `mlflow.pyfunc`.

Slower than the native runtimes (MLflow converts and checks the input on every call, and the flavor's own
predict runs in Python), so it serves only what no native runtime serves exactly; the same v2 contract,
micro-batching, metrics and error handling apply. The model gets what `mlflow.pyfunc` expects for its
signature: a DataFrame for a column signature (columns in their declared dtypes), a dict of arrays for named
tensors, one array otherwise. Its answer becomes one output per signature output (or per DataFrame column / dict
key that the signature names), else one output, `predict`.

A failure of the model call counts as the request's (400) when MLflow's schema enforcement refuses the input, or
when the flavor raises ValueError, Python's error for an argument of the wrong value (scikit-learn's "X has 5
features, but StandardScaler is expecting 4", "Input X contains NaN"); anything else is a server fault.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tickserve.predictors.base import TickPredictor
from tickserve.predictors.batching import Arrays
from tickserve.predictors.datatypes import V2_TO_NUMPY
from tickserve.predictors.signature import UNNAMED_INPUT, Signature, TensorSpec
from tickserve.v2.names import PACKED_FEATURES


class PyfuncPredictor(TickPredictor):
    PLATFORM = "mlflow_pyfunc"
    NATIVE_TYPES = False

    def load_native(self, model_file: Path) -> None:
        import mlflow.pyfunc

        self.model = mlflow.pyfunc.load_model(str(self.artifact.mlflow_dir))
        self.named_tensors = False

    def native_signature(self) -> Signature:
        """Without a signature nothing is known of the input: one float64 tensor of any shape."""
        return Signature((TensorSpec(UNNAMED_INPUT, "FP64", None),))

    def interface(self, declared: Signature | None) -> Signature:
        if declared is None:
            return self.native_signature()
        if declared.tabular:
            return declared
        self.named_tensors = not declared.unnamed
        return declared

    def output_specs(self) -> tuple[TensorSpec, ...]:
        return self.signature.outputs or (TensorSpec("predict", "FP64", None),)

    def predict_arrays(self, inputs: Arrays) -> Arrays:
        if self.signature.tabular:
            frame = pd.DataFrame(inputs[PACKED_FEATURES], columns=self.signature.input_names, copy=False)
            data: object = frame.astype({spec.name: V2_TO_NUMPY[spec.datatype] for spec in self.signature.inputs})
        elif self.named_tensors:
            data = dict(inputs)
        else:
            (data,) = inputs.values()
        return self._outputs(self.model.predict(data))

    def _outputs(self, result: object) -> Arrays:
        names = [spec.name for spec in self.output_specs()]
        if isinstance(result, dict):
            return {str(name): _array(value) for name, value in result.items()}
        if isinstance(result, pd.DataFrame) and len(names) > 1 and set(names) <= set(result.columns):
            return {name: _array(result[name].to_numpy()) for name in names}
        if isinstance(result, (pd.DataFrame, pd.Series)):
            result = result.to_numpy()
        return {names[0]: _array(result)}

    def client_fault(self, error: Exception, inputs: Arrays) -> str | None:
        from mlflow.exceptions import MlflowException

        if isinstance(error, MlflowException) and error.error_code == "INVALID_PARAMETER_VALUE":
            return error.message
        return str(error) if isinstance(error, ValueError) else None


def _array(value: object) -> np.ndarray:
    """A model answer as an array KServe can encode: text (class labels such as "up") as Python strings (BYTES)."""
    array = np.asarray(value)
    return array.astype(object) if array.dtype.kind in "US" else array
