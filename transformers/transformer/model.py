"""The feature transformer: a KServe model whose request names symbols and whose answer is a trading signal.

Request (v2): a BYTES input `symbols` [N]; optional request parameter `horizon` (one of the configured
horizons, each served by its own predictor model). Answer: one row per symbol with `prediction` (p_up -
p_down, in [-1, 1]), `probability_up`, `probability_down`, `confidence` (top class probability),
`model_version`, `feature_timestamp` and `cached`.

preprocess reads every symbol's hot features and cached prediction, and the model versions answering on each
track, in one Redis round trip and refuses unknown symbols (404) and stale features (503). A cached prediction
is served only if its features are unchanged and its model version is still the one answering on its track
(`store.predictions.AnsweringVersions`): once a new version answers, the old version's cache is dead. predict
calls the predictor only for the other symbols, sending one named tensor per feature column (never a packed
matrix, whose column order another pod behind the same Service may not share), then caches and publishes the
new predictions in a second round trip, announcing a newly answering version in it. Redis and predictor
failures are retried a bounded number of times and then answered with a 503 naming the dependency; nothing is
kept in a broken state, so the next request after recovery succeeds. Requests past `max_requests_held` are
refused at once (503 `overloaded`, see `admission`).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import numpy as np
import redis.asyncio as redis
from kserve import Model
from kserve.errors import InvalidInput
from kserve.model import InferenceVerb
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse, to_http_parameters
from prometheus_client import Counter, Histogram
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from tickserve.transformers.store.features import (
    FEATURE_FIELDS,
    SchemaCatalog,
    StoredFeatures,
    decode_features,
    features_key,
)
from tickserve.transformers.store.predictions import (
    Announce,
    AnsweringVersions,
    Prediction,
    PredictionSink,
    cache_key,
    versions_key,
)
from tickserve.transformers.store.redis import REDIS_ERRORS
from tickserve.transformers.transformer.admission import Admission
from tickserve.transformers.transformer.errors import (
    BadPredictorAnswer,
    DependencyUnavailable,
    StaleFeatures,
    TransformerError,
    UnknownSymbol,
)
from tickserve.transformers.transformer.predictor_batching import CoalescingCaller
from tickserve.transformers.transformer.predictor_client import (
    Column,
    PredictorClient,
    PredictorOutput,
    PredictorRejected,
    PredictorUnavailable,
)
from tickserve.transformers.transformer.settings import TransformerSettings, horizon_seconds

SYMBOLS_INPUT = "symbols"
T = TypeVar("T")

FEATURE_AGE = Histogram(
    "tickserve_transformer_feature_age_seconds",
    "Age of the served features (now - bar event time), per requested symbol",
    ["horizon"],
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
CACHE_LOOKUPS = Counter(
    "tickserve_transformer_cache_lookups_total", "Prediction cache lookups per symbol", ["horizon", "result"]
)
PREDICTOR_ROWS = Counter(
    "tickserve_transformer_predictor_rows_total", "Rows sent to the predictor (cache misses)", ["model"]
)
REFUSALS = Counter("tickserve_transformer_refusals_total", "Requests refused, by cause", ["cause"])


@dataclass(frozen=True)
class PendingRequest:
    """What preprocess found: features per symbol and, where still valid, the cached prediction."""

    request_id: str
    horizon: str
    model: str
    features: list[StoredFeatures]
    cached: list[Prediction | None]
    answering: dict[str, str]  # track -> announced model version, as read with the cache
    binary_outputs: bool  # raw gRPC contents / REST binary extension, as the client asked


@dataclass(frozen=True)
class Answer:
    request: PendingRequest
    predictions: list[Prediction]


def requested_symbols(request: InferRequest, max_symbols: int) -> list[str]:
    tensor = request.get_input_by_name(SYMBOLS_INPUT)
    example = '{"name": "symbols", "datatype": "BYTES", "shape": [1], "data": ["BTCUSDT"]}'
    if tensor is None or tensor.datatype != "BYTES":
        raise InvalidInput(f"the request needs a BYTES input named {SYMBOLS_INPUT!r}, e.g. {example}")
    try:
        values = tensor.as_numpy().ravel()
    except ValueError as exc:
        raise InvalidInput(f"input {SYMBOLS_INPUT!r} does not match its shape {tensor.shape}: {exc}") from exc
    if len(values) > max_symbols:
        raise InvalidInput(
            f"input {SYMBOLS_INPUT!r} names {len(values)} symbols; the limit is {max_symbols} per request"
        )
    symbols = [value.decode() if isinstance(value, bytes) else str(value) for value in values]
    if not symbols or not all(symbols):
        raise InvalidInput(f"input {SYMBOLS_INPUT!r} must name at least one symbol and no empty ones")
    if len(set(symbols)) != len(symbols):
        raise InvalidInput(f"input {SYMBOLS_INPUT!r} names a symbol more than once: {symbols}")
    return symbols


def requested_horizon(request: InferRequest, settings: TransformerSettings) -> str:
    parameters = to_http_parameters(request.parameters) if request.parameters else {}
    horizon = parameters.get("horizon", settings.default_horizon)
    if not isinstance(horizon, str):
        raise InvalidInput(f"request parameter 'horizon' must be a string, e.g. \"1h\", not {horizon!r}")
    if horizon not in settings.horizons:
        raise InvalidInput(f"unknown horizon {horizon!r}; this transformer serves {sorted(settings.horizons)}")
    return horizon


class FeatureTransformer(Model):
    def __init__(
        self,
        name: str,
        settings: TransformerSettings,
        client: redis.Redis,
        connect_predictor: Callable[[str], PredictorClient],
        predictor_host: str | None,
    ) -> None:
        super().__init__(name)
        self.settings = settings
        self._redis = client
        self._redis_address = "{host}:{port}".format(**client.connection_pool.connection_kwargs)
        self._connect_predictor = connect_predictor
        self._predictor_host = predictor_host
        self._predictor_clients: dict[str, PredictorClient] = {}
        self._schemas = SchemaCatalog(client)
        self._sink = PredictionSink(
            client, settings.prediction_cache_ttl_seconds, settings.stream_maxlen, cache_track=settings.track
        )
        self._signatures: dict[str, tuple[Column, ...]] = {}
        self._versions = AnsweringVersions()
        self._columns: dict[tuple[tuple[Column, ...], str], np.ndarray] = {}
        self._callers: dict[tuple[str, tuple[Column, ...]], CoalescingCaller] = {}
        self._admission = Admission(settings.max_requests_held, settings.overload_retry_after_seconds)

    def _predictor(self, model: str) -> PredictorClient:
        """The client for `model`'s host, created on first use inside the serving event loop (gRPC binds to it)."""
        host = self.settings.predictor_hosts.get(model, self._predictor_host)
        if host is None:
            raise DependencyUnavailable("predictor", f"no predictor host for model {model}: set --predictor_host")
        if host not in self._predictor_clients:
            self._predictor_clients[host] = self._connect_predictor(host)
        return self._predictor_clients[host]

    async def close(self) -> None:
        """Close the predictor clients and the Redis pool: run on the server's shutdown, in its event loop."""
        for client in self._predictor_clients.values():
            await client.close()
        self._predictor_clients.clear()
        await self._redis.aclose()

    def load(self) -> bool:
        # Dependencies are reached per request (with retries), so a transformer started before Redis or the
        # predictor serves as soon as they are up, and answers 503 naming them until then.
        self.ready = True
        return self.ready

    async def __call__(
        self, body: Any, headers: dict[str, str] | None = None, verb: InferenceVerb = InferenceVerb.PREDICT
    ) -> Any:
        """Serve one decoded request (KServe's gRPC server calls this), held by the admission bound."""
        with self.admitted():
            return await self.serve(body, headers, verb)

    @contextmanager
    def admitted(self) -> Iterator[None]:
        """Hold one of the `max_requests_held` places while serving a request, or raise Overloaded at once; every
        refusal (TransformerError) is counted by cause. The REST handler enters it before it reads the body, so
        that a refusal costs no body parsing and no feature read."""
        try:
            with self._admission:
                yield
        except TransformerError as exc:
            REFUSALS.labels(exc.cause).inc()
            raise

    async def serve(
        self, body: Any, headers: dict[str, str] | None = None, verb: InferenceVerb = InferenceVerb.PREDICT
    ) -> Any:
        """Serve one request that `admitted` let in: preprocess, predict, postprocess (KServe's Model flow)."""
        return await super().__call__(body, headers, verb)

    def validate(self, payload: Any) -> Any:
        return payload  # preprocess validated the request and returns an internal PendingRequest

    # --- preprocess: one Redis round trip --------------------------------------------------------------------

    async def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> PendingRequest:
        if not isinstance(payload, InferRequest):
            raise InvalidInput(
                "the feature transformer speaks Open Inference Protocol v2: POST /v2/models/<name>/infer"
            )
        symbols = requested_symbols(payload, self.settings.max_symbols)
        horizon = requested_horizon(payload, self.settings)
        model = self.settings.horizons[horizon]
        replies = await self._with_redis(self._read_hot, symbols, horizon, model)
        answering = {track.decode(): version.decode() for track, version in replies[-1].items()}
        features = [decode_features(symbol, replies[2 * i]) for i, symbol in enumerate(symbols)]
        unknown = [symbol for symbol, found in zip(symbols, features, strict=True) if found is None]
        if unknown:
            raise UnknownSymbol(f"unknown symbol(s) {', '.join(unknown)}: no features in the store")
        known: list[StoredFeatures] = [found for found in features if found is not None]
        self._refuse_stale(known, horizon)
        cached = [self._still_valid(replies[2 * i + 1], row, model, answering) for i, row in enumerate(known)]
        hits = sum(item is not None for item in cached)
        CACHE_LOOKUPS.labels(horizon, "hit").inc(hits)
        CACHE_LOOKUPS.labels(horizon, "miss").inc(len(cached) - hits)
        request_id = payload.id or str(uuid.uuid4())
        return PendingRequest(request_id, horizon, model, known, cached, answering, payload.use_binary_outputs)

    async def _read_hot(self, symbols: list[str], horizon: str, model: str) -> list[Any]:
        pipe = self._redis.pipeline(transaction=False)
        for symbol in symbols:
            pipe.hmget(features_key(symbol), list(FEATURE_FIELDS))
            pipe.get(cache_key(self.settings.track, horizon, symbol))
        pipe.hgetall(versions_key(model))
        return await pipe.execute()

    def _refuse_stale(self, features: list[StoredFeatures], horizon: str) -> None:
        now = time.time()
        limit = self.settings.max_feature_age_seconds
        stale = []
        for row in features:
            age = now - row.ts
            FEATURE_AGE.labels(horizon).observe(age)
            if age > limit:
                stale.append(f"{row.symbol} ({age:.1f} s)")
        if stale:
            raise StaleFeatures(
                f"features older than the maximum age of {limit:g} s: {', '.join(stale)}; is ingest running?"
            )

    @staticmethod
    def _still_valid(
        raw: bytes | None, row: StoredFeatures, model: str, answering: dict[str, str]
    ) -> Prediction | None:
        """The cached prediction if its features are unchanged and its version still answers on its track."""
        if raw is None:
            return None
        try:
            cached = Prediction.from_json(raw)
        except (TypeError, ValueError):
            return None  # corrupt, or written by a release with other fields: recompute and overwrite it
        unchanged = cached.feature_ts == row.ts and cached.schema_version == row.schema_version
        current = cached.model == model and answering.get(cached.track) == cached.model_version
        return cached if unchanged and current else None

    # --- predict: the predictor for cache misses, then cache and stream in one round trip ---------------------

    async def predict(
        self, payload: PendingRequest, headers: dict[str, str] | None = None, response_headers: Any = None
    ) -> Answer:
        misses = [i for i, cached in enumerate(payload.cached) if cached is None]
        predictions: list[Prediction] = [cached for cached in payload.cached if cached is not None]
        if misses:
            rows = [payload.features[i] for i in misses]
            output = await self._infer(payload.model, rows)
            fresh = self._predictions(payload, rows, output)
            await self._with_redis(self._sink.publish, fresh, self._announcement(payload, fresh[0]))
            merged = list(payload.cached)
            for i, prediction in zip(misses, fresh, strict=True):
                merged[i] = prediction
            predictions = [item for item in merged if item is not None]
        return Answer(payload, predictions)

    def _announcement(self, request: PendingRequest, answered: Prediction) -> Announce:
        """Announce a version this process sees answering on a track for the first time; fill in a missing one."""
        if self._versions.observe(answered.model, answered.track, answered.model_version):
            self._signatures.pop(answered.model, None)  # a new version may choose other features: read again
            return Announce.NEW_VERSION
        missing = answered.track not in request.answering
        current = self._versions.current(answered.model, answered.track) == answered.model_version
        return Announce.IF_MISSING if missing and current else Announce.NOTHING

    async def _infer(self, model: str, rows: list[StoredFeatures]) -> PredictorOutput:
        columns = await self._signature(model)
        try:
            return await self._call_predictor(model, columns, await self._matrix(model, columns, rows))
        except BadPredictorAnswer:
            # Columns go by name, so a version that orders its features differently answers correctly; one that
            # chose other features refuses them. Read its signature again and retry once if it changed.
            self._signatures.pop(model, None)
            fresh = await self._signature(model)
            if fresh == columns:
                raise
            return await self._call_predictor(model, fresh, await self._matrix(model, fresh, rows))

    async def _signature(self, model: str) -> tuple[Column, ...]:
        if model not in self._signatures:
            self._signatures[model] = await self._with_predictor(self._predictor(model).feature_columns, model)
        return self._signatures[model]

    async def _call_predictor(self, model: str, columns: tuple[Column, ...], matrix: np.ndarray) -> PredictorOutput:
        """Through the (model, signature)'s coalescing caller, so concurrent misses share predictor calls."""
        key = (model, columns)
        if key not in self._callers:
            self._callers[key] = CoalescingCaller(
                partial(self._predictor_call, model, columns),
                max_in_flight=self.settings.predictor_calls_in_flight,
                max_rows=self.settings.predictor_call_rows,
            )
        return await self._callers[key](matrix)

    async def _predictor_call(self, model: str, columns: tuple[Column, ...], matrix: np.ndarray) -> PredictorOutput:
        PREDICTOR_ROWS.labels(model).inc(len(matrix))
        output = await self._with_predictor(self._predictor(model).infer, model, columns, matrix)
        if len(output.probabilities) != len(matrix):
            raise BadPredictorAnswer(f"model {model} answered {len(output.probabilities)} rows for {len(matrix)}")
        return output

    async def _matrix(self, model: str, columns: tuple[Column, ...], rows: list[StoredFeatures]) -> np.ndarray:
        """Rows x the model's columns, in the order of `columns` (sent as one named tensor per column)."""
        matrix = np.empty((len(rows), len(columns)), dtype=np.float32)
        for i, row in enumerate(rows):
            matrix[i] = row.vector[await self._column_order(model, columns, row)]
        return matrix

    async def _column_order(self, model: str, columns: tuple[Column, ...], row: StoredFeatures) -> np.ndarray:
        """Positions of the model's feature names in a stored vector of `row`'s schema (cached per pair)."""
        key = (columns, row.schema_version)
        names = [name for name, _ in columns]
        if key not in self._columns:
            stored = await self._with_redis(self._schemas.names, row.schema_version)
            if stored is None or len(stored) != row.vector.size:
                raise DependencyUnavailable(
                    "feature_schema", f"feature schema {row.schema_version} of {row.symbol} is not in the store"
                )
            missing = [name for name in names if name not in stored]
            if missing:
                raise DependencyUnavailable(
                    "feature_schema",
                    f"model {model} needs features {missing} that feature schema {row.schema_version} lacks",
                )
            self._columns[key] = np.array([stored.index(name) for name in names], dtype=np.intp)
        return self._columns[key]

    def _predictions(
        self, request: PendingRequest, rows: list[StoredFeatures], output: PredictorOutput
    ) -> list[Prediction]:
        probabilities = output.probabilities
        down, up = probabilities[:, 0], probabilities[:, -1]
        confidence = probabilities.max(axis=1)
        now = time.time()
        return [
            Prediction(
                symbol=row.symbol,
                horizon=request.horizon,
                horizon_seconds=horizon_seconds(request.horizon),
                model=request.model,
                model_version=output.model_version,
                track=output.track or self.settings.track,
                prediction=float(up[i] - down[i]),
                probability_up=float(up[i]),
                probability_down=float(down[i]),
                confidence=float(confidence[i]),
                feature_ts=row.ts,
                schema_version=row.schema_version,
                predicted_at=now,
            )
            for i, row in enumerate(rows)
        ]

    # --- postprocess: what a strategy uses -------------------------------------------------------------------

    async def postprocess(
        self, result: Answer, headers: dict[str, str] | None = None, response_headers: Any = None
    ) -> InferResponse:
        rows = result.predictions
        served_from_cache = [cached is not None for cached in result.request.cached]

        def column(name: str, datatype: str, values: list[Any]) -> InferOutput:
            return InferOutput(name=name, shape=[len(values)], datatype=datatype, data=values)

        outputs = [
            column("symbol", "BYTES", [row.symbol for row in rows]),
            column("prediction", "FP32", [row.prediction for row in rows]),
            column("probability_up", "FP32", [row.probability_up for row in rows]),
            column("probability_down", "FP32", [row.probability_down for row in rows]),
            column("confidence", "FP32", [row.confidence for row in rows]),
            column("model_version", "BYTES", [row.model_version for row in rows]),
            column("feature_timestamp", "FP64", [row.feature_ts for row in rows]),
            column("cached", "BOOL", served_from_cache),
        ]
        return InferResponse(
            response_id=result.request.request_id,
            model_name=self.name,
            infer_outputs=outputs,
            model_version=rows[0].model_version,
            parameters={"horizon": result.request.horizon, "model": result.request.model},
            use_binary_outputs=result.request.binary_outputs,
        )

    # --- bounded retries ---------------------------------------------------------------------------------------

    async def _attempt(
        self, call: Callable[..., Awaitable[T]], args: tuple[Any, ...], retryable: Callable[[BaseException], bool]
    ) -> T:
        """`call(*args)`, retried on `retryable` errors up to `dependency_attempts` in all. The first attempt runs
        outside tenacity: its per-call set-up costs as much as a Redis round trip, and almost every call
        succeeds at once."""
        try:
            return await call(*args)
        except Exception as exc:
            if self.settings.dependency_attempts < 2 or not retryable(exc):
                raise
        first_wait = self.settings.retry_wait_seconds
        await asyncio.sleep(min(first_wait, self.settings.retry_max_wait_seconds))
        retrying = AsyncRetrying(  # waits double from there: 2x, 4x ... the first, capped
            stop=stop_after_attempt(self.settings.dependency_attempts - 1),
            wait=wait_exponential(multiplier=2 * first_wait, max=self.settings.retry_max_wait_seconds),
            retry=retry_if_exception(retryable),
            reraise=True,
        )
        return await retrying(call, *args)

    async def _with_redis(self, call: Callable[..., Awaitable[T]], *args: Any) -> T:
        try:
            return await self._attempt(call, args, lambda exc: isinstance(exc, REDIS_ERRORS))
        except REDIS_ERRORS as exc:
            raise DependencyUnavailable(
                "redis",
                f"feature store Redis at {self._redis_address} unavailable after "
                f"{self.settings.dependency_attempts} attempts: {exc}",
            ) from exc

    async def _with_predictor(self, call: Callable[..., Awaitable[T]], *args: Any) -> T:
        try:
            return await self._attempt(call, args, lambda exc: isinstance(exc, PredictorUnavailable) and exc.retryable)
        except PredictorUnavailable as exc:
            raise DependencyUnavailable("predictor", f"predictor unavailable: {exc}") from exc
        except PredictorRejected as exc:
            raise BadPredictorAnswer(str(exc)) from exc
