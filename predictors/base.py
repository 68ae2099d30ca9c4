"""The one base every framework predictor shares: v2 decoding, micro-batching, metrics, metadata.

A framework subclass only loads its native model, describes the model's own interface (reconciled with the MLflow
signature, see `signature.reconcile`), maps numpy inputs to numpy outputs (`predict_arrays`) and says which of
its framework's errors a request caused (`client_fault`). Everything on the request path that is not the
framework call lives here, so every runtime behaves the same to clients: a request the model cannot take is a
400 / INVALID_ARGUMENT naming the problem, whether the codec or the framework call found it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from concurrent.futures import Executor
from functools import cached_property
from pathlib import Path

import numpy as np
from kserve import Model
from kserve.errors import InvalidInput
from kserve.model import InferenceVerb
from kserve.protocol.infer_type import InferRequest, InferResponse

from tickserve.predictors.batching import Arrays, MicroBatcher, Overloaded
from tickserve.predictors.codec import decode_request, encode_response
from tickserve.predictors.metrics import ModelMetrics, Outcome
from tickserve.predictors.model_dir import ModelArtifact
from tickserve.predictors.settings import PredictorSettings
from tickserve.predictors.signature import Signature, TensorSpec, reconcile

logger = logging.getLogger(__name__)

REQUEST_BYTES_PER_VALUE = 32  # a float64 in v2 JSON: up to 24 digits and sign/exponent, a separator, spaces
REQUEST_BYTES_SLACK = 1 << 20  # JSON keys, names, parameters and request ids on top of the values
OPEN_VALUES_PER_ROW = 4096  # values per row assumed for an input whose inner shape the model leaves open


class NotNative(Exception):
    """Raised by `load_native` when the native runtime cannot serve this model exactly; the repository then
    serves it with the `mlflow.pyfunc` runtime, logging this message as the reason."""


class TickPredictor(Model, ABC):
    """A KServe model serving one loaded model version. Hot reload builds a new instance and swaps it in.

    `PLATFORM` names the runtime on the metadata endpoint; `NATIVE_TYPES` says whether `native_signature`
    declares real datatypes and shapes (then they win over the MLflow signature's)."""

    PLATFORM = ""
    NATIVE_TYPES = True

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
                self.call_model, executor, settings.max_batch_size, settings.max_latency_ms, self.metrics.batch
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

    def interface(self, declared: Signature | None) -> Signature:
        """The inputs and outputs to serve, from the MLflow signature (None without one) and the model itself."""
        return reconcile(declared, self.native_signature(), native_types=self.NATIVE_TYPES, model=self.name)

    def client_fault(self, error: Exception, inputs: Arrays) -> str | None:
        """What the request did wrong, if `error` (raised by `predict_arrays` on `inputs`) is the request's fault
        rather than the server's; None makes it a 500."""
        return None

    # --- the request path -------------------------------------------------------------------------------------

    def call_model(self, inputs: Arrays) -> Arrays:
        """`predict_arrays`, with framework errors the request caused turned into InvalidInput (400)."""
        try:
            return self.predict_arrays(inputs)
        except InvalidInput:
            raise
        except Exception as error:
            complaint = self.client_fault(error, inputs)
            if complaint is None:
                raise
            sent = ", ".join(f"'{name}' {list(array.shape)}" for name, array in inputs.items())
            raise InvalidInput(f"input(s) {sent} do not fit the model: {complaint}") from None

    @cached_property
    def max_request_bytes(self) -> int:
        """Largest request body accepted (413 above it): the setting, else room for max_request_rows rows of the
        signature's inputs as JSON numbers. Read after `load`, once per loaded version."""
        if self.settings.max_request_bytes is not None:
            return self.settings.max_request_bytes
        values_per_row = 0
        for spec in self.signature.inputs:
            inner = () if spec.shape is None else spec.shape[1:]
            open_inner = spec.shape is None or -1 in inner
            values_per_row += OPEN_VALUES_PER_ROW if open_inner else int(np.prod(inner, dtype=np.int64))
        return REQUEST_BYTES_SLACK + self.settings.max_request_rows * values_per_row * REQUEST_BYTES_PER_VALUE

    def metadata_parameters(self) -> dict[str, str | int]:
        """Shown on the metadata endpoint: which runtime serves the model and why that one, and request limits."""
        return {
            "runtime": self.PLATFORM,
            "reason": self.artifact.reason,
            "model_version": self.model_version,
            "max_request_rows": self.settings.max_request_rows,
            "max_request_bytes": self.max_request_bytes,
        }

    # --- KServe hooks -----------------------------------------------------------------------------------------

    def load(self) -> bool:
        self.load_native(self.artifact.model_file)
        self.signature = self.interface(self.artifact.signature)
        logger.info(
            "model %s: served by the %s runtime (%s); inputs %s",
            self.name,
            self.PLATFORM,
            self.artifact.reason,
            ", ".join(f"{spec.name} {spec.datatype}{list(spec.shape or [-1])}" for spec in self.signature.inputs),
        )
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
        except Overloaded:
            outcome = Outcome.OVERLOADED
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
            outputs = await asyncio.get_running_loop().run_in_executor(self._executor, self.call_model, inputs)
        return encode_response(payload, outputs, self.name, self.model_version, self.settings.track)

    def _check_requested_outputs(self, payload: InferRequest) -> None:
        """Refuse unknown requested outputs before spending a model call on them."""
        known = [spec.name for spec in self.output_specs()]
        unknown = [output.name for output in payload.request_outputs or [] if output.name not in known]
        if unknown:
            raise InvalidInput(
                f"unknown requested output(s) {', '.join(unknown)}: the model answers {', '.join(known)}"
            )
