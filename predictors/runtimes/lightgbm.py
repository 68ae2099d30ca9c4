"""LightGBM: a native Booster model file, predicted on the packed [N, F] feature matrix.

Classifiers answer `probabilities` FP32 [N, K] in the model's class order (binary: [p_down, p_up]);
regressors answer the signature's output name (or `predict`).
"""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
from tickserve.predictors.base import TickPredictor
from tickserve.predictors.batching import Arrays
from tickserve.predictors.datatypes import V2_TO_NUMPY
from tickserve.predictors.signature import Signature, TensorSpec, tabular_signature

from tickserve.v2.names import PACKED_FEATURES, PROBABILITIES_OUTPUT

CLASSIFIER_OBJECTIVES = ("binary", "multiclass", "softmax", "multiclassova", "multiclass_ova", "ova", "ovr")


class LightGBMPredictor(TickPredictor):
    booster: lgb.Booster

    def load_native(self, model_file: Path) -> None:
        self.booster = lgb.Booster(model_file=str(model_file))
        objective = str(self.booster.params.get("objective", "regression")).split()[0]
        self.classes = self.booster.num_model_per_iteration() if objective in CLASSIFIER_OBJECTIVES else 0

    def native_signature(self) -> Signature:
        return tabular_signature([(name, "FP64") for name in self.booster.feature_name()])

    def output_specs(self) -> tuple[TensorSpec, ...]:
        if self.classes:
            return (TensorSpec(PROBABILITIES_OUTPUT, "FP32", (-1, max(self.classes, 2))),)
        declared = self.signature.outputs[0] if self.signature.outputs else None
        return (TensorSpec(declared.name if declared else "predict", declared.datatype if declared else "FP64", (-1,)),)

    def predict_arrays(self, inputs: Arrays) -> Arrays:
        scores = self.booster.predict(inputs[PACKED_FEATURES], num_threads=self.threads)
        (spec,) = self.output_specs()
        if self.classes == 1:  # binary objective: the score is P(class 1)
            scores = np.column_stack((1.0 - scores, scores))
        return {spec.name: np.asarray(scores, dtype=V2_TO_NUMPY[spec.datatype])}
