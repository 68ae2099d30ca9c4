"""LightGBM: a native Booster, predicted on the [N, F] feature matrix.

The Booster comes from a model file, or from an `LGBMClassifier` / `LGBMRegressor` saved with
`mlflow.lightgbm.save_model` (the sklearn API tutorials and autolog produce): its `booster_` predicts exactly what
`predict_proba` / `predict` do as long as the objective is one of LightGBM's own. A custom objective (a Python
callable) is not carried by the booster (the estimator answers raw scores for it, and subclasses may transform
them), so such a model goes to the pyfunc runtime, which calls the estimator itself.

Inputs: a column signature (or none: the booster's feature names) takes the columns or one packed `features`
tensor; a tensor signature takes its one [N, F] tensor, under its name or `features` when it has none.
Classifiers answer `probabilities` FP32 [N, K] in the model's class order (binary: [p_down, p_up]);
regressors answer the signature's output name (or `predict`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightgbm as lgb
import numpy as np

from tickserve.predictors.base import NotNative, TickPredictor
from tickserve.predictors.batching import Arrays
from tickserve.predictors.datatypes import V2_TO_NUMPY
from tickserve.predictors.model_dir import LIGHTGBM_BOOSTER
from tickserve.predictors.signature import Signature, TensorSpec, tabular_signature
from tickserve.v2.names import PACKED_FEATURES, PROBABILITIES_OUTPUT

logger = logging.getLogger(__name__)

CLASSIFIER_OBJECTIVES = ("binary", "multiclass", "softmax", "multiclassova", "multiclass_ova", "ova", "ovr")
BUILTIN_OBJECTIVES = (
    *CLASSIFIER_OBJECTIVES,
    *("regression", "regression_l2", "l2", "mean_squared_error", "mse", "l2_root", "root_mean_squared_error", "rmse"),
    *("regression_l1", "l1", "mean_absolute_error", "mae", "huber", "fair", "poisson", "quantile", "mape"),
    *("mean_absolute_percentage_error", "gamma", "tweedie", "cross_entropy", "xentropy", "cross_entropy_lambda"),
    *("xentlambda", "lambdarank", "rank_xendcg", "xendcg", "xe_ndcg", "xe_ndcg_mart", "xendcg_mart"),
)


class LightGBMPredictor(TickPredictor):
    PLATFORM = "lightgbm"
    booster: lgb.Booster

    def load_native(self, model_file: Path) -> None:
        model_class = self.artifact.flavor.get("model_class", LIGHTGBM_BOOSTER)
        self.booster = lgb.Booster(model_file=str(model_file)) if model_class == LIGHTGBM_BOOSTER else self._sklearn()
        objective = str(self.booster.params.get("objective", "regression")).split()[0]
        self.classes = self.booster.num_model_per_iteration() if objective in CLASSIFIER_OBJECTIVES else 0

    def _sklearn(self) -> lgb.Booster:
        """The booster of an LGBMClassifier / LGBMRegressor, if it predicts exactly what the estimator does."""
        import mlflow.lightgbm

        estimator = mlflow.lightgbm.load_model(str(self.artifact.mlflow_dir))
        objective = estimator.get_params().get("objective")
        if objective is not None and (callable(objective) or str(objective) not in BUILTIN_OBJECTIVES):
            raise NotNative(f"{type(estimator).__name__} with custom objective {objective!r}: its booster is not exact")
        return estimator.booster_

    def native_signature(self) -> Signature:
        return tabular_signature([(name, "FP64") for name in self.booster.feature_name()])

    def interface(self, declared: Signature | None) -> Signature:
        """The booster takes one matrix of num_feature() columns; a signature that says otherwise is ignored."""
        width = self.booster.num_feature()
        if declared is not None and declared.tabular and len(declared.inputs) == width:
            return declared
        if declared is not None and not declared.tabular and len(declared.inputs) == 1:
            (spec,) = declared.inputs
            if spec.shape is not None and len(spec.shape) == 2 and spec.shape[1] in (-1, width):
                name = PACKED_FEATURES if declared.unnamed else spec.name
                return Signature((TensorSpec(name, spec.datatype, (-1, width)),), declared.outputs)
        if declared is not None:
            logger.warning(
                "model %s: its signature %s does not fit the booster's %d features; serving the booster's columns",
                self.name,
                [spec.metadata() for spec in declared.inputs],
                width,
            )
        native = self.native_signature()
        return Signature(native.inputs, declared.outputs if declared else (), tabular=True)

    def output_specs(self) -> tuple[TensorSpec, ...]:
        if self.classes:
            return (TensorSpec(PROBABILITIES_OUTPUT, "FP32", (-1, max(self.classes, 2))),)
        declared = self.signature.outputs[0] if self.signature.outputs else None
        return (TensorSpec(declared.name if declared else "predict", declared.datatype if declared else "FP64", (-1,)),)

    def predict_arrays(self, inputs: Arrays) -> Arrays:
        (matrix,) = inputs.values()  # packed features, or the tensor signature's one input
        scores = self.booster.predict(matrix, num_threads=self.threads)
        (spec,) = self.output_specs()
        if self.classes == 1:  # binary objective: the score is P(class 1)
            scores = np.column_stack((1.0 - scores, scores))
        return {spec.name: np.asarray(scores, dtype=V2_TO_NUMPY[spec.datatype])}
