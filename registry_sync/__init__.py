"""MLflow registry to GitOps: opens pull requests that patch manifests when a model version changes stage."""
