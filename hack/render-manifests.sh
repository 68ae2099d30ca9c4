#!/usr/bin/env bash
# Render manifests/ from the Helm chart, the single source of truth: one kustomize directory per value set in
# charts/tickserve/ci/ (manifests/<set>/kustomization.yaml + tickserve.yaml), applied with `kubectl apply -k`.
# The k8s test tier re-renders into a temporary directory and fails when manifests/ has drifted from the chart.
#
# Usage: bash hack/render-manifests.sh [TOOLS_CACHE]     (make manifests)
#   TOOLS_CACHE     where hack/envtest-assets.sh built helm (default ${XDG_CACHE_HOME:-$HOME/.cache}/tickserve)
#   HELM            a helm binary to use instead of the cached one
#   MANIFESTS_DIR   output directory (default: manifests/ of this repository)
#   NAMESPACE       namespace the objects are rendered for (default tickserve)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/tickserve}
chart="$repo/charts/tickserve"
out=${MANIFESTS_DIR:-$repo/manifests}
namespace=${NAMESPACE:-tickserve}
release=tickserve

find_helm() {
  if [[ -n ${HELM:-} ]]; then
    echo "$HELM"
    return
  fi
  local found
  # envtest-assets.sh names binaries <tool>-<version>; the newest build wins if several versions are cached.
  found=$(find "$cache/bin" -maxdepth 1 -name 'helm-v*' -type f -perm -u+x 2>/dev/null | sort -V | tail -n 1)
  if [[ -n $found ]]; then
    echo "$found"
  elif command -v helm >/dev/null 2>&1; then
    command -v helm
  else
    echo "render-manifests: no helm in $cache/bin; run \`make envtest-assets\` (or set HELM)" >&2
    exit 1
  fi
}
helm=$(find_helm)

mkdir -p "$out"
value_sets=()
for values in "$chart"/ci/*-values.yaml; do
  set_name=$(basename "$values" -values.yaml)
  value_sets+=("$set_name")
  dir="$out/$set_name"
  mkdir -p "$dir"
  {
    echo "# Rendered from charts/tickserve with ci/$set_name-values.yaml by hack/render-manifests.sh."
    echo "# Do not edit: change the chart and run \`make manifests\`."
    "$helm" template "$release" "$chart" --namespace "$namespace" --values "$values"
  } >"$dir/tickserve.yaml"
  cat >"$dir/kustomization.yaml" <<KUSTOMIZATION
# Rendered by hack/render-manifests.sh: \`kubectl create namespace $namespace && kubectl apply -k manifests/$set_name\`.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - tickserve.yaml
KUSTOMIZATION
done

# A value set removed from the chart must not survive as a stale directory.
for dir in "$out"/*/; do
  [[ -d $dir ]] || continue
  name=$(basename "$dir")
  if [[ ! " ${value_sets[*]} " == *" $name "* ]]; then
    rm -rf "$dir"
  fi
done
echo "render-manifests: ${value_sets[*]} -> $out (helm: $helm)"
