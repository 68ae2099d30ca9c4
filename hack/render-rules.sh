#!/usr/bin/env bash
# Render monitoring/rules/tickserve.rules.yaml, the plain Prometheus rules file (for a Prometheus without the
# operator), from the chart's PrometheusRule template with the chart's default values: the template is the single
# source of the alert rules. tests/monitoring fails when the committed file has drifted from a fresh render, and
# runs `promtool test rules` on it.
#
# Usage: bash hack/render-rules.sh [TOOLS_CACHE]     (make rules; also run by make manifests)
#   TOOLS_CACHE   where hack/envtest-assets.sh built helm (default ${XDG_CACHE_HOME:-$HOME/.cache}/tickserve)
#   HELM          a helm binary to use instead of the cached one
#   RULES_FILE    output file (default: monitoring/rules/tickserve.rules.yaml of this repository)
#   NAMESPACE     namespace the rules are rendered for (the predictor/ingest job names, kube_pod_status_ready)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/tickserve}
out=${RULES_FILE:-$repo/monitoring/rules/tickserve.rules.yaml}
namespace=${NAMESPACE:-tickserve}

helm=${HELM:-$(find "$cache/bin" -maxdepth 1 -name 'helm-v*' -type f -perm -u+x 2>/dev/null | sort -V | tail -n 1)}
if [[ -z $helm ]]; then
  helm=$(command -v helm) || { echo "render-rules: no helm in $cache/bin; run \`make envtest-assets\` (or set HELM)" >&2; exit 1; }
fi

rendered=$("$helm" template tickserve "$repo/charts/tickserve" --namespace "$namespace" \
  --set monitoring.rules.enabled=true --show-only templates/prometheusrules.yaml)
mkdir -p "$(dirname "$out")"
{
  echo "# Rendered from charts/tickserve/templates/prometheusrules.yaml (default values, namespace $namespace)"
  echo "# by hack/render-rules.sh. Do not edit: change the chart and run \`make rules\`."
  # The PrometheusRule's spec is a Prometheus rules file, indented by two spaces under `spec:`.
  sed -n '/^spec:$/,$p' <<<"$rendered" | tail -n +2 | sed 's/^  //'
} >"$out"
echo "render-rules: $out (helm: $helm)"
