"""The MLflow model registry as registry-sync sees it: one snapshot of a registered model per read.

`Registry.read(name)` returns every version with its stage, aliases and tags, and for each version that holds an
alias or a live stage (the only ones that can be deployed) its resolved artifact location and its run's metrics,
so that the planner decides from one picture. Writes are limited to version tags (gate
verdicts, PR links) and alias deletion (used by the rollback controller). Every failure to reach MLflow is raised
as `RegistryUnavailable` with the cause, after the caller's bounded retries.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient


class RegistryUnavailable(RuntimeError):
    """MLflow could not be reached or answered with an error."""


@dataclass(frozen=True)
class VersionState:
    version: str
    stage: str
    aliases: tuple[str, ...]
    tags: Mapping[str, str]
    run_id: str | None
    storage_uri: str
    metrics: Mapping[str, float]


@dataclass(frozen=True)
class ModelState:
    """A registered model at one moment: all versions, newest first."""

    name: str
    versions: tuple[VersionState, ...] = field(default_factory=tuple)

    def version(self, version: str) -> VersionState | None:
        return next((v for v in self.versions if v.version == version), None)

    def with_alias(self, alias: str) -> VersionState | None:
        return next((v for v in self.versions if alias in v.aliases), None)


def bounded_http_retries(max_retries: int, timeout: float) -> None:
    """MLflow's client retries an unreachable server for minutes by default; registry-sync retries itself, so
    each MLflow request gets at most `max_retries` quick retries and `timeout` seconds."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(max_retries))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(max(1, timeout))))


class Registry:
    """Reads and tags model versions in the MLflow registry at `tracking_uri`."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def read(self, name: str) -> ModelState:
        try:
            model = self.client.get_registered_model(name)
            versions = self.client.search_model_versions(f"name='{name}'")
            aliases: dict[str, list[str]] = {}
            for alias, version in (model.aliases or {}).items():
                aliases.setdefault(str(version), []).append(alias)
            states = []
            for mv in sorted(versions, key=lambda v: int(v.version), reverse=True):
                version_aliases = tuple(sorted(aliases.get(str(mv.version), [])))
                stage = mv.current_stage or "None"
                # Only a version holding an alias or a live stage can be deployed: only those cost two more calls.
                candidate = bool(version_aliases) or stage not in ("None", "Archived")
                states.append(
                    VersionState(
                        version=str(mv.version),
                        stage=stage,
                        aliases=version_aliases,
                        tags=dict(mv.tags or {}),
                        run_id=mv.run_id,
                        storage_uri=self.client.get_model_version_download_uri(name, mv.version)
                        if candidate
                        else str(mv.source),
                        metrics=dict(self.client.get_run(mv.run_id).data.metrics) if candidate and mv.run_id else {},
                    )
                )
        except MlflowException as error:
            raise RegistryUnavailable(f"MLflow at {self.tracking_uri}: reading {name!r} failed: {error}") from error
        except OSError as error:
            raise RegistryUnavailable(f"MLflow at {self.tracking_uri} unreachable: {error}") from error
        return ModelState(name=name, versions=tuple(states))

    def set_tag(self, name: str, version: str, key: str, value: str) -> None:
        self._write(lambda: self.client.set_model_version_tag(name, version, key, value), f"tag {name}/{version}")

    def delete_tag(self, name: str, version: str, key: str) -> None:
        self._write(lambda: self.client.delete_model_version_tag(name, version, key), f"untag {name}/{version}")

    def delete_alias(self, name: str, alias: str) -> None:
        self._write(lambda: self.client.delete_registered_model_alias(name, alias), f"delete alias {name}@{alias}")

    def archive(self, name: str, version: str) -> None:
        """Move a version to the legacy stage `Archived` (a rolled-back canary that was named by its stage)."""
        self._write(
            lambda: self.client.transition_model_version_stage(name, version, "Archived"), f"archive {name}/{version}"
        )

    def _write(self, call, what: str) -> None:  # type: ignore[no-untyped-def]
        try:
            call()
        except (MlflowException, OSError) as error:
            raise RegistryUnavailable(f"MLflow at {self.tracking_uri}: {what} failed: {error}") from error
