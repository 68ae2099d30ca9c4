"""The one base every framework predictor shares: v2 decoding, micro-batching, metrics, metadata.

A framework subclass only loads its native model, describes it when the MLflow signature is missing, and maps
numpy inputs to numpy outputs (`predict_arrays`). Everything on the request path that is not the framework
call lives here, so the three predictors behave the same to clients.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from concurrent.futures import Executor
from pathlib import Path

from kserve import Model
from kserve.errors import InvalidInput
from kserve.model import InferenceVerb
from kserve.protocol.infer_type import InferRequest, InferResponse
from tickserve.predictors.batching import Arrays, MicroBatcher
from tickserve.predictors.codec import decode_request, encode_response
from tickserve.predictors.metrics import ModelMetrics, Outcome
from tickserve.predictors.model_dir import ModelArtifact
from tickserve.predictors.settings import PredictorSettings
from tickserve.predictors.signature import Signature, TensorSpec


class TickPredictor(Model, ABC):
    """A KServe model serving one loaded model version. Hot reload builds a new instance and swaps it in."""

    def __init__(
        self, name: str, artifact: ModelArtifact, settings: PredictorSettings, executor: Executor, threads: int
    ) -> None:
        super().__init__(name)
        self.artifact = artifact
        self.settings = settings
        self.threads = threads
        self.model_version = settings.model_version or artifact.version or "1"
        self.metrics = ModelMetrics(name, self.model_version, settings.track)
        self.signature = Signature(inputs=())
        self._executor = executor
        self._batcher = (
            MicroBatcher(
                self.predict_arrays, executor, settings.max_batch_size, settings.max_latency_ms, self.metrics.batch
            )
            if settings.max_batch_size > 1
            else None
        )

    # --- what a framework provides ---------------------------------------------------------------------------

    @abstractmethod
    def load_native(self, model_file: Path) -> None:
        """Load the framework's model from `model_file` (called off the event loop)."""

    @abstractmethod
    def native_signature(self) -> Signature:
        """The interface read from the model itself, used when the MLflow signature is missing."""

    @abstractmethod
    def predict_arrays(self, inputs: Arrays) -> Arrays:
        """One framework call: model inputs (first dimension = rows) to named outputs with the same rows."""

    def output_specs(self) -> tuple[TensorSpec, ...]:
        return self.signature.outputs

    # --- KServe hooks -----------------------------------------------------------------------------------------

    def load(self) -> bool:
        self.load_native(self.artifact.model_file)
        self.signature = self.artifact.signature or self.native_signature()
        self.ready = True
        return self.ready

    def get_input_types(self) -> list[dict[str, object]]:
        return [spec.metadata() for spec in self.signature.inputs]

    def get_output_types(self) -> list[dict[str, object]]:
        return [spec.metadata() for spec in self.output_specs()]

    async def __call__(self, body, headers=None, verb: InferenceVerb = InferenceVerb.PREDICT):  # type: ignore[override]
        """KServe's preprocess -> predict -> postprocess, counted by outcome for the canary alert rules."""
        started = time.perf_counter()
        outcome = Outcome.SERVER_ERROR
        try:
            result = await super().__call__(body, headers, verb)
            outcome = Outcome.OK
            return result
        except InvalidInput:
            outcome = Outcome.CLIENT_ERROR
            raise
        finally:
            self.metrics.request(outcome, time.perf_counter() - started)

    async def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> InferResponse:  # type: ignore[override]
        if not isinstance(payload, InferRequest):
            raise InvalidInput(
                f"model '{self.name}' speaks the Open Inference Protocol (v2): use /v2/models/{self.name}/infer"
            )
        inputs, rows = decode_request(payload, self.signature, self.settings.max_request_rows)
        self._check_requested_outputs(payload)
        if self._batcher is not None:
            outputs = await self._batcher.submit(inputs, rows)
        else:
            self.metrics.batch(rows)
            outputs = await asyncio.get_running_loop().run_in_executor(self._executor, self.predict_arrays, inputs)
        return encode_response(payload, outputs, self.name, self.model_version, self.settings.track)

    def _check_requested_outputs(self, payload: InferRequest) -> None:
        """Refuse unknown requested outputs before spending a model call on them."""
        known = [spec.name for spec in self.output_specs()]
        unknown = [output.name for output in payload.request_outputs or [] if output.name not in known]
        if unknown:
            raise InvalidInput(
                f"unknown requested output(s) {', '.join(unknown)}: the model answers {', '.join(known)}"
            )
