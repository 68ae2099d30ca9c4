"""registry-sync settings: a YAML file plus `TICKSERVE_REGISTRY_SYNC_*` environment variables (nested with `__`,
e.g. `TICKSERVE_REGISTRY_SYNC_FORGE__TOKEN`). The environment wins over the file.

Secrets (the forge token, the webhook secret) are only read from the environment or from files named by
`token_file` / `secret_file`: a YAML file that contains them is refused, so a config checked into Git cannot leak
one. Secrets are `SecretStr` and never appear in logs or `repr`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)
from ruamel.yaml import YAML, YAMLError

from tickserve.monitoring.rollback.settings import RollbackSettings
from tickserve.settings import read_secret

ENV_PREFIX = "TICKSERVE_REGISTRY_SYNC_"
# (section, key) pairs that may only come from the environment or a file.
SECRET_KEYS = (("forge", "token"), ("webhook", "secret"), ("rollback", "token"))


class SettingsError(ValueError):
    """Invalid settings; the message names the field."""


class Gate(BaseModel):
    """One promotion gate on a metric of the version's MLflow run."""

    metric: str = Field(description="Run metric name, e.g. sharpe.")
    op: Literal[">", ">=", "<", "<="] = Field(">", description="Comparison the metric must satisfy.")
    threshold: float = Field(description="Value the metric is compared with.")

    def check(self, value: float | None) -> str | None:
        """None when the gate passes, else the reason written to the version's gate tag."""
        if value is None:
            return f"{self.metric} missing (needs {self.op} {self.threshold:g})"
        passed = {
            ">": value > self.threshold,
            ">=": value >= self.threshold,
            "<": value < self.threshold,
            "<=": value <= self.threshold,
        }[self.op]
        if passed:
            return None
        relation = "<" if value < self.threshold else ">" if value > self.threshold else "="
        return f"{self.metric} {value:g} {relation} {self.threshold:g}"


class ModelMapping(BaseModel):
    registered_model: str = Field(description="Registered model name in MLflow.")
    chart_model: str = Field(description="The chart's models[].name this registered model deploys as.")


class RepoSettings(BaseModel):
    url: str = Field(description="Clone URL of the GitOps repository (https://..., or a local path for tests/demo).")
    base_branch: str = Field("main", description="Branch PRs target and that holds the deployed state.")
    values_file: str = Field(
        "charts/tickserve/values.yaml",
        description="Chart values file (relative to the repository) whose models[] is edited.",
    )
    manifests_command: list[str] = Field(
        default_factory=list,
        description="Command run in the clone after the edit so rendered manifests stay in sync, e.g. "
        "['bash', 'hack/render-manifests.sh']; empty: the repository keeps no rendered manifests.",
    )
    branch_prefix: str = Field("registry-sync", description="Prefix of the content-addressed PR branches.")
    workdir: Path | None = Field(None, description="Directory for the working clone; a temporary one when unset.")
    git_username: str = Field(
        "x-access-token", description="HTTP user name sent with the forge token (GitLab expects 'oauth2')."
    )
    author_name: str = Field("tickserve registry-sync", description="Commit author name.")
    author_email: str = Field("registry-sync@tickserve.invalid", description="Commit author e-mail.")


class ForgeSettings(BaseModel):
    kind: Literal["gitea", "github", "gitlab", "none"] = Field(
        "none", description="Where PRs are opened; 'none' pushes the branch and opens nothing."
    )
    api_url: str | None = Field(None, description="Forge API base, e.g. http://gitea:3000 or https://api.github.com.")
    repository: str | None = Field(None, description="owner/name of the GitOps repository on the forge.")
    token: SecretStr | None = Field(None, description="API and git token; environment only (…_FORGE__TOKEN).")
    token_file: Path | None = Field(None, description="File holding the token (e.g. a mounted Secret).")

    def resolved_token(self) -> str | None:
        return read_secret(self.token, self.token_file)

    @model_validator(mode="after")
    def _needs_api(self) -> ForgeSettings:
        if self.kind != "none" and not self.repository:
            raise ValueError(f"forge.repository is required for forge.kind={self.kind}")
        if self.kind in ("gitea", "gitlab") and not self.api_url:
            raise ValueError(f"forge.api_url is required for forge.kind={self.kind}")
        return self


class WebhookSettings(BaseModel):
    enabled: bool = Field(False, description="Serve the MLflow webhook endpoint (POST /webhooks/mlflow).")
    host: str = Field("0.0.0.0", description="Listen address of the webhook endpoint.")
    port: int = Field(8090, description="Listen port of the webhook endpoint.")
    secret: SecretStr | None = Field(None, description="HMAC secret MLflow signs with; environment only.")
    secret_file: Path | None = Field(None, description="File holding the webhook secret.")
    max_age_seconds: int = Field(300, description="Deliveries whose timestamp is further off than this are refused.")

    def resolved_secret(self) -> str | None:
        return read_secret(self.secret, self.secret_file)

    @model_validator(mode="after")
    def _needs_secret(self) -> WebhookSettings:
        if self.enabled and self.secret is None and self.secret_file is None:
            raise ValueError("webhook.secret (environment) or webhook.secret_file is required when enabled")
        return self


class LeaderElectionSettings(BaseModel):
    enabled: bool = Field(False, description="Act only while holding a coordination.k8s.io Lease (several replicas).")
    namespace: str = Field("tickserve", description="Namespace of the Lease.")
    lease_name: str = Field("tickserve-registry-sync", description="Name of the Lease.")
    identity: str | None = Field(None, description="This replica's identity; the host name (pod name) when unset.")
    lease_duration_seconds: float = Field(15.0, gt=0, description="How long an unrenewed Lease blocks others.")
    renew_deadline_seconds: float = Field(10.0, gt=0, description="A leader that cannot renew this long stops acting.")
    retry_period_seconds: float = Field(2.0, gt=0, description="Seconds between acquire/renew attempts.")
    kubeconfig: Path | None = Field(None, description="kubeconfig file; in-cluster credentials when unset.")


class RegistrySyncSettings(BaseSettings):
    """Everything `tickserve registry-sync` needs; see the README's registry-sync section for an example file."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid")

    tracking_uri: str = Field(description="MLflow tracking URI (http://mlflow:5000).")
    mlflow_ui_url: str | None = Field(None, description="MLflow UI base for PR links; the tracking URI when unset.")
    repo: RepoSettings = Field(description="The GitOps repository.")
    forge: ForgeSettings = Field(default_factory=ForgeSettings, description="Where pull requests are opened.")
    models: list[ModelMapping] = Field(min_length=1, description="Registered models to sync and their chart names.")
    stable_aliases: list[str] = Field(["champion"], description="Aliases that mean 'serve as stable'.")
    stable_stages: list[str] = Field(["Production"], description="Legacy stages that mean stable.")
    canary_aliases: list[str] = Field(["challenger"], description="Aliases that mean 'serve as canary'.")
    canary_stages: list[str] = Field(["Staging"], description="Legacy stages that mean canary.")
    canary_traffic_percent: int = Field(10, ge=0, le=100, description="Traffic share of a new canary.")
    traffic_tag: str = Field("tickserve.traffic", description="Version tag that sets the canary's traffic share.")
    gate_tag: str = Field("tickserve.gate", description="Version tag where a gate refusal is written.")
    pr_tag: str = Field("tickserve.pr", description="Version tag that links the version's open PR.")
    gates: list[Gate] = Field(
        default_factory=lambda: [
            Gate(metric="test_accuracy", op=">", threshold=0.54),
            Gate(metric="sharpe", op=">", threshold=1.2),
        ],
        description="Gates every newly proposed version's run metrics must pass.",
    )
    poll_interval_seconds: float = Field(30.0, gt=0, description="Seconds between reconcile passes.")
    retries: int = Field(3, ge=1, description="Attempts per MLflow / forge call before the model's pass fails.")
    retry_backoff_seconds: float = Field(0.5, ge=0, description="First retry delay (doubles each attempt).")
    request_timeout_seconds: float = Field(10.0, gt=0, description="Timeout of one MLflow or forge request.")
    metrics_port: int | None = Field(9108, description="Prometheus /metrics port; null disables.")
    webhook: WebhookSettings = Field(default_factory=WebhookSettings, description="MLflow webhook endpoint.")
    rollback: RollbackSettings = Field(
        default_factory=RollbackSettings, description="The rollback receiver Alertmanager posts to (same process)."
    )
    leader_election: LeaderElectionSettings = Field(
        default_factory=LeaderElectionSettings, description="Lease-based leader election between replicas."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, YamlConfigSettingsSource(settings_cls))

    def chart_model(self, registered_model: str) -> str | None:
        for mapping in self.models:
            if mapping.registered_model == registered_model:
                return mapping.chart_model
        return None


def _yaml_data(path: Path) -> dict[str, Any]:
    try:
        data = YAML(typ="safe").load(path.read_text()) or {}
    except (OSError, YAMLError) as error:
        raise SettingsError(f"cannot read settings file {path}: {error}") from error
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: the settings file must be a mapping")
    for section, key in SECRET_KEYS:
        if isinstance(data.get(section), dict) and key in data[section]:
            env = f"{ENV_PREFIX}{section.upper()}__{key.upper()}"
            raise SettingsError(f"{section}.{key}: secrets are not read from files; set {env} or {section}.{key}_file")
    return data


def load_settings(path: Path | None, **overrides: Any) -> RegistrySyncSettings:
    """Settings from `path` (optional) and the environment; raises SettingsError naming the invalid field."""
    yaml_file = path
    if path is not None:
        _yaml_data(path)

    class _FromFile(RegistrySyncSettings):
        model_config = SettingsConfigDict(**{**RegistrySyncSettings.model_config, "yaml_file": yaml_file})

    try:
        loaded = _FromFile(**overrides)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in error.errors())
        raise SettingsError(f"invalid registry-sync settings: {problems}") from error
    return loaded
