"""registry-sync: MLflow registry changes (aliases, legacy stages, traffic tags) become GitOps pull requests that
edit the chart's `models[].stable/canary` and refresh the rendered manifests, exactly once per change.

`tickserve registry-sync --config registry-sync.yaml [--once]` runs it (cli.py). The building blocks have small
public APIs so that the canary-rollback controller can reuse them:

- `settings`: `load_settings(path) -> RegistrySyncSettings` (YAML + `TICKSERVE_REGISTRY_SYNC_*` env, `__` nests;
  secrets only from env or `*_file`), `Gate(metric, op, threshold).check(value) -> reason | None`.
- `registry`: `Registry(tracking_uri)`: `.read(name) -> ModelState` (versions newest first, each a `VersionState`
  with stage, aliases, tags, run_id, storage_uri, run metrics), `.set_tag`, `.delete_tag`, `.delete_alias`;
  failures raise `RegistryUnavailable`.
- `values`: `read_deployment(text, chart_model) -> Deployment(stable: Slot, canary: Canary | None)` and
  `write_deployment(text, chart_model, deployment) -> text` (ruamel.yaml round-trip, untouched bytes identical).
- `git`: `GitRepo.ensure(url, path, token=)`: `.fetch_base(branch) -> sha`, `.branch_from(branch, sha)`,
  `.commit_all(message, author) -> sha`, `.push(branch, expect=sha | None)` (lease; raises `PushRejected`),
  `.remote_sha`, `.remote_branches(prefix)`, `.delete_remote_branch`, `.show(commit, path)`, `.run(command)`
  (raises `CommandFailed`). Errors: `GitError`.
- `forges`: `make_forge(settings, repo) -> Forge` (gitea, github, gitlab, none). A `Forge` has
  `.pull_requests(model)` (ours, found by the body marker `forges.base.Marker`), `.open_pull_request(branch, base,
  title, body) -> (PullRequest, adopted)`, `.comment(pr, text)`, `.close(pr)` (marks the marker retired),
  `.delete_branch(branch)`; `PullRequest.rejected` is "closed unmerged by a human". Errors: `ForgeUnavailable`.
- `planner`: `plan(state, chart_model, current, Policy, rejections) -> Plan` (pure: desired deployment, content
  `change_id`, registry `fingerprint`, gate verdicts, `summary()`).
- `controller`: `Reconciler.reconcile(ModelMapping) -> Outcome` (one level-triggered pass), `Controller.run_pass()`;
  `STEPS` and the `TICKSERVE_REGISTRY_SYNC_CRASH_AT` test hook.
- `webhooks`: `DeliveryVerifier(secret, max_age)` (MLflow's `X-MLflow-Signature` HMAC, timestamp window, replay
  refusal), `WebhookServer(host, port, verifier, on_model)`, `sign(...)`.
- `metrics`: `Metrics()` (own CollectorRegistry; `.value(name, **labels)` for tests).
- `leader`: `LeaseElector(api_client, namespace=, name=, identity=).start()`, `.is_leader` (coordination.k8s.io Lease).
- `cli`: `build(settings) -> Controller`, `run_forever(settings, controller, wake, elector)`, `main(argv)`.
- `demo`: `promotion_demo(workdir, say)`: a promotion end to end on an embedded registry and a bare repository, for
  `tickserve demo` to call.
"""
