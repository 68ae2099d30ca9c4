"""The served models and their hot reload through the v2 repository extension.

`POST /v2/repository/models/{name}/load` re-reads the model's directory and builds a new predictor off the
event loop while the current one keeps answering; the swap is one dict assignment, so every request is served
by exactly one complete version. The new version is started before it is swapped in and the old one stopped
after (KServe's `stop()` only marks it not ready: a stopped predictor is out of the repository and still
answers the requests already holding it, which finish on it). Both versions share the model's single inference
thread, so a reload never doubles the framework's thread use.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kserve.errors import ModelNotFound
from kserve.model_repository import ModelRepository
from kserve.protocol.model_repository_extension import ModelRepositoryExtension

from tickserve.predictors.base import NotNative, TickPredictor
from tickserve.predictors.model_dir import Framework, ModelArtifact, locate
from tickserve.predictors.settings import PredictorSettings

# Imported on demand so a LightGBM server never pays for importing torch.
PREDICTOR_CLASSES: dict[Framework, str] = {
    Framework.LIGHTGBM: "tickserve.predictors.runtimes.lightgbm:LightGBMPredictor",
    Framework.ONNX: "tickserve.predictors.runtimes.onnx:ONNXPredictor",
    Framework.TORCHSCRIPT: "tickserve.predictors.runtimes.torchscript:TorchScriptPredictor",
    Framework.TORCH_EXPORT: "tickserve.predictors.runtimes.torch_export:TorchExportPredictor",
    Framework.PYFUNC: "tickserve.predictors.runtimes.pyfunc:PyfuncPredictor",
}


def predictor_class(framework: Framework) -> type[TickPredictor]:
    module, _, name = PREDICTOR_CLASSES[framework].partition(":")
    return getattr(importlib.import_module(module), name)


class PredictorRepository(ModelRepository):
    """Model name -> model dir; `load(name)` (re)builds that model from its dir and swaps it in."""

    def __init__(self, model_dirs: Mapping[str, Path], settings: PredictorSettings, threads: int) -> None:
        super().__init__(models_dir=str(next(iter(model_dirs.values()))))
        self.model_dirs = dict(model_dirs)
        self.settings = settings
        self.threads = threads
        self._executors = {name: ThreadPoolExecutor(1, thread_name_prefix=f"infer-{name}") for name in model_dirs}
        self._locks: dict[str, asyncio.Lock] = {}

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        """KServe's `--workers N` spawns REST worker processes by pickling the data plane with this repository;
        each worker rebuilds its models from their directories instead of pickling framework sessions."""
        return (_restored_repository, (self.model_dirs, self.settings, self.threads))

    def build(self, name: str) -> TickPredictor:
        """Load a fresh predictor for `name` from its directory (blocking: call off the event loop)."""
        artifact = locate(self.model_dirs[name])
        if self.settings.runtime == "pyfunc" and artifact.mlflow_dir is not None:
            artifact = artifact.with_runtime(Framework.PYFUNC, "runtime=pyfunc is set")
        try:
            return self._loaded(name, artifact)
        except NotNative as reason:
            if artifact.mlflow_dir is None or "python_function" not in _flavors(artifact.mlflow_dir):
                raise ValueError(f"{reason}, and the model has no python_function flavor to serve instead") from None
            return self._loaded(name, artifact.with_runtime(Framework.PYFUNC, str(reason)))

    def _loaded(self, name: str, artifact: ModelArtifact) -> TickPredictor:
        predictor = predictor_class(artifact.framework)(
            name, artifact, self.settings, self._executors[name], self.threads
        )
        predictor.load()
        return predictor

    def load_model(self, name: str) -> bool:
        self._swap(self.build(name))
        return True

    def _swap(self, predictor: TickPredictor) -> None:
        """Start `predictor`, serve it under its name, then stop the version it replaces, all in one step of the
        event loop: a request looking the model up finds the new, ready version; one already holding the old
        version finishes on it."""
        old = self.models.get(predictor.name)
        predictor.start()
        self.update(predictor)
        if old is not None and old is not predictor:
            old.stop()

    async def load(self, name: str) -> bool:
        if name not in self.model_dirs:
            raise ModelNotFound(name)
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:  # two concurrent reloads of one model must not race to the swap
            self._swap(await asyncio.to_thread(self.build, name))
        return True


def _flavors(mlflow_dir: Path) -> dict[str, object]:
    from mlflow.models import Model

    return Model.load(str(mlflow_dir / "MLmodel")).flavors


# Repositories unpickled in a REST worker process whose models are still to be loaded.
_AWAITING_LOAD: list[PredictorRepository] = []


def _restored_repository(model_dirs: dict[str, Path], settings: PredictorSettings, threads: int) -> PredictorRepository:
    repository = PredictorRepository(model_dirs, settings, threads)
    _AWAITING_LOAD.append(repository)
    return repository


async def load_restored_repositories() -> None:
    """Startup hook of a REST worker process: load its models before it accepts connections.

    Not during unpickling: the worker answers KServe's liveness pings (5 s timeout) only once unpickled, and
    loading a framework can take longer, which would have the parent kill and respawn the worker forever.
    """
    while _AWAITING_LOAD:
        repository = _AWAITING_LOAD.pop()
        for name in repository.model_dirs:
            repository._swap(await asyncio.to_thread(repository.build, name))
    gc.freeze()  # as in cli.main: keep the loaded frameworks out of the GC's scans


class PredictorRepositoryExtension(ModelRepositoryExtension):
    """KServe's extension turns every load error into 503; a name this server does not serve is a 404."""

    async def load(self, model_name: str) -> None:
        registry = self._model_registry
        if isinstance(registry, PredictorRepository) and model_name not in registry.model_dirs:
            raise ModelNotFound(model_name)
        await super().load(model_name)
