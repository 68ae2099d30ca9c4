"""The rollback receiver's settings: the `rollback` section of registry-sync's settings (same YAML file, variables
`TICKSERVE_REGISTRY_SYNC_ROLLBACK__*`). The bearer token comes from the environment or a file only."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, model_validator

from tickserve.settings import read_secret


class RollbackSettings(BaseModel):
    enabled: bool = Field(False, description="Serve Alertmanager's webhook (POST /alerts) and roll canaries back.")
    host: str = Field("0.0.0.0", description="Listen address of the rollback receiver.")
    port: int = Field(8080, description="Listen port of the rollback receiver.")
    token: SecretStr | None = Field(None, description="Bearer token Alertmanager sends; environment only.")
    token_file: Path | None = Field(None, description="File holding the bearer token (a mounted Secret).")
    namespace: str = Field("tickserve", description="Namespace of the InferenceServices (the chart's release).")
    kubeconfig: Path | None = Field(None, description="Kubeconfig for the cluster step; default: in-cluster.")
    hold_flux: bool = Field(
        True,
        description="Suspend the Flux Kustomization that applied a rolled-back InferenceService until registry-sync "
        "finds the revert merged, so Flux's drift correction cannot re-apply the canary (monitoring/rollback/gitops.py"
        "). Needs get/patch on kustomizations; InferenceServices Flux did not apply are never held.",
    )

    def resolved_token(self) -> str | None:
        return read_secret(self.token, self.token_file)

    @model_validator(mode="after")
    def _needs_token(self) -> RollbackSettings:
        if self.enabled and self.token is None and self.token_file is None:
            raise ValueError("rollback.token (environment) or rollback.token_file is required when enabled")
        return self
